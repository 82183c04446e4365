"""Study kind ``reliability``: label-noise detection and out-of-distribution detection from NNK geometry, each
against its kNN baseline (AUROC)."""

from __future__ import annotations

import numbers

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import DATA, MODEL, PATH_KEYS, TRAIN, StudyKind, choice, integer, number
from ..common import Data, build_model, config_data, layer_features, run_units, train
from ..figures import Figure, Term, fmt, lines, section


def _features(cfg: dict, data: Data, y_train: np.ndarray, seed: int, rows: np.ndarray | None = None):
    """``(train features, test features)``: the inputs, or a layer of a model trained (seeded) on ``y_train``
    (restricted to the training ``rows`` when given)."""
    Xtr = data.X_train if rows is None else data.X_train[rows]
    if cfg["features"] == "input":
        return Xtr.astype(np.float64), data.X_test.astype(np.float64)
    model = build_model(cfg["model"], data, seed)
    train(model, Xtr, y_train, cfg["train"], seed)
    return layer_features(model, Xtr, cfg["features"]), layer_features(model, data.X_test, cfg["features"])


def run_reliability(cfg: dict, store: RunStore, progress=None, executor=None):
    """Label noise: for each seed, flip ``noise_fraction`` of the training labels, score every training point by
    NNK leave-one-out disagreement with its given label (baselines: kNN and weighted kNN votes on the same
    candidates), AUROC and precision against the flips.  OOD: for each held-out class set, fit on the training
    points of the other classes and score the test points (held-out classes = positives).  Each (seed) label-noise
    run and each (held-out set, seed) OOD run is a unit (:func:`~nnkscope.studies.common.run_units`), on
    ``executor``'s workers when one is given."""
    data = config_data(cfg)
    classes = set(np.unique(data.y_train).tolist())
    for held in cfg["held_out"]:  # before anything runs: every held-out class exists and some classes remain
        if not set(held) <= classes or not classes - set(held) or not np.isin(data.y_test, held).any():
            raise InvalidParameterError(f"reliability.held_out {held} must name classes of the data ({sorted(classes)}"
                                        "), present in its test part, and leave at least one class for training")
    todo = []
    for seed in cfg["seeds"]:
        if not store.has("label_noise", seed=int(seed)):
            todo.append({"seed": int(seed)})
        todo += [{"seed": int(seed), "held": list(held)} for held in cfg["held_out"]
                 if not store.has("ood", held_out=_held_name(held), seed=int(seed))]
    run_units(_reliability_unit, config_data, cfg, store, todo, executor=executor, progress=progress, desc="runs",
              shared=data)
    return _summary_table(store)


def _held_name(held) -> str:
    return ",".join(str(c) for c in held)


def _reliability_unit(cfg: dict, store: RunStore, data: Data, seed: int, held: list | None = None) -> None:
    """The label-noise run of ``seed``, or with ``held`` its OOD run with those classes held out."""
    import pandas as pd

    from ...measures.reliability import auroc, flip_labels, label_noise_scores, ood_scores, precision_at_n

    k, kernel = cfg["k"], cfg["kernel"]
    if held is None:
        y_noisy, flipped = flip_labels(data.y_train, cfg["noise_fraction"], seed)
        F, _ = _features(cfg, data, y_noisy, seed)
        s = label_noise_scores(F, y_noisy, k, kernel=kernel)
        row = {"fraction": cfg["noise_fraction"], "n_train": len(F), "n_flipped": int(flipped.sum()), "k": k,
               "auroc": auroc(s["nnk"], flipped), "baseline_auroc": auroc(s["knn"], flipped),
               "wknn_auroc": auroc(s["wknn"], flipped), "precision": precision_at_n(s["nnk"], flipped),
               "baseline_precision": precision_at_n(s["knn"], flipped)}
        store.write("label_noise", pd.DataFrame([row]), seed=seed)
        return
    rows = np.flatnonzero(~np.isin(data.y_train, held))
    Ftr, Fte = _features(cfg, data, data.y_train[rows], seed, rows)
    s = ood_scores(Ftr, Fte, k, kernel=kernel, n_atoms=cfg["n_atoms"], seed=seed)
    out = np.isin(data.y_test, held)
    row = {"n_train": len(rows), "n_in": int((~out).sum()), "n_out": int(out.sum()), "k": k,
           "auroc": auroc(s["score"], out), "baseline_auroc": auroc(s["knn_distance"], out),
           "auroc_interpolation_error": auroc(s["interpolation_error"], out),
           "auroc_nnk_means": auroc(s["nnk_means_error"], out)}
    store.write("ood", pd.DataFrame([row]), held_out=_held_name(held), seed=seed)


def _summary_table(store: RunStore):
    import pandas as pd

    ln = store.read("label_noise").assign(task="label noise", setting=lambda d: d.fraction.map(
        lambda f: f"{100 * f:g}% flipped"))
    ood = store.read("ood").assign(task="OOD", setting=lambda d: "held out " + d.held_out)
    cols = ["task", "setting", "seed", "auroc", "baseline_auroc"]
    return pd.concat([ln[cols], ood[cols]], ignore_index=True).sort_values(["task", "setting", "seed"],
                                                                            ignore_index=True)


