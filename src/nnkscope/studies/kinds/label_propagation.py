"""Study kind ``label-propagation`` (R2): harmonic label propagation on NNK vs kNN graphs across K."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, StudyKind, choice, each, integer, number
from ..common import load_data
from ..figures import html_table, png


def run_label_propagation(cfg: dict, store: RunStore, progress=None):
    """For every K: one graph of each kind on the whole dataset (train and test parts together: propagation is
    transductive), then harmonic propagation from each of ``n_splits`` seeded stratified labelled subsets of
    ``label_fraction``; the error on the unlabelled nodes."""
    import pandas as pd

    from ..propagation import labelled_split, propagation_error, propagation_graphs

    data = load_data(cfg["data"])
    X = np.concatenate([data.X_train, data.X_test]).astype(np.float64)
    y = np.concatenate([data.y_train, data.y_test])
    splits = [labelled_split(y, cfg["label_fraction"], cfg["seed"] + s) for s in range(cfg["n_splits"])]
    for k in cfg["ks"]:
        todo = [g for g in cfg["graphs"] if not store.has("label_propagation", graph=g, k=int(k))]
        if not todo:
            continue
        for g, (A, edges) in propagation_graphs(X, int(k), todo, kernel=cfg["kernel"]).items():
            rows = [{"split": s, **propagation_error(A, y, m), "edges": edges // 2, "n_nodes": len(y),
                     "n_labelled": int(m.sum())} for s, m in enumerate(splits)]
            store.write("label_propagation", pd.DataFrame(rows), graph=g, k=int(k))
    return _table(store)


def _table(store: RunStore):
    t = store.read("label_propagation")
    return t[["graph", "k", "split", "error", "edges", "isolated_nodes", "unreachable", "n_nodes", "n_labelled"]] \
        .sort_values(["graph", "k", "split"], ignore_index=True)


def _summary_lines(t) -> list[str]:
    m = t.groupby(["graph", "k"]).error.mean().unstack("graph")
    lines = []
    if "knn" in m:
        nnk = [c for c in m.columns if c.startswith("nnk")]
        for k, row in m.iterrows():
            best = min(nnk, key=lambda c: row[c]) if nnk else None
            if best is not None:
                verdict = "<=" if row[best] <= row["knn"] else ">"
                lines.append(f"K={k}: best NNK graph ({best}) error {row[best]:.4f} {verdict} kNN {row['knn']:.4f}.")
        ks = m.index
        if len(ks) > 1:
            lo, hi = ks.min(), ks.max()
            growth = {g: m.loc[hi, g] - m.loc[lo, g] for g in m.columns}
            lines.append(f"Error change from K={lo} to K={hi}: " + ", ".join(f"{g} {v:+.4f}" for g, v in
                                                                             growth.items()) + ".")
    return lines


def _label_propagation_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = _table(store)
    g = t.groupby(["graph", "k"]).error.agg(["mean", "std"]).reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for name, sub in g.groupby("graph"):
        axes[0].errorbar(sub.k, sub["mean"], yerr=sub["std"].fillna(0), marker="o", capsize=3, label=name)
    axes[0].set(xlabel="K (candidates)", ylabel="error on unlabelled nodes", title="harmonic label propagation")
    axes[0].legend(fontsize=8)
    e = t.groupby(["graph", "k"]).edges.first().reset_index()
    for name, sub in e.groupby("graph"):
        axes[1].plot(sub.k, sub.edges, "o-", label=name)
    axes[1].set(xlabel="K", ylabel="undirected edges", title="graph size")
    axes[1].legend(fontsize=8)
    table = t.groupby(["graph", "k"], as_index=False).agg(
        error=("error", "mean"), error_std=("error", "std"), edges=("edges", "first"),
        isolated_nodes=("isolated_nodes", "first"), splits=("split", "count"))
    return {"title": "Label propagation (NNK vs kNN graphs)", "figures": [("Error across K", png(fig))],
            "summary": _summary_lines(t), "table": html_table(table)}


LABEL_PROPAGATION = StudyKind(
    name="label-propagation", run=run_label_propagation, section=_label_propagation_section,
    tables=("label_propagation",),
    defaults={"data": DATA, "ks": [5, 10, 20, 30, 50], "graphs": ["knn", "nnk-max", "nnk-reference"],
              "kernel": "gaussian", "label_fraction": 0.1, "n_splits": 5, "seed": 0},
    checks={"ks": each(integer(1)), "graphs": each(choice("knn", "nnk-max", "nnk-reference", "nnk-mean", "nnk-min")),
            "kernel": choice("gaussian", "cosine"), "label_fraction": number(0, 1, open_lo=True, open_hi=True),
            "n_splits": integer(1)},
    summary="harmonic label propagation from few labels on NNK vs kNN graphs across K (R2)")
