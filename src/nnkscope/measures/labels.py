"""Label geometry on NNK neighbourhoods and graphs: class homogeneity, smoothness, label propagation."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputShapeError, InvalidParameterError

__all__ = ["class_homogeneity", "dirichlet_energy", "cross_class_fraction", "label_variation", "label_variation_graph",
           "label_propagation"]


def class_homogeneity(candidates: np.ndarray, theta: np.ndarray, labels: np.ndarray,
                      query_labels: np.ndarray | None = None, weighted: bool = True) -> np.ndarray:
    """Local class homogeneity ``h_i``: share of i's NNK neighbours (or NNK weight) with i's label.

    ``labels`` are the labels of the candidate rows; ``query_labels`` those of the queries (default: the same,
    for in-sample graphs).  A node without any NNK neighbour gets 0 (no neighbour agrees), never NaN.
    ``H = mean(h == 1)`` is the share of homogeneous nodes.

    Examples
    --------
    >>> class_homogeneity(np.array([[1, 2]]), np.array([[0.75, 0.25]]), np.array([0, 0, 1])).tolist()
    [0.75]
    """
    labels = np.asarray(labels)
    qy = labels[: len(candidates)] if query_labels is None else np.asarray(query_labels)
    if qy.shape != (len(candidates),):
        raise InputShapeError(f"need one query label per row of candidates ({len(candidates)}); got {qy.shape}")
    w = theta if weighted else (theta > 0).astype(np.float64)
    same = labels[candidates] == qy[:, None]
    total = w.sum(1)
    return np.where(total > 0, (w * same).sum(1) / np.where(total > 0, total, 1.0), 0.0)


def _check_adjacency(A, n_labels: int) -> sp.csr_array:
    A = sp.csr_array(A)
    if A.shape != (n_labels, n_labels):
        raise InputShapeError(f"adjacency is {A.shape} but there are {n_labels} labels")
    if abs(A - A.T).max() > 1e-12 * max(1.0, abs(A).max()):
        raise InvalidParameterError("adjacency must be symmetric; use graph.adjacency(rule)")
    return A


def dirichlet_energy(A, F: np.ndarray) -> float:
    """Graph smoothness ``tr(F' L F) = 1/2 sum_ij W_ij |f_i - f_j|^2`` of a signal (or one-hot labels via
    ``F = np.eye(C)[y]``).

    Examples
    --------
    >>> A = sp.csr_array(np.array([[0, 2.0], [2.0, 0]]))
    >>> dirichlet_energy(A, np.eye(2))
    4.0
    """
    F = np.asarray(F, dtype=np.float64)
    F2 = F.reshape(len(F), -1)
    A = _check_adjacency(A, len(F2))
    L = sp.diags_array(np.asarray(A.sum(1)).ravel()) - A
    return float(np.einsum("ic,ic->", F2, L @ F2))


def cross_class_fraction(A, y: np.ndarray) -> float:
    """Fraction of edge weight joining different classes (label variation, Lassance et al.).

    Examples
    --------
    >>> A = sp.csr_array(np.array([[0, 1.0, 3.0], [1.0, 0, 0], [3.0, 0, 0]]))
    >>> cross_class_fraction(A, np.array([0, 0, 1]))
    0.75
    """
    y = np.asarray(y)
    A = _check_adjacency(A, len(y)).tocoo()
    total = A.data.sum()
    if total == 0:
        raise InvalidParameterError("the graph has no edges")
    return float(A.data[y[A.row] != y[A.col]].sum() / total)


def label_variation(X, y: np.ndarray, k: int = 10, *, neighbors=None) -> float:
    """Label variation of a layer's latent geometry graph (Lassance et al.; research notes R11): the fraction of
    edge weight crossing classes in the max-symmetrised k-NN graph weighted by cosine similarity (clipped at 0).

    The weight is the cosine similarity itself, as in the paper, not the NNK cosine kernel ``1/2 + 1/2 cos``.
    ``neighbors``: cosine candidates already found (e.g. those of a cosine NNK graph with at least ``k``
    candidates, duplicates kept: ``(indices, distances)`` sorted by (1 - cos, index)); their first ``k`` columns are
    exactly the k-NN graph, so no second search is needed.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> label_variation(X, np.array([0, 0, 1, 1]), k=1)
    0.0
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise InputShapeError(f"y must have one label per row ({len(X)}); got shape {y.shape}")
    return cross_class_fraction(label_variation_graph(X, k, neighbors=neighbors), y)


def label_variation_graph(X, k: int = 10, *, neighbors=None) -> sp.csr_array:
    """The graph :func:`label_variation` measures: the max-symmetrised k-NN graph weighted by cosine similarity
    (clipped at 0); ``neighbors`` as there.

    Examples
    --------
    >>> A = label_variation_graph(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), k=1)
    >>> A.shape, A.nnz
    ((4, 4), 4)
    """
    from .._validate import as_points, check_k
    from ..engine.graph import rows_to_csr, symmetrize
    from ..engine.neighbors import knn

    X = as_points(X)
    k = check_k(k, len(X))
    if neighbors is None:
        nb = knn(X, k, metric="cosine", duplicates="keep", progress=False)
        indices, distances = nb.indices, nb.distances
    else:
        indices, distances = neighbors
        if indices.shape[0] != len(X) or indices.shape[1] < k:
            raise InputShapeError(f"neighbors must hold at least k={k} candidates for each of the {len(X)} rows; "
                                  f"got {indices.shape}")
        indices, distances = indices[:, :k], distances[:, :k]
    return symmetrize(rows_to_csr(indices, np.clip(1.0 - distances, 0.0, None)), "max")


def label_propagation(A, y: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic label propagation (Zhu et al. 2003) on a graph: unlabelled nodes have ``y = -1``.

    Solves ``L_UU F_U = W_UL Y_L``; returns ``(labels, proba)`` for every node (labelled nodes keep theirs).
    Unlabelled connected components that contain no labelled node cannot be reached: they get uniform
    probabilities and label -1.

    Examples
    --------
    >>> A = sp.csr_array(np.array([[0, 1.0, 0, 0], [1.0, 0, 1.0, 0], [0, 1.0, 0, 1.0], [0, 0, 1.0, 0]]))
    >>> lab, p = label_propagation(A, np.array([0, -1, -1, 1]))
    >>> lab.tolist(), p[1].round(3).tolist()
    ([0, 0, 1, 1], [0.667, 0.333])
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import spsolve

    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise InvalidParameterError("y must be 1-D integer labels with -1 for unlabelled nodes")
    A = _check_adjacency(A, len(y))
    labelled = y >= 0
    if not labelled.any():
        raise InvalidParameterError("no labelled node: give at least one label per class")
    C = int(y.max()) + 1 if n_classes is None else n_classes
    proba = np.zeros((len(y), C))
    proba[labelled, y[labelled]] = 1.0
    _, comp = connected_components(A, directed=False)
    reachable = np.isin(comp, np.unique(comp[labelled]))
    U = np.flatnonzero(~labelled & reachable)
    if U.size:
        L = (sp.diags_array(np.asarray(A.sum(1)).ravel()) - A).tocsr()
        L_UU = L[U][:, U].tocsc()
        rhs = -(L[U][:, np.flatnonzero(labelled)] @ proba[labelled])
        proba[U] = np.asarray(spsolve(L_UU, rhs)).reshape(len(U), C)
    lost = ~labelled & ~reachable
    proba[lost] = 1.0 / C
    labels = np.where(labelled, y, proba.argmax(1))
    labels[lost] = -1
    return labels, proba
