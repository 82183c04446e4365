"""Study kind ``early-stopping``: DeepNNK leave-one-out through training, and CW-DeepNNK channel freezing."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer, number
from ..common import build_model, config_data, error_rate, layer_features, run_units, train
from ..figures import Figure, Term, fmt, lines, long, section


def run_early_stopping(cfg: dict, store: RunStore, progress=None, executor=None):
    """``method: deepnnk`` -- DeepNNK LOO of ``layer`` at each checkpoint for every arm (``model``: as configured,
    ``regularised``: dropout 0.3 + weight decay 1e-4), with model and NNK-classifier test errors.
    ``method: cw-deepnnk`` -- arms ``cw`` (channel-wise freezing on all training data), ``validation`` (hold out
    ``validation_fraction``, stop after ``patience`` epochs without validation improvement, restore the best) and
    ``fixed`` (``train.epochs`` epochs).  Each (seed, arm) is a unit (:func:`~nnkscope.studies.common.run_units`),
    on ``executor``'s workers when one is given."""
    if cfg["method"] not in _RUNNERS:
        raise InvalidParameterError(f"method must be 'deepnnk' or 'cw-deepnnk'; got {cfg['method']!r}")
    todo = [{"seed": int(seed), "arm": arm} for seed in cfg["seeds"] for arm in cfg["arms"]]
    todo = [keys for keys in todo if not store.has("early_stopping", **keys)]
    run_units(_arm_unit, config_data, cfg, store, todo, executor=executor, progress=progress, desc="arms")
    return store.read("early_stopping")


def _deepnnk_arms(cfg, data, seed, arm, store):
    import pandas as pd

    from ...measures.interpolation import NNKClassifier
    from ..early_stopping import DeepNNKMonitor

    mspec, tspec = dict(cfg["model"]), dict(cfg["train"])
    if arm == "regularised":
        mspec["dropout"], tspec["weight_decay"] = 0.3, 1e-4
    elif arm != "model":
        raise InvalidParameterError(f"deepnnk arms are 'model' and 'regularised'; got {arm!r}")
    model = build_model(mspec, data, seed)
    checkpoints = set(cfg["checkpoints"]) or set(range(1, tspec["epochs"] + 1))

    def extra(m):
        Ftr = layer_features(m, data.X_train, cfg["layer"])
        Fte = layer_features(m, data.X_test, cfg["layer"])
        clf = NNKClassifier(k=cfg["k"]).fit(Ftr, data.y_train)
        return {"train_error": error_rate(m, data.X_train, data.y_train),
                "test_error": error_rate(m, data.X_test, data.y_test),
                "nnk_test_error": float((clf.predict(Fte) != data.y_test).mean())}

    mon = DeepNNKMonitor(data.X_train, data.y_train, lambda m, X: layer_features(m, X, cfg["layer"]), k=cfg["k"],
                         extra=extra)
    train(model, data.X_train, data.y_train, tspec, seed,
          callback=lambda e, m: mon(e, m) if e in checkpoints else False)
    store.write("early_stopping", pd.DataFrame(mon.history), seed=int(seed), arm=arm)


