"""Study kind ``early-stopping``: DeepNNK leave-one-out through training, and CW-DeepNNK channel freezing."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer, number
from ..common import build_model, error_rate, layer_features, load_data, train
from ..figures import grid, html_table, png


def run_early_stopping(cfg: dict, store: RunStore, progress=None):
    """``method: deepnnk`` -- DeepNNK LOO of ``layer`` at each checkpoint for every arm (``model``: as configured,
    ``regularised``: dropout 0.3 + weight decay 1e-4), with model and NNK-classifier test errors.
    ``method: cw-deepnnk`` -- arms ``cw`` (channel-wise freezing on all training data), ``validation`` (hold out
    ``validation_fraction``, stop after ``patience`` epochs without validation improvement, restore the best) and
    ``fixed`` (``train.epochs`` epochs)."""
    runner = {"deepnnk": _deepnnk_arms, "cw-deepnnk": _cw_arms}.get(cfg["method"])
    if runner is None:
        raise InvalidParameterError(f"method must be 'deepnnk' or 'cw-deepnnk'; got {cfg['method']!r}")
    data = load_data(cfg["data"])
    for seed in cfg["seeds"]:
        for arm in cfg["arms"]:
            if not store.has("early_stopping", seed=int(seed), arm=arm):
                runner(cfg, data, seed, arm, store)
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


def _early_stopping_section(store: RunStore) -> dict:

    t = store.read("early_stopping")
    if "loo_error_nnk" not in t.columns:  # channel-wise arms: one row per (seed, arm)
        agg = t.groupby("arm").test_accuracy.mean()
        summary = ["Mean test accuracy: " + ", ".join(f"{a} {v:.3f}" for a, v in agg.items()) + "."]
        figs = []
        if "channel_loo" in store.tables():  # each channel's own LOO error, and where it froze
            h = store.read("channel_loo")
            fig, axes = grid(h.seed.nunique())
            for ax, (seed, sub) in zip(axes, h.groupby("seed"), strict=False):
                for c, ch in sub.groupby("channel"):
                    line, = ax.plot(ch.epoch, ch.loo_error_nnk, lw=1, label=f"channel {c}")
                    ax.plot(ch.epoch.iloc[-1], ch.loo_error_nnk.iloc[-1], "x", color=line.get_color())
                ax.set(title=f"seed {seed} (x: last check, frozen or end)", xlabel="epoch", ylabel="NNK LOO error")
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=7)
            figs.append(("Channel-wise leave-one-out error", png(fig)))
        return {"title": "Early stopping", "figures": figs, "summary": summary, "table": html_table(t)}
    cols = [c for c in ("loo_error_nnk", "loo_error_wknn", "train_error", "test_error", "nnk_test_error")
            if c in t.columns]
    fig, axes = grid(len(t.groupby(["arm", "seed"])))
    summary = []
    for ax, ((arm, seed), sub) in zip(axes, t.groupby(["arm", "seed"]), strict=False):
        for c in cols:
            ax.plot(sub.epoch, sub[c], "o-", ms=3, label=c)
        ax.set(title=f"{arm}, seed {seed}", xlabel="epoch", ylabel="error")
        ax.grid(alpha=0.3)
        last = sub.iloc[-1]
        summary.append(f"{arm} (seed {seed}), epoch {int(last.epoch)}: NNK LOO {last.loo_error_nnk:.3f}" + (
            f", model train/test error {last.train_error:.3f}/{last.test_error:.3f}, NNK classifier test error "
            f"{last.nnk_test_error:.3f}" if "test_error" in sub else "") + ".")
    axes[0].legend(fontsize=7)
    return {"title": "DeepNNK through training", "figures": [("Errors per checkpoint", png(fig))],
            "summary": summary, "table": html_table(t)}


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
