"""Study kind ``label-propagation`` (R2): harmonic label propagation on NNK vs kNN graphs across K."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, StudyKind, choice, each, integer, number
from ..common import load_data, run_units
from ..figures import Figure, Term, fmt, lines, section


def run_label_propagation(cfg: dict, store: RunStore, progress=None, executor=None):
    """For every K: one graph of each kind on the whole dataset (train and test parts together: propagation is
    transductive), then harmonic propagation from each of ``n_splits`` seeded stratified labelled subsets of
    ``label_fraction``; the error on the unlabelled nodes.  Each K is a unit (its graphs share one neighbour
    search; :func:`~nnkscope.studies.common.run_units`), on ``executor``'s workers when one is given."""
    todo = []
    for k in cfg["ks"]:
        graphs = [g for g in cfg["graphs"] if not store.has("label_propagation", graph=g, k=int(k))]
        if graphs:
            todo.append({"k": int(k), "graphs": graphs})
    run_units(_k_unit, _points, cfg, store, todo, executor=executor, progress=progress, desc="K")
    return _table(store)


def _points(cfg: dict) -> tuple:
    """What every unit reads: all points (train and test parts), their labels, the labelled subsets."""
    from ..propagation import labelled_split

    data = load_data(cfg["data"])
    X = np.concatenate([data.X_train, data.X_test]).astype(np.float64)
    y = np.concatenate([data.y_train, data.y_test])
    return X, y, [labelled_split(y, cfg["label_fraction"], cfg["seed"] + s) for s in range(cfg["n_splits"])]


def _k_unit(cfg: dict, store: RunStore, shared: tuple, k: int, graphs: list) -> None:
    import pandas as pd

    from ..propagation import propagation_error, propagation_graphs

    X, y, splits = shared
    for g, (A, edges) in propagation_graphs(X, k, graphs, kernel=cfg["kernel"]).items():
        rows = [{"split": s, **propagation_error(A, y, m), "edges": edges // 2, "n_nodes": len(y),
                 "n_labelled": int(m.sum())} for s, m in enumerate(splits)]
        store.write("label_propagation", pd.DataFrame(rows), graph=g, k=k)


def _table(store: RunStore):
    t = store.read("label_propagation")
    return t[["graph", "k", "split", "error", "edges", "isolated_nodes", "unreachable", "n_nodes", "n_labelled"]] \
        .sort_values(["graph", "k", "split"], ignore_index=True)


GLOSSARY = {
    "graph": Term("the graph propagated on: knn (K nearest neighbours, Gaussian weights) or an NNK graph "
                  "symmetrised by max, reference, mean or min", "", "", "Shekkizhar & Ortega (R2)"),
    "split": Term("index of the seeded stratified labelled subset"),
    "error": Term("error of harmonic label propagation on the unlabelled nodes", "[0, 1]", "lower = better",
                  "Zhu et al. 2003; nnkscope (R2)"),
    "error_std": Term("standard deviation of the error over the labelled splits", "[0, 1]", ""),
    "edges": Term("undirected edges of the graph", "integer", "fewer = sparser graph"),
    "isolated_nodes": Term("nodes with no edge", "integer", "0 = every node takes part"),
    "unreachable": Term("unlabelled nodes no labelled node reaches (counted as errors)", "integer", "0 = none"),
    "n_nodes": Term("nodes in the graph (training and test points together: propagation is transductive)",
                    "integer"),
    "n_labelled": Term("labelled nodes of the split", "integer"),
    "splits": Term("labelled splits averaged over", "integer"),
}


def _summary_lines(t) -> list[str]:
    g = t.groupby(["graph", "k"]).error.agg(["mean", "std"]).fillna({"std": 0.0})
    m, sd = g["mean"].unstack("graph"), g["std"].unstack("graph")
    lines_ = []
    if "knn" in m:
        nnk = [c for c in m.columns if c.startswith("nnk")]
        wins = 0
        for k, row in m.iterrows():
            best = min(nnk, key=lambda c: row[c]) if nnk else None
            if best is None:
                continue
            margin = row["knn"] - row[best]
            beats = margin > max(sd.loc[k, best], sd.loc[k, "knn"])
            wins += bool(beats)
            lines_.append(f"K={k}: best NNK graph ({best}) error {fmt(row[best], 4)} vs kNN {fmt(row['knn'], 4)}: "
                          f"{'NNK better' if beats else 'no clear difference' if margin >= 0 else 'kNN better'} "
                          "(a difference larger than the split standard deviation counts).")
        if nnk:
            lines_.insert(0, f"The best NNK graph beats kNN at {wins} of {len(m)} values of K (by more than the "
                             "standard deviation over labelled splits).")
        ks = m.index
        if len(ks) > 1:
            lo, hi = ks.min(), ks.max()
            lines_.append(f"Error change from K={lo} to K={hi}: " + ", ".join(
                f"{c} {m.loc[hi, c] - m.loc[lo, c]:+.4f}" for c in m.columns) + " (NNK graphs should change less: "
                "they keep only the non-redundant candidates).")
    return lines_


def _label_propagation_section(store: RunStore) -> dict:
    t = _table(store)
    table = t.groupby(["graph", "k"], as_index=False).agg(
        error=("error", "mean"), error_std=("error", "std"), edges=("edges", "first"),
        isolated_nodes=("isolated_nodes", "first"), splits=("split", "count"))
    err = lines(table, "k", "error", by="graph", key="graph {}", band="error_std", x_title="K (candidates)",
                y_title="error on unlabelled nodes", hover=("splits",))
    size = lines(table, "k", "edges", by="graph", key="graph {}", x_title="K (candidates)", y_title="undirected edges",
                 hover=("isolated_nodes",))
    return section("Label propagation (NNK vs kNN graphs)", _summary_lines(t), [
        Figure("Error across K", err, "Mean over labelled splits; the band is one standard deviation. A flat NNK "
               "curve means NNK discards the extra candidates a larger K offers.", ("error", "error_std")),
        Figure("Graph size across K", size, "kNN grows linearly with K; NNK keeps few edges per node.",
               ("edges", "isolated_nodes"))], table, GLOSSARY)


LABEL_PROPAGATION = StudyKind(
    name="label-propagation", run=run_label_propagation, section=_label_propagation_section,
    tables=("label_propagation",),
    defaults={"data": DATA, "ks": [5, 10, 20, 30, 50], "graphs": ["knn", "nnk-max", "nnk-reference"],
              "kernel": "gaussian", "label_fraction": 0.1, "n_splits": 5, "seed": 0},
    checks={"ks": each(integer(1)), "graphs": each(choice("knn", "nnk-max", "nnk-reference", "nnk-mean", "nnk-min")),
            "kernel": choice("gaussian", "cosine"), "label_fraction": number(0, 1, open_lo=True, open_hi=True),
            "n_splits": integer(1)},
    summary="harmonic label propagation from few labels on NNK vs kNN graphs across K (R2)")