def _cw_arms(cfg, data, seed, arm, store):
    import pandas as pd

    from ..early_stopping import ChannelwiseEarlyStopping

    model = build_model(cfg["model"], data, seed)
    row = {"epochs_trained": cfg["train"]["epochs"], "freeze_epochs": "", "best_epochs": ""}
    if arm == "cw":
        cb = ChannelwiseEarlyStopping(data.X_train, data.y_train, k=cfg["k"], every=cfg["every"],
                                      patience=cfg["patience"])
        hist = train(model, data.X_train, data.y_train, cfg["train"], seed, callback=cb, after_step=cb.after_step)
        store.write("channel_loo", pd.DataFrame(cb.history), seed=int(seed))
        row.update(epochs_trained=len(hist), n_frozen=len(cb.frozen_at),
                   freeze_epochs=",".join(str(cb.frozen_at.get(c, "-")) for c in range(cfg["model"]["n_channels"])),
                   best_epochs=",".join(str(v) for _, v in sorted(cb.best_epochs().items())))
    elif arm == "validation":
        import copy

        from ...nn.models import predict

        n = len(data.X_train)
        perm = np.random.default_rng(seed).permutation(n)
        n_val = int(round(cfg["validation_fraction"] * n))
        val, fit = perm[:n_val], perm[n_val:]
        state = {"best": -1.0, "since": 0, "weights": None, "epoch": 0}

        def cb(epoch, m):
            acc = float((predict(m, data.X_train[val]) == data.y_train[val]).mean())
            if acc > state["best"]:
                state.update(best=acc, since=0, weights=copy.deepcopy(m.state_dict()), epoch=epoch)
                return False
            state["since"] += 1
            return state["since"] >= cfg["patience"]

        hist = train(model, data.X_train[fit], data.y_train[fit], cfg["train"], seed, callback=cb)
        model.load_state_dict(state["weights"])
        row.update(epochs_trained=len(hist), best_epochs=str(state["epoch"]))
    elif arm == "fixed":
        train(model, data.X_train, data.y_train, cfg["train"], seed)
    else:
        raise InvalidParameterError(f"cw-deepnnk arms are 'cw', 'validation' and 'fixed'; got {arm!r}")
    row["test_accuracy"] = 1.0 - error_rate(model, data.X_test, data.y_test)
    store.write("early_stopping", pd.DataFrame([row]), seed=int(seed), arm=arm)


AGREE_EPOCHS = 1  # minimum of NNK LOO within this many checkpoints of the test-error minimum counts as agreeing
DIFFERENCE = 0.01  # test accuracies of two arms this far apart count as different
ERRORS = ("loo_error_nnk", "loo_error_wknn", "train_error", "test_error", "nnk_test_error")
GLOSSARY = {
    "arm": Term("the training variant: model (as configured), regularised (dropout 0.3, weight decay 1e-4); or "
                "cw (channel-wise NNK freezing), validation (held-out stopping) and fixed (all epochs)"),
    "loo_error_wknn": Term("leave-one-out error of weighted kNN on the same candidates", "[0, 1]",
                           "lower = labels smooth on the kNN graph", "nnkscope"),
    "mean_nnk_degree": Term("mean number of NNK neighbours per training sample", "[1, K]", "", "nnkscope"),
    "dead_rows": Term("training samples whose features are all zero (counted as LOO errors)", "integer", "0 = none"),
    "nnk_test_error": Term("test error of the NNK classifier fitted on the layer's training features", "[0, 1]",
                           "lower = better", "Shekkizhar & Ortega, DeepNNK"),
    "epochs_trained": Term("epochs trained before stopping", "integer"),
    "freeze_epochs": Term("per channel, the epoch it was frozen (- = never)"),
    "best_epochs": Term("per channel (cw) or for the model (validation), the epoch restored as best"),
    "n_frozen": Term("channels frozen before the end of training", "integer"),
    "channel": Term("channel of the channel-wise ConvNet"),
}


_RUNNERS = {"deepnnk": _deepnnk_arms, "cw-deepnnk": _cw_arms}


def _arm_unit(cfg: dict, store: RunStore, data, seed: int, arm: str) -> None:
    _RUNNERS[cfg["method"]](cfg, data, seed, arm, store)


def _check_epoch(sub, col) -> float:
    s = sub.dropna(subset=[col])
    return float(s.epoch[s[col].idxmin()]) if len(s) else np.nan


def _deepnnk_section(t) -> dict:
    cols = [c for c in ERRORS if c in t.columns]
    t = t.sort_values(["arm", "seed", "epoch"], ignore_index=True)
    run = t.assign(run=[f"{a}, seed {s}" for a, s in zip(t.arm, t.seed, strict=True)])
    ep = run.epoch[run.epoch > 0]
    spans = len(ep) and ep.min() > 0 and run.epoch.min() > 0 and ep.max() / ep.min() >= 100
    fig = lines(long(run, cols), "epoch", "value", by="measure", panel="run", x_title="epoch", y_title="error",
                log_x=bool(spans), cols=2)
    takeaways = []
    for (arm, seed), sub in t.groupby(["arm", "seed"], sort=False):
        last = sub.iloc[-1]
        line = f"{arm} (seed {seed}), epoch {int(last.epoch)}: NNK LOO {fmt(last.loo_error_nnk)}"
        if "test_error" in sub:
            e_loo, e_test = _check_epoch(sub, "loo_error_nnk"), _check_epoch(sub, "test_error")
            epochs = list(sub.epoch)
            apart = abs(epochs.index(e_loo) - epochs.index(e_test)) if np.isfinite(e_loo + e_test) else np.nan
            line += (f", test error {fmt(last.test_error)}; NNK LOO is lowest at epoch {e_loo:g} and test error at "
                     f"epoch {e_test:g}: {'they agree' if apart <= AGREE_EPOCHS else 'they disagree'} (within "
                     f"{AGREE_EPOCHS} checkpoint counts as agreeing)")
        takeaways.append(line + ".")
    return dict(title="DeepNNK through training", takeaways=takeaways, figures=[Figure(
        "Errors per checkpoint", fig, "One panel per arm and seed: if the NNK leave-one-out error (training data "
        "only) bottoms out where the test error does, it can stop training without a validation set.",
        tuple(cols))], table=t)


