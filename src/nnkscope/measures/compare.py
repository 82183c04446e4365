"""Comparing representations of the same points: NNK-neighbourhood overlap, graph agreement, linear CKA.

Graph measures only look at *which* points are neighbours and with what weight, so they compare layers, models or
runs of different dimensions without any alignment.  Linear CKA (Kornblith et al. 2019) is the usual coordinate-based
baseline.  Every overlap comes with the same measure on a node-shuffled copy (the chance level), so a number can be
read as "x times chance".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validate import as_points
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["linear_cka", "neighbourhood_jaccard", "graph_agreement", "compare_graphs", "shuffled"]


def linear_cka(X, Y) -> float:
    """Linear centred kernel alignment ``||Yc' Xc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F)`` of two (N, d) embeddings.

    Invariant to rotations and isotropic scaling of either side; 1 for identical geometry. Costs d_x * d_y memory.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(linear_cka(X, 3 * X[:, ::-1]), 12)
    1.0
    """
    X = as_points(X, "X").astype(np.float64)
    Y = as_points(Y, "Y").astype(np.float64)
    if len(X) != len(Y):
        raise InputShapeError(f"X and Y must describe the same points; got {len(X)} and {len(Y)} rows")
    Xc = X - X.mean(0)
    Yc = Y - Y.mean(0)
    cross = np.linalg.norm(Yc.T @ Xc) ** 2
    denom = np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)
    if denom == 0:
        raise InvalidParameterError("linear CKA is undefined for a constant embedding (all rows equal)")
    return float(cross / denom)


def _support(candidates: np.ndarray, theta: np.ndarray, n: int) -> sp.csr_array:
    """(N, n) 0/1 matrix of each node's NNK neighbours (candidates with non-zero weight)."""
    nz = theta > 0
    indptr = np.zeros(len(candidates) + 1, np.int64)
    np.cumsum(nz.sum(1), out=indptr[1:])
    return sp.csr_array((np.ones(int(indptr[-1])), candidates[nz], indptr), shape=(len(candidates), n))


def _graphs(a, b):
    if a.n_nodes != b.n_nodes:
        raise InputShapeError(f"graphs must be built on the same points; got {a.n_nodes} and {b.n_nodes} nodes")
    return a, b


def neighbourhood_jaccard(a, b) -> np.ndarray:
    """Per-node Jaccard overlap ``|N_a(i) & N_b(i)| / |N_a(i) | N_b(i)|`` of the NNK neighbour sets of two graphs.

    Nodes with no NNK neighbour in either graph get 1 (both sets empty).

    Examples
    --------
    >>> from nnkscope import nnk_graph
    >>> X = np.random.default_rng(0).normal(size=(80, 3))
    >>> bool((neighbourhood_jaccard(nnk_graph(X, 8), nnk_graph(2 * X, 8)) == 1).all())
    True
    """
    a, b = _graphs(a, b)
    A = _support(a.candidates, a.theta, a.n_nodes)
    B = _support(b.candidates, b.theta, b.n_nodes)
    inter = np.asarray(A.multiply(B).sum(axis=1)).ravel()
    union = np.diff(A.indptr) + np.diff(B.indptr) - inter
    return np.divide(inter, union, out=np.ones(len(inter)), where=union > 0)


def graph_agreement(a, b, rule: str = "max") -> float:
    """Weighted edge agreement of the symmetric adjacencies: ``sum min(A, B) / sum max(A, B)`` (1 = same graph).

    Examples
    --------
    >>> from nnkscope import nnk_graph
    >>> X = np.random.default_rng(0).normal(size=(60, 3))
    >>> graph_agreement(nnk_graph(X, 6), nnk_graph(X, 6))
    1.0
    """
    a, b = _graphs(a, b)
    A, B = a.adjacency(rule), b.adjacency(rule)
    top = A.maximum(B).sum()
    return float(A.minimum(B).sum() / top) if top > 0 else 1.0


def shuffled(graph, seed: int = 0):
    """The same graph with its nodes relabelled by a seeded random permutation (the chance baseline)."""
    from ..engine.graph import NNKGraph

    perm = np.random.default_rng(seed).permutation(graph.n_nodes)
    inv = np.argsort(perm)
    # node perm[i] of the copy is node i of the original: rows move to perm, indices are renamed by perm
    return NNKGraph(perm[graph.candidates[inv]], graph.theta[inv], graph.errors[inv], graph.status[inv],
                    None if graph.distances is None else graph.distances[inv], dict(graph.params))


def compare_graphs(a, b, *, seed: int = 0) -> dict:
    """Headline comparison of two NNK graphs on the same points, each with its shuffled baseline.

    Returns ``jaccard`` (mean per-node NNK-neighbour Jaccard), ``jaccard_shuffled`` (against a node-shuffled
    ``b``), ``jaccard_ratio``, ``edge_agreement`` and ``edge_agreement_shuffled``, and the Spearman correlation of the
    per-node NNK degrees (with its shuffled value).
    """
    from scipy.stats import spearmanr

    bs = shuffled(b, seed)
    j, js = neighbourhood_jaccard(a, b).mean(), neighbourhood_jaccard(a, bs).mean()
    da, db, dbs = a.n_neighbors, b.n_neighbors, bs.n_neighbors
    return {"jaccard": float(j), "jaccard_shuffled": float(js), "jaccard_ratio": float(j / js) if js > 0 else np.inf,
            "edge_agreement": graph_agreement(a, b), "edge_agreement_shuffled": graph_agreement(a, bs),
            "degree_spearman": float(spearmanr(da, db).statistic) if da.std() and db.std() else np.nan,
            "degree_spearman_shuffled": float(spearmanr(da, dbs).statistic) if da.std() and dbs.std() else np.nan}
