"""Study kind ``width-sweep``: interpolation geometry (H, weighted vs unweighted LOO) across model widths."""

from __future__ import annotations

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer
from ..common import build_model, error_rate, layer_features, load_data, train
from ..figures import html_table, png


def run_width_sweep(cfg: dict, store: RunStore, progress=None):
    """Train an MLP per width until 100% training accuracy has held ``hold_epochs`` epochs (or ``max_epochs``);
    NNK leave-one-out geometry of its last hidden layer on the training set."""
    import pandas as pd

    from ..width_sweep import interpolation_geometry

    data = load_data(cfg["data"])
    for width in cfg["widths"]:
        if store.has("width_sweep", width=int(width)):
            continue
        model = build_model(dict(cfg["model"], width=int(width)), data, cfg["seed"])
        held = {"n": 0}

        def cb(epoch, m, held=held):
            held["n"] = held["n"] + 1 if error_rate(m, data.X_train, data.y_train) == 0 else 0
            return held["n"] >= cfg["hold_epochs"]

        hist = train(model, data.X_train, data.y_train, dict(cfg["train"], epochs=cfg["max_epochs"]), cfg["seed"],
                     callback=cb)
        last = f"blocks.{cfg['model']['depth']}"
        row = interpolation_geometry(layer_features(model, data.X_train, last), data.y_train, cfg["k"])
        row.update(epochs=len(hist), train_error=hist[-1]["train_error"],
                   test_error=error_rate(model, data.X_test, data.y_test))
        store.write("width_sweep", pd.DataFrame([row]), width=int(width))
    return store.read("width_sweep").sort_values("width")


def _width_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = store.read("width_sweep").sort_values("width")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(t.width, t.homogeneous_fraction_H, "o-")
    axes[0].set(xscale="log", xlabel="width", title="homogeneous nodes H")
    axes[1].plot(t.width, t.loo_error_weighted, "o-", label="weighted (NNK)")
    axes[1].plot(t.width, t.loo_error_unweighted, "o-", label="unweighted")
    axes[1].set(xscale="log", xlabel="width", title="leave-one-out error")
    axes[1].legend(fontsize=8)
    a, b = t.iloc[0], t.iloc[-1]
    summary = [f"Width {a.width} -> {b.width}: H {a.homogeneous_fraction_H:.2f} -> {b.homogeneous_fraction_H:.2f}, "
               f"weighted/unweighted LOO gap {a.gap:.4f} -> {b.gap:.4f}."]
    return {"title": "Width sweep", "figures": [("Interpolation geometry", png(fig))], "summary": summary,
            "table": html_table(t)}


WIDTH_SWEEP = StudyKind(
    name="width-sweep", run=run_width_sweep, section=_width_section, tables=("width_sweep",),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seed": 0, "widths": [8, 16, 32, 64, 256, 1024],
              "k": 25, "hold_epochs": 20, "max_epochs": 500},
    checks={"widths": each(integer(1)), "hold_epochs": integer(1), "max_epochs": integer(1),
            "model.kind": choice("mlp")},
    summary="H, weighted vs unweighted LOO across model widths")