def _channelwise_section(store: RunStore, t) -> dict:
    g = t.groupby("arm", as_index=False, sort=False).agg(test_accuracy=("test_accuracy", "mean"),
                                                         std=("test_accuracy", "std"),
                                                         epochs_trained=("epochs_trained", "mean"))
    figs = [Figure("Test accuracy per arm", lines(g.assign(what="test accuracy"), "arm", "test_accuracy", by="what",
                                                  band="std", mode="bar", colour={"test accuracy": "#4477AA"},
                                                  x_title="arm", y_title="test accuracy (mean over seeds)",
                                                  hover=("epochs_trained",)),
                   "Error bars: standard deviation over seeds; cw trains on all training data, validation holds "
                   "part of it out.", ("test_accuracy", "epochs_trained"))]
    acc = dict(zip(g.arm, g.test_accuracy, strict=True))
    takeaways = ["Mean test accuracy: " + ", ".join(f"{a} {fmt(v)}" for a, v in acc.items()) + "."]
    for other in ("validation", "fixed"):
        if "cw" in acc and other in acc:
            d = acc["cw"] - acc[other]
            takeaways.append(f"Channel-wise freezing vs {other}: {d:+.3f} test accuracy, "
                             f"{'a difference' if abs(d) >= DIFFERENCE else 'no difference'} (>= {DIFFERENCE:g} "
                             "counts).")
    if "channel_loo" in store.tables():  # each channel's own LOO error, and where it froze
        h = store.read("channel_loo").sort_values(["seed", "channel", "epoch"], ignore_index=True)
        figs.append(Figure("Channel-wise leave-one-out error", lines(
            h.assign(panel=[f"seed {s}" for s in h.seed]), "epoch", "loo_error_nnk", by="channel",
            key="channel {}", panel="panel", x_title="epoch", y_title="NNK LOO error of the channel"),
            "Each channel's own NNK leave-one-out error; a curve ends where the channel froze (or training ended).",
            ("loo_error_nnk", "channel")))
    return dict(title="Early stopping", takeaways=takeaways, figures=figs, table=t)


def _early_stopping_section(store: RunStore) -> dict:
    t = store.read("early_stopping")
    s = _deepnnk_section(t) if "loo_error_nnk" in t.columns else _channelwise_section(store, t)
    return section(s["title"], s["takeaways"], s["figures"], s["table"], GLOSSARY)


ARMS = {"deepnnk": ("model", "regularised"), "cw-deepnnk": ("cw", "validation", "fixed")}


def _check_arms(cfg_arms):
    allowed = sorted({a for arms in ARMS.values() for a in arms})
    return each(choice(*allowed))(cfg_arms)


EARLY_STOPPING = StudyKind(
    name="early-stopping", run=run_early_stopping, section=_early_stopping_section,
    tables=("early_stopping", "channel_loo"),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seeds": [0], "method": "deepnnk", "layer": "blocks.1",
              "k": 25, "every": 1, "patience": 20, "arms": ["model"], "validation_fraction": 0.2, "checkpoints": []},
    checks={"method": choice(*ARMS), "arms": _check_arms, "every": integer(1), "patience": integer(1),
            "validation_fraction": number(0, 1, open_lo=True, open_hi=True),
            "checkpoints": each(integer(0), non_empty=False)},
    summary="DeepNNK LOO per checkpoint, or CW-DeepNNK channel freezing vs validation-based stopping")