MARGIN = 0.01  # AUROC higher than the baseline's by at least this counts as NNK detecting better
SCORES = {  # column -> (method shown, colour): methods, not models, so the colours are fixed here
    "auroc": ("NNK", "#4477AA"), "auroc_interpolation_error": ("NNK interpolation error", "#66CCEE"),
    "auroc_nnk_means": ("NNK-Means error", "#228833"), "wknn_auroc": ("weighted kNN", "#CCBB44"),
    "baseline_auroc": ("kNN baseline (vote / distance)", "#BBBBBB")}
GLOSSARY = {
    "task": Term("label noise (find the flipped training labels) or OOD (find test points of held-out classes)"),
    "setting": Term("the fraction of labels flipped, or the classes held out of training"),
    "fraction": Term("fraction of training labels flipped", "(0, 0.5)"),
    "n_train": Term("training points the scores are computed on", "integer"),
    "n_flipped": Term("training labels flipped: the positives", "integer"),
    "wknn_auroc": Term("AUROC of the weighted-kNN vote disagreement", "[0, 1]", "0.5 = chance, 1 = perfect",
                       "nnkscope"),
    "precision": Term("precision of the NNK score among its top n_flipped points", "[0, 1]",
                      "higher = better; fraction flipped = chance", "nnkscope"),
    "baseline_precision": Term("the same for the kNN vote", "[0, 1]", "higher = better", "nnkscope"),
    "held_out": Term("classes left out of training (their test points are the positives)"),
    "n_in": Term("test points of the training classes (negatives)", "integer"),
    "n_out": Term("test points of the held-out classes (positives)", "integer"),
    "auroc_interpolation_error": Term("AUROC of the NNK interpolation error alone", "[0, 1]",
                                      "0.5 = chance, 1 = perfect", "Shekkizhar & Ortega"),
    "auroc_nnk_means": Term("AUROC of the NNK-Means reconstruction error alone", "[0, 1]",
                            "0.5 = chance, 1 = perfect", "Shekkizhar & Ortega, NNK-Means"),
}


def _reliability_section(store: RunStore) -> dict:
    import pandas as pd

    ln, ood = store.read("label_noise"), store.read("ood")
    ln = ln.assign(setting=[f"label noise, {100 * f:g}% flipped" for f in ln.fraction])
    ood = ood.assign(setting=["OOD, held out " + h for h in ood.held_out])
    bars = []
    for df in (ln, ood):
        for col, (method, _) in SCORES.items():
            if col in df:
                g = df.groupby("setting", sort=False)[col].agg(["mean", "std", "count"]).reset_index()
                bars.append(g.assign(method=method))
    bars = pd.concat(bars, ignore_index=True)
    fig = lines(bars, "setting", "mean", by="method", band="std", mode="bar", ref={"chance": 0.5},
                colour={m: c for m, c in SCORES.values()}, x_title="task", y_title="AUROC (mean over seeds)",
                hover=("count",))
    fig.update_yaxes(range=[0.0, 1.0])
    takeaways = []
    for df, baseline in ((ln, "kNN vote"), (ood, "kNN distance")):
        for setting, sub in df.groupby("setting", sort=False):
            nnk, base = sub.auroc.mean(), sub.baseline_auroc.mean()
            verdict = ("NNK detects better" if nnk - base >= MARGIN else
                       f"the {baseline} detects better" if base - nnk >= MARGIN else "no difference")
            takeaways.append(f"{setting[0].upper() + setting[1:]} ({len(sub)} seed(s)): AUROC NNK {fmt(nnk, 4)} vs "
                             f"{baseline} {fmt(base, 4)}: {verdict} (a margin of {MARGIN:g} counts; 0.5 is chance).")
    if "precision" in ln:
        takeaways.append(f"Among the {int(ln.n_flipped.mean())} highest-scored training points, "
                         f"{100 * ln.precision.mean():.0f}% (NNK) vs {100 * ln.baseline_precision.mean():.0f}% (kNN) "
                         f"are flipped labels ({100 * ln.fraction.iloc[0]:g}% would be chance).")
    table = {"label noise": ln.drop(columns="setting"), "OOD": ood.drop(columns="setting")}
    return section("Reliability: label noise and out-of-distribution", takeaways, [
        Figure("Detection AUROC, NNK vs baselines", fig, "One group of bars per task; error bars are the standard "
               "deviation over seeds and the dotted line is chance (0.5). The kNN baseline is the kNN label vote for "
               "label noise and the kNN distance for OOD.", tuple(SCORES))], table, GLOSSARY)


def _class_sets(v):
    ok = isinstance(v, list) and v and all(
        isinstance(s, list) and s and all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and c >= 0
                                          for c in s) for s in v)
    return None if ok else "a non-empty list of non-empty lists of class labels, e.g. [[8, 9], [0, 1]]"


RELIABILITY = StudyKind(
    name="reliability", run=run_reliability, section=_reliability_section, tables=("label_noise", "ood"),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "features": "input", "k": 25, "kernel": "cosine",
              "noise_fraction": 0.1, "seeds": [0, 1, 2], "held_out": [[8, 9], [0, 1], [3, 5]], "n_atoms": 50},
    checks={"kernel": choice("cosine", "gaussian"), "noise_fraction": number(0, 0.5, open_lo=True, open_hi=True),
            "held_out": _class_sets, "n_atoms": integer(2)},
    summary="label-noise and OOD detection by NNK disagreement / interpolation error vs kNN baselines (AUROC)",
    path_keys=tuple(k for k in PATH_KEYS if k != "features"))  # features: a layer name here, not a file
