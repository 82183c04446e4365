"""Study kind ``redundancy`` (R5): channel overlap and redundancy from channel-wise NNK graphs, per layer of 1-D
ConvNets trained with several dropout rates and seeds, and whether overlap predicts which channels prune cheaply."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer, number
from ..common import build_model, load_data, train
from ..figures import grid, html_table, png, spearman

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


def run_redundancy(cfg: dict, store: RunStore, progress=None):
    """For every dropout rate and seed: train, then per layer the channel-wise NNK overlap / redundancy of
    ``n_eval`` training points against the permutation baseline, and the test-accuracy drop of pruning each channel
    alone (with its overlap with the other channels and its mean absolute activation, a common pruning heuristic)."""
    import pandas as pd

    from ...nn.models import predict
    from ..redundancy import layer_redundancy

    data = load_data(cfg["data"])
    kind = cfg["model"]["kind"]
    layers = cfg["layers"] or LAYERS[kind]
    Xe = data.X_train[: cfg["n_eval"]]
    for p in cfg["dropouts"]:
        for seed in cfg["seeds"]:
            keys = {"dropout": float(p), "seed": int(seed)}
            if store.has("redundancy", **keys):
                continue
            model = build_model(cfg["model"], data, seed)
            _add_dropout(model, float(p))
            train(model, data.X_train, data.y_train, cfg["train"], seed)
            acc = float((predict(model, data.X_test) == data.y_test).mean())
            rows, prune = [], []
            for li, layer in enumerate(layers):
                maps = _channel_maps(model, Xe, layer)
                r = layer_redundancy(maps, cfg["k"], seed=int(seed))
                per = r.pop("channel_overlap")
                rows.append({"layer": layer, "layer_index": li, **r, "test_accuracy": acc})
                for c in range(len(maps)):
                    prune.append({"layer": layer, "channel": c, "overlap": float(per[c]),
                                  "mean_abs_activation": float(np.abs(maps[c]).mean()),
                                  "accuracy_drop": acc - _pruned_accuracy(model, data.X_test, data.y_test, layer, c)})
            store.write("channel_pruning", pd.DataFrame(prune), **keys)
            store.write("redundancy", pd.DataFrame(rows), **keys)  # last: its presence marks the unit done
    return _table(store)


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


def _redundancy_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = _table(store)
    layers = list(dict.fromkeys(t.sort_values("layer_index").layer))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for p, sub in t.groupby("dropout"):
        g = sub.groupby("layer_index")[["overlap", "redundancy"]].mean()
        axes[0].plot(g.index, g.overlap, "o-", label=f"dropout {p:g}")
        axes[1].plot(g.index, g.redundancy, "o-", label=f"dropout {p:g}")
    base = t.groupby("layer_index").overlap_baseline.mean()
    axes[0].plot(base.index, base.values, "k:", label="permutation baseline")
    for ax, title in zip(axes, ("channel overlap (Jaccard)", "redundancy index R"), strict=True):
        ax.set(xticks=range(len(layers)), xticklabels=layers, title=title, xlabel="layer")
        ax.legend(fontsize=7)
    pr = store.read("channel_pruning")
    fig2, axes2 = grid(len(layers))
    for ax, layer in zip(axes2, layers, strict=False):
        s = pr[pr.layer == layer]
        ax.scatter(s.overlap, s.accuracy_drop, s=10, c=s.dropout, cmap="viridis")
        ax.set(title=layer, xlabel="channel's overlap with the others", ylabel="accuracy drop when pruned")
    c = correlations(store)
    summary = [f"{r.layer}: overlap {r.overlap_ratio:.1f}x the permutation baseline (mean over models); "
               f"Spearman(overlap, test accuracy) over {r.models} models {r.spearman_overlap_test_accuracy:+.2f} "
               f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]; per-channel Spearman(overlap, pruning drop) "
               f"{r.spearman_overlap_drop:+.2f} (mean |activation|: {r.spearman_activation_drop:+.2f})."
               for r in c.itertuples()]
    return {"title": "Channel redundancy (channel-wise NNK)", "figures": [("Overlap by layer", png(fig)),
                                                                          ("Pruning one channel", png(fig2))],
            "summary": summary, "table": html_table(c) + html_table(t)}


REDUNDANCY = StudyKind(
    name="redundancy", run=run_redundancy, section=_redundancy_section, tables=("redundancy", "channel_pruning"),
    defaults={"data": dict(DATA, name="mnist1d"), "model": dict(MODEL, kind="channel_convnet", channels=8,
                                                                n_channels=5),
              "train": dict(TRAIN, epochs=40, batch_size=50), "dropouts": [0.0, 0.2, 0.5], "seeds": [0, 1, 2],
              "layers": [], "k": 25, "n_eval": 1000},
    checks={"model.kind": choice(*LAYERS), "dropouts": each(number(0, 1, open_hi=True)), "n_eval": integer(10),
            "layers": each(lambda v: None if isinstance(v, str) and v else "a layer name", non_empty=False)},
    summary="channel overlap / redundancy of channel-wise NNK graphs across layers, dropout and seeds (R5)")
