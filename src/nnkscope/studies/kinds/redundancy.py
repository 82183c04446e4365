"""Study kind ``redundancy`` (R5): channel overlap and redundancy from channel-wise NNK graphs, per layer of 1-D
ConvNets trained with several dropout rates and seeds, and whether overlap predicts which channels prune cheaply."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer, number
from ..common import build_model, config_data, run_units, train
from ..figures import Figure, Term, fmt, fmt_rho, lines, section, spearman

# the channel layers of each model kind: "channels" is ChannelConvNet's separable last layer
LAYERS = {"channel_convnet": ["trunk.1", "trunk.3", "trunk.6", "channels"], "cnn1d": ["conv1", "conv2", "conv3"]}


def _add_dropout(model, p: float) -> None:
    """Element-wise dropout after every ReLU (and, in ChannelConvNet, on the pooled channel maps), by forward hooks,
    so that layer names stay those of the model (identity in eval mode)."""
    import torch

    if p <= 0:
        return
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.ReLU) or name == "down":
            m.register_forward_hook(lambda mod, inp, out: torch.nn.functional.dropout(out, p, mod.training))


def _channel_maps(model, X, layer: str) -> list[np.ndarray]:
    from ...nn.capture import capture

    if layer == "channels":
        return model.channel_features(X)
    A = np.asarray(capture(model, X, [layer], pooling="channels", progress=False)[layer], np.float64)
    return [A[:, c] for c in range(A.shape[1])]


def _pruned_accuracy(model, X, y, layer: str, channel: int) -> float:
    """Test accuracy with one channel of ``layer`` zeroed (a forward hook on that layer)."""
    from ...nn.models import predict

    if layer == "channels":
        module, index = model.channels[channel], None
    else:
        module, index = model.get_submodule(layer), channel

    def zero(mod, inp, out):
        out = out.clone()
        if index is None:
            out.zero_()
        else:
            out[:, index] = 0
        return out

    handle = module.register_forward_hook(zero)
    try:
        return float((predict(model, X) == y).mean())
    finally:
        handle.remove()


def run_redundancy(cfg: dict, store: RunStore, progress=None, executor=None):
    """For every dropout rate and seed: train, then per layer the channel-wise NNK overlap / redundancy of
    ``n_eval`` training points against the permutation baseline, and the test-accuracy drop of pruning each channel
    alone (with its overlap with the other channels and its mean absolute activation, a common pruning heuristic).
    Each (dropout, seed) model is a unit (:func:`~nnkscope.studies.common.run_units`), on ``executor``'s workers
    when one is given."""
    todo = [{"dropout": float(p), "seed": int(seed)} for p in cfg["dropouts"] for seed in cfg["seeds"]]
    todo = [keys for keys in todo if not store.has("redundancy", **keys)]
    run_units(_redundancy_unit, config_data, cfg, store, todo, executor=executor, progress=progress, desc="models")
    return _table(store)


def _redundancy_unit(cfg: dict, store: RunStore, data, dropout: float, seed: int) -> None:
    import pandas as pd

    from ...nn.models import predict
    from ..redundancy import layer_redundancy

    layers = cfg["layers"] or LAYERS[cfg["model"]["kind"]]
    Xe = data.X_train[: cfg["n_eval"]]
    model = build_model(cfg["model"], data, seed)
    _add_dropout(model, dropout)
    train(model, data.X_train, data.y_train, cfg["train"], seed)
    acc = float((predict(model, data.X_test) == data.y_test).mean())
    rows, prune = [], []
    for li, layer in enumerate(layers):
        maps = _channel_maps(model, Xe, layer)
        r = layer_redundancy(maps, cfg["k"], seed=seed)
        per = r.pop("channel_overlap")
        rows.append({"layer": layer, "layer_index": li, **r, "test_accuracy": acc})
        for c in range(len(maps)):
            prune.append({"layer": layer, "channel": c, "overlap": float(per[c]),
                          "mean_abs_activation": float(np.abs(maps[c]).mean()),
                          "accuracy_drop": acc - _pruned_accuracy(model, data.X_test, data.y_test, layer, c)})
    store.write("channel_pruning", pd.DataFrame(prune), dropout=dropout, seed=seed)
    store.write("redundancy", pd.DataFrame(rows), dropout=dropout, seed=seed)  # last: its presence marks it done


def _table(store: RunStore):
    t = store.read("redundancy")
    cols = ["dropout", "seed", "layer", "layer_index", "n_channels", "overlap", "overlap_baseline", "overlap_ratio",
            "redundancy", "redundancy_baseline", "union_ratio", "active_fraction", "dead_channels", "test_accuracy"]
    return t[cols].sort_values(["dropout", "seed", "layer_index"], ignore_index=True)


def bootstrap_spearman(a, b, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho of ``(a, b)`` and a seeded percentile bootstrap 95 % interval (resampling the pairs).

    Examples
    --------
    >>> rho, lo, hi = bootstrap_spearman([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5])
    >>> round(rho, 3), lo <= rho <= hi
    (0.829, True)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    rho = spearman(a, b)
    rng = np.random.default_rng(seed)
    boots = [spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n_boot))]
    boots = np.asarray([v for v in boots if np.isfinite(v)])
    if not len(boots):
        return rho, float("nan"), float("nan")
    return rho, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def correlations(store: RunStore):
    """Per layer: Spearman (with bootstrap CI) of the layer overlap with test accuracy across models, and the
    mean over models of the per-channel Spearman of overlap (and of mean |activation|) with the pruning drop."""
    import warnings

    import pandas as pd

    t, pr = _table(store), store.read("channel_pruning")
    rows = []
    for layer, sub in t.groupby("layer", sort=False):
        rho, lo, hi = bootstrap_spearman(sub.overlap, sub.test_accuracy)
        per_model = pr[pr.layer == layer].groupby(["dropout", "seed"])
        with warnings.catch_warnings():  # a layer whose channels are all constant in every model: no correlation
            warnings.simplefilter("ignore", RuntimeWarning)
            drop_o = float(np.nanmean([spearman(g.overlap, g.accuracy_drop) for _, g in per_model]))
            drop_a = float(np.nanmean([spearman(g.mean_abs_activation, g.accuracy_drop) for _, g in per_model]))
        rows.append({"layer": layer, "overlap_ratio": float(sub.overlap_ratio.mean()),
                     "spearman_overlap_test_accuracy": rho, "ci_low": lo, "ci_high": hi, "models": len(sub),
                     "spearman_overlap_drop": drop_o, "spearman_activation_drop": drop_a})
    return pd.DataFrame(rows)


REDUNDANT = 2.0  # channel overlap at least this many times its permutation baseline counts as redundant channels
BASELINE = "permutation baseline"  # drawn with the dropout curves, in grey: not a model
GLOSSARY = {
    "dropout": Term("dropout rate the model was trained with", "[0, 1)"),
    "layer_index": Term("position of the layer in the network (0 = first)", "integer"),
    "n_channels": Term("channels of the layer", "integer"),
    "overlap": Term("mean Jaccard overlap between the NNK-neighbour sets that different channels give a point",
                    "[0, 1]", "higher = channels see the same neighbourhoods (redundant)", "nnkscope (R5)"),
    "overlap_baseline": Term("the same overlap with each channel's points permuted: the chance level", "[0, 1]",
                             "the floor to compare with", "nnkscope (R5)"),
    "overlap_ratio": Term("overlap / overlap_baseline", "[0, inf)",
                          f"1 = chance; >= {REDUNDANT:g} counted as redundant", "nnkscope (R5)"),
    "redundancy": Term("redundancy index R: mean share of a point's channel-wise NNK neighbours that more than "
                       "one channel picks", "[0, 1]", "higher = more redundant", "nnkscope (R5)"),
    "redundancy_baseline": Term("R with each channel's points permuted: the chance level", "[0, 1]", ""),
    "union_ratio": Term("size of the union of the channels' NNK neighbourhoods relative to the full layer's NNK "
                        "degree", ">= 0", "higher = channels together see more than the layer"),
    "active_fraction": Term("share of (point, channel) entries with a non-zero activation", "[0, 1]", ""),
    "dead_channels": Term("channels that are zero on every evaluation point", "integer", "0 = none"),
    "spearman_overlap_test_accuracy": Term("Spearman, across models, of the layer's overlap with test accuracy",
                                           "[-1, 1]", "interval (ci_low, ci_high) excluding 0 = a reliable sign",
                                           "nnkscope (R5)"),
    "models": Term("models (dropout x seed) the correlation is over", "integer"),
    "spearman_overlap_drop": Term("mean over models of the per-channel Spearman of a channel's overlap with the "
                                  "accuracy drop when it alone is pruned", "[-1, 1]",
                                  "negative = overlapping channels prune cheaply", "nnkscope (R5)"),
    "spearman_activation_drop": Term("the same for mean |activation| (a common pruning heuristic)", "[-1, 1]",
                                     "positive = weak channels prune cheaply"),
    "channel": Term("channel of the layer"),
    "accuracy_drop": Term("test accuracy lost when this channel alone is zeroed", "[-1, 1]",
                          "higher = the channel matters"),
}


def _redundancy_section(store: RunStore) -> dict:
    import pandas as pd

    t = _table(store)
    layers = list(dict.fromkeys(t.sort_values("layer_index").layer))
    per = t.groupby(["dropout", "layer"], sort=False)[["overlap", "redundancy", "overlap_baseline",
                                                        "redundancy_baseline"]].agg(["mean", "std"])
    per.columns = ["_".join(c) for c in per.columns]
    per = per.reset_index()
    curves = []
    for m in ("overlap", "redundancy"):
        curves.append(per.assign(measure=m, series=per.dropout, value=per[m + "_mean"], std=per[m + "_std"]))
        base = per.groupby("layer", as_index=False, sort=False)[m + "_baseline_mean"].mean()
        curves.append(base.assign(measure=m, series=BASELINE, value=base[m + "_baseline_mean"], std=0.0))
    curves = pd.concat(curves, ignore_index=True)[["layer", "measure", "series", "value", "std"]]
    by_layer = lines(curves, "layer", "value", by="series", panel="measure", band="std", colour={BASELINE: "grey"},
                     key=lambda v: v if v == BASELINE else f"dropout {v:g}", x_title="layer",
                     y_title="mean over seeds", titles={"overlap": "channel overlap (Jaccard)",
                                                        "redundancy": "redundancy index R"}, cols=2)
    c = correlations(store)
    pr = store.read("channel_pruning")
    rho = dict(zip(c.layer, c.spearman_overlap_drop, strict=True))
    prune = lines(pr, "overlap", "accuracy_drop", by="dropout", key="dropout {:g}", panel="layer", mode="markers",
                  order=[layer for layer in layers if layer in set(pr.layer)], hover=("seed", "channel"),
                  titles={layer: f"{layer} (mean per-model Spearman {fmt(rho.get(layer), 2)})" for layer in layers},
                  x_title="channel's overlap with the other channels", y_title="test accuracy drop when pruned")
    takeaways = []
    for r in c.itertuples():
        sig = r.ci_low > 0 or r.ci_high < 0
        takeaways.append(
            f"{r.layer}: channel overlap {fmt(r.overlap_ratio, 2)}x the permutation baseline: "
            f"{'redundant' if r.overlap_ratio >= REDUNDANT else 'not redundant'} (>= {REDUNDANT:g}x counts); "
            f"overlap vs test accuracy over {r.models} models: "
            + fmt_rho(r.spearman_overlap_test_accuracy, r.ci_low, r.ci_high)
            + (f" ({'interval excludes 0' if sig else 'interval includes 0'}: excluding 0 counts as a reliable sign)"
               if np.isfinite(r.spearman_overlap_test_accuracy) else "")
            + f"; per-channel Spearman with the pruning drop: overlap {fmt(r.spearman_overlap_drop, 2)}, mean "
            f"|activation| {fmt(r.spearman_activation_drop, 2)}.")
    return section("Channel redundancy (channel-wise NNK)", takeaways, [
        Figure("Overlap and redundancy by layer", by_layer, "One curve per dropout rate (band: standard deviation "
               "over seeds); grey: the permutation baseline. Curves far above grey are layers whose channels "
               "duplicate each other.", ("overlap", "redundancy", "overlap_baseline", "redundancy_baseline")),
        Figure("Pruning one channel", prune, "One point per channel and model: if overlap predicts cheap pruning, "
               "the points fall from left to right.", ("overlap", "accuracy_drop"))],
        {"correlations": c, "per model and layer": t}, GLOSSARY)


REDUNDANCY = StudyKind(
    name="redundancy", run=run_redundancy, section=_redundancy_section, tables=("redundancy", "channel_pruning"),
    defaults={"data": dict(DATA, name="mnist1d"), "model": dict(MODEL, kind="channel_convnet", channels=8,
                                                                n_channels=5),
              "train": dict(TRAIN, epochs=40, batch_size=50), "dropouts": [0.0, 0.2, 0.5], "seeds": [0, 1, 2],
              "layers": [], "k": 25, "n_eval": 1000},
    checks={"model.kind": choice(*LAYERS), "dropouts": each(number(0, 1, open_hi=True)), "n_eval": integer(10),
            "layers": each(lambda v: None if isinstance(v, str) and v else "a layer name", non_empty=False)},
    summary="channel overlap / redundancy of channel-wise NNK graphs across layers, dropout and seeds (R5)")
