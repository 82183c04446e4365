"""Graph-based semi-supervised learning on NNK vs kNN graphs (research notes §2, R2, pilot P2).

Harmonic label propagation (Zhu et al. 2003; :func:`nnkscope.measures.labels.label_propagation`) from a small
labelled subset, on the kNN graph (kernel weights on the K candidates, union-symmetrised) and on NNK graphs over the
same candidates and the same global bandwidth (``max`` and the authors' ``reference`` symmetrisation).  The claim:
NNK's error is at most kNN's and grows less with K, because NNK drops the far candidates that kNN keeps.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["GRAPHS", "labelled_split", "propagation_graphs", "propagation_error"]

GRAPHS = ("knn", "nnk-max", "nnk-reference", "nnk-mean", "nnk-min")


def labelled_split(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a seeded stratified labelled subset: ``round(fraction * n_c)`` (at least 1) per class.

    Examples
    --------
    >>> m = labelled_split(np.array([0] * 10 + [1] * 20), 0.1, seed=0)
    >>> int(m[:10].sum()), int(m[10:].sum())
    (1, 2)
    """
    if not 0 < fraction < 1:
        raise InvalidParameterError(f"the labelled fraction must lie in (0, 1); got {fraction!r}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = max(1, int(round(fraction * len(idx))))
        mask[rng.choice(idx, size=min(n, len(idx)), replace=False)] = True
    return mask


def propagation_graphs(X: np.ndarray, k: int, graphs, *, kernel: str = "gaussian") -> dict:
    """``{graph name: (symmetric adjacency, directed edge count)}`` for the requested graphs at one K.

    Every graph shares the candidates (exact kNN) and the global bandwidth (the mean distance to the K-th
    neighbour / 3), so they differ only in which candidates keep an edge and with which weight.
    """
    from ..engine.neighbors import knn
    from ..engine.pipeline import knn_graph, nnk_graph

    bad = [g for g in graphs if g not in GRAPHS]
    if bad:
        raise InvalidParameterError(f"unknown graph(s) {bad}; choose from {list(GRAPHS)}")
    metric = "cosine" if kernel == "cosine" else "euclidean"
    nbrs = knn(X, k, metric=metric, duplicates="keep", progress=False)
    out = {}
    if "knn" in graphs:
        A = knn_graph(X, k, kernel=kernel, knn=nbrs)
        out["knn"] = (A, int(A.nnz))
    nnk = [g for g in graphs if g.startswith("nnk-")]
    if nnk:
        G = nnk_graph(X, k, kernel=kernel, knn=nbrs, duplicates="keep", progress=False)
        for g in nnk:
            A = G.adjacency(g[len("nnk-"):])
            out[g] = (A, int(A.nnz))
    return out


def propagation_error(A, y: np.ndarray, labelled: np.ndarray) -> dict:
    """Harmonic propagation from the labelled nodes; error rate on the unlabelled ones (nodes in a component
    without any label count as errors).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[0, 1.0, 0, 0], [1.0, 0, 0.1, 0], [0, 0.1, 0, 1.0], [0, 0, 1.0, 0]]))
    >>> propagation_error(A, np.array([0, 0, 1, 1]), np.array([True, False, False, True]))["error"]
    0.0
    """
    from ..measures.labels import label_propagation

    seeds = np.where(labelled, y, -1).astype(np.int64)
    pred, _ = label_propagation(A, seeds, n_classes=int(y.max()) + 1)
    un = ~labelled
    isolated = np.diff(A.indptr) == 0
    return {"error": float((pred[un] != y[un]).mean()), "unreachable": int((pred[un] < 0).sum()),
            "isolated_nodes": int(isolated.sum())}
