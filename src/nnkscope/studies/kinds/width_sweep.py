"""Study kind ``width-sweep``: interpolation geometry (H, weighted vs unweighted LOO) across model widths."""

from __future__ import annotations

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer
from ..common import build_model, config_data, error_rate, layer_features, run_units, train
from ..figures import Figure, Term, fmt, lines, long, section


def run_width_sweep(cfg: dict, store: RunStore, progress=None, executor=None):
    """Train an MLP per width until 100% training accuracy has held ``hold_epochs`` epochs (or ``max_epochs``);
    NNK leave-one-out geometry of its last hidden layer on the training set.  Each width is a unit
    (:func:`~nnkscope.studies.common.run_units`): on ``executor``'s workers when one is given."""
    todo = [{"width": int(w)} for w in cfg["widths"] if not store.has("width_sweep", width=int(w))]
    run_units(_width_unit, config_data, cfg, store, todo, executor=executor, progress=progress, desc="widths")
    return store.read("width_sweep").sort_values("width")


def _width_unit(cfg: dict, store: RunStore, data, width: int) -> None:
    import pandas as pd

    from ..width_sweep import interpolation_geometry

    model = build_model(dict(cfg["model"], width=width), data, cfg["seed"])
    held = {"n": 0}

    def cb(epoch, m):
        held["n"] = held["n"] + 1 if error_rate(m, data.X_train, data.y_train) == 0 else 0
        return held["n"] >= cfg["hold_epochs"]

    hist = train(model, data.X_train, data.y_train, dict(cfg["train"], epochs=cfg["max_epochs"]), cfg["seed"],
                 callback=cb)
    last = f"blocks.{cfg['model']['depth']}"
    row = interpolation_geometry(layer_features(model, data.X_train, last), data.y_train, cfg["k"])
    row.update(epochs=len(hist), train_error=hist[-1]["train_error"],
               test_error=error_rate(model, data.X_test, data.y_test))
    store.write("width_sweep", pd.DataFrame([row]), width=width)


GAP = 0.01  # unweighted minus weighted LOO error at least this counts as the NNK weights helping
GLOSSARY = {
    "width": Term("hidden width of the MLP", "integer >= 1", "", "nnkscope (R10)"),
    "homogeneous_fraction_H": Term("fraction of training samples whose NNK neighbours all share their label (H)",
                                   "[0, 1]", "higher = labels separate cleanly in the last hidden layer",
                                   "Shekkizhar & Ortega"),
    "mean_homogeneity": Term("mean over samples of the NNK-weight share of same-label neighbours (h)", "[0, 1]",
                             "higher = purer neighbourhoods", "Shekkizhar & Ortega"),
    "loo_error_weighted": Term("leave-one-out error of the NNK classifier with its NNK weights", "[0, 1]",
                               "lower = better interpolation", "Shekkizhar & Ortega"),
    "loo_error_unweighted": Term("the same with the NNK neighbours weighted equally", "[0, 1]",
                                 "lower = better interpolation", "Shekkizhar & Ortega"),
    "gap": Term("loo_error_unweighted - loo_error_weighted", "[-1, 1]", "positive = the NNK weights help",
                "nnkscope (R10)"),
    "mean_nnk_degree": Term("mean number of NNK neighbours per training sample", "[1, K]", "", "nnkscope"),
    "dead_rows": Term("training samples whose features are all zero (counted as errors)", "integer", "0 = none"),
    "epochs": Term("epochs trained (until 100% training accuracy held hold_epochs epochs, or max_epochs)",
                   "integer"),
}


def _width_section(store: RunStore) -> dict:
    t = store.read("width_sweep").sort_values("width", ignore_index=True)
    h = lines(long(t, ["homogeneous_fraction_H", "mean_homogeneity"]), "width", "value", by="measure", log_x=True,
              x_title="width (log)", y_title="fraction", hover=("epochs", "train_error"))
    err = lines(long(t, ["loo_error_weighted", "loo_error_unweighted", "test_error"]), "width", "value",
                by="measure", log_x=True, x_title="width (log)", y_title="error", hover=("train_error",))
    a, b = t.iloc[0], t.iloc[-1]
    helped = t[t.gap >= GAP]
    takeaways = [f"Width {int(a.width)} -> {int(b.width)}: homogeneous fraction H {fmt(a.homogeneous_fraction_H)} -> "
                 f"{fmt(b.homogeneous_fraction_H)}; test error {fmt(a.test_error)} -> {fmt(b.test_error)}.",
                 f"The NNK weights lower the leave-one-out error by at least {GAP:g} (unweighted minus weighted) at "
                 f"{len(helped)} of {len(t)} widths"
                 + (f" ({', '.join(str(w) for w in helped.width)})" if len(helped) else "")
                 + f"; the gap goes {fmt(a.gap)} -> {fmt(b.gap)}.",
                 f"{int((t.train_error == 0).sum())} of {len(t)} widths interpolate the training set (training "
                 "error 0 counts as interpolating)."]
    return section("Width sweep", takeaways, [
        Figure("Homogeneous neighbourhoods across width", h, "H: share of training samples whose NNK neighbours "
               "all carry their label; it rises as wider models separate the classes.",
               ("homogeneous_fraction_H", "mean_homogeneity")),
        Figure("Leave-one-out error: NNK weights vs equal weights", err, "Where the weighted curve lies below the "
               "unweighted one, the NNK weights carry information beyond who the neighbours are.",
               ("loo_error_weighted", "loo_error_unweighted", "test_error"))], t, GLOSSARY)


WIDTH_SWEEP = StudyKind(
    name="width-sweep", run=run_width_sweep, section=_width_section, tables=("width_sweep",),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seed": 0, "widths": [8, 16, 32, 64, 256, 1024],
              "k": 25, "hold_epochs": 20, "max_epochs": 500},
    checks={"widths": each(integer(1)), "hold_epochs": integer(1), "max_epochs": integer(1),
            "model.kind": choice("mlp")},
    summary="H, weighted vs unweighted LOO across model widths")
