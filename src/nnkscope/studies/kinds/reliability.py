"""Study kind ``reliability``: label-noise detection and out-of-distribution detection from NNK geometry, each
against its kNN baseline (AUROC)."""

from __future__ import annotations

import numbers

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, integer, number
from ..common import Data, build_model, layer_features, load_data, train
from ..figures import html_table, png


def _features(cfg: dict, data: Data, y_train: np.ndarray, seed: int, rows: np.ndarray | None = None):
    """``(train features, test features)``: the inputs, or a layer of a model trained (seeded) on ``y_train``
    (restricted to the training ``rows`` when given)."""
    Xtr = data.X_train if rows is None else data.X_train[rows]
    if cfg["features"] == "input":
        return Xtr.astype(np.float64), data.X_test.astype(np.float64)
    model = build_model(cfg["model"], data, seed)
    train(model, Xtr, y_train, cfg["train"], seed)
    return layer_features(model, Xtr, cfg["features"]), layer_features(model, data.X_test, cfg["features"])


def run_reliability(cfg: dict, store: RunStore, progress=None):
    """Label noise: for each seed, flip ``noise_fraction`` of the training labels, score every training point by
    NNK leave-one-out disagreement with its given label (baselines: kNN and weighted kNN votes on the same
    candidates), AUROC and precision against the flips.  OOD: for each held-out class set, fit on the training
    points of the other classes and score the test points (held-out classes = positives)."""
    import pandas as pd

    from ...measures.reliability import auroc, flip_labels, label_noise_scores, ood_scores, precision_at_n

    data = load_data(cfg["data"])
    k, kernel = cfg["k"], cfg["kernel"]
    classes = set(np.unique(data.y_train).tolist())
    for held in cfg["held_out"]:  # before anything runs: every held-out class exists and some classes remain
        if not set(held) <= classes or not classes - set(held) or not np.isin(data.y_test, held).any():
            raise InvalidParameterError(f"reliability.held_out {held} must name classes of the data ({sorted(classes)}"
                                        "), present in its test part, and leave at least one class for training")
    for seed in cfg["seeds"]:
        if not store.has("label_noise", seed=int(seed)):
            y_noisy, flipped = flip_labels(data.y_train, cfg["noise_fraction"], seed)
            F, _ = _features(cfg, data, y_noisy, seed)
            s = label_noise_scores(F, y_noisy, k, kernel=kernel)
            row = {"fraction": cfg["noise_fraction"], "n_train": len(F), "n_flipped": int(flipped.sum()), "k": k,
                   "auroc": auroc(s["nnk"], flipped), "baseline_auroc": auroc(s["knn"], flipped),
                   "wknn_auroc": auroc(s["wknn"], flipped), "precision": precision_at_n(s["nnk"], flipped),
                   "baseline_precision": precision_at_n(s["knn"], flipped)}
            store.write("label_noise", pd.DataFrame([row]), seed=int(seed))
        for held in cfg["held_out"]:
            name = ",".join(str(c) for c in held)
            if store.has("ood", held_out=name, seed=int(seed)):
                continue
            rows = np.flatnonzero(~np.isin(data.y_train, held))
            Ftr, Fte = _features(cfg, data, data.y_train[rows], seed, rows)
            s = ood_scores(Ftr, Fte, k, kernel=kernel, n_atoms=cfg["n_atoms"], seed=int(seed))
            out = np.isin(data.y_test, held)
            row = {"n_train": len(rows), "n_in": int((~out).sum()), "n_out": int(out.sum()), "k": k,
                   "auroc": auroc(s["score"], out), "baseline_auroc": auroc(s["knn_distance"], out),
                   "auroc_interpolation_error": auroc(s["interpolation_error"], out),
                   "auroc_nnk_means": auroc(s["nnk_means_error"], out)}
            store.write("ood", pd.DataFrame([row]), held_out=name, seed=int(seed))
    return _summary_table(store)


def _summary_table(store: RunStore):
    import pandas as pd

    ln = store.read("label_noise").assign(task="label noise", setting=lambda d: d.fraction.map(
        lambda f: f"{100 * f:g}% flipped"))
    ood = store.read("ood").assign(task="OOD", setting=lambda d: "held out " + d.held_out)
    cols = ["task", "setting", "seed", "auroc", "baseline_auroc"]
    return pd.concat([ln[cols], ood[cols]], ignore_index=True).sort_values(["task", "setting", "seed"],
                                                                            ignore_index=True)


def _reliability_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    ln, ood = store.read("label_noise"), store.read("ood")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].bar(["NNK", "weighted kNN", "kNN"], [ln.auroc.mean(), ln.wknn_auroc.mean(), ln.baseline_auroc.mean()],
                yerr=[ln.auroc.std(), ln.wknn_auroc.std(), ln.baseline_auroc.std()] if len(ln) > 1 else None,
                color=["C0", "C1", "C2"], capsize=3)
    axes[0].axhline(0.5, color="k", lw=0.8, ls=":")
    axes[0].set(ylim=(0.4, 1.0), ylabel="AUROC", title=f"label noise ({100 * ln.fraction.iloc[0]:g}% flipped)")
    g = ood.groupby("held_out")[["auroc", "auroc_interpolation_error", "auroc_nnk_means", "baseline_auroc"]].mean()
    x = np.arange(len(g))
    for i, (col, lab) in enumerate([("auroc", "NNK score"), ("auroc_interpolation_error", "NNK interp. error"),
                                    ("auroc_nnk_means", "NNK-Means error"), ("baseline_auroc", "kNN distance")]):
        axes[1].bar(x + (i - 1.5) * 0.2, g[col], width=0.2, label=lab)
    axes[1].axhline(0.5, color="k", lw=0.8, ls=":")
    axes[1].set(xticks=x, xticklabels=[f"held out {h}" for h in g.index], ylim=(0.4, 1.0), ylabel="AUROC",
                title="out-of-distribution classes")
    axes[1].legend(fontsize=7)
    summary = [f"Label noise ({100 * ln.fraction.iloc[0]:g}% flipped, {len(ln)} seed(s)): AUROC NNK "
               f"{ln.auroc.mean():.4f} vs kNN {ln.baseline_auroc.mean():.4f} (weighted kNN {ln.wknn_auroc.mean():.4f});"
               f" precision at the number flipped {ln.precision.mean():.3f} vs {ln.baseline_precision.mean():.3f}."]
    for h, r in g.iterrows():
        summary.append(f"OOD, held-out classes {h}: AUROC NNK score {r.auroc:.4f} (interpolation error alone "
                       f"{r.auroc_interpolation_error:.4f}, NNK-Means alone {r.auroc_nnk_means:.4f}) vs kNN distance "
                       f"{r.baseline_auroc:.4f}.")
    table = _summary_table(store).groupby(["task", "setting"], as_index=False)[["auroc", "baseline_auroc"]].mean()
    return {"title": "Reliability: label noise and out-of-distribution", "figures": [("AUROC", png(fig))],
            "summary": summary, "table": html_table(table)}


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
    summary="label-noise and OOD detection by NNK disagreement / interpolation error vs kNN baselines (AUROC)")
