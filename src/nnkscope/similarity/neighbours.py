"""Neighbourhood measures: mutual k-NN, CKNNA (Huh et al. 2024) and the NNK-graph overlaps.

* **mutual_knn** (Huh et al. 2024, "The Platonic Representation Hypothesis"): the mean over points of
  ``|N_A(i) & N_B(i)| / k`` where ``N(i)`` are the ``k`` nearest neighbours of point ``i`` (itself excluded) by cosine
  similarity -- the paper L2-normalises features and ranks by inner product.  Ties go to the lower index.
* **cknna** (same paper): centred kernel nearest-neighbour alignment.  With the cosine kernels ``K = A^ A^'``,
  ``L = B^ B^'`` of the L2-normalised rows, ``alpha_ij = 1`` when ``j`` is among ``i``'s k nearest neighbours in
  *both* representations, and ``HSIC_1`` the unbiased estimator of Song et al. (2012) (``tr(K~ L~)`` read as
  ``sum_ij K~_ij L~_ji`` since masked kernels are not symmetric):
  ``CKNNA = HSIC_1(alpha o K, alpha o L) / sqrt(HSIC_1(alpha_A o K, alpha_A o K) HSIC_1(alpha_B o L, alpha_B o L))``
  with ``alpha_A``, ``alpha_B`` each side's own k-NN masks -- the definition of the authors' reference code.  The
  masks are sparse (k per row), so memory is ``O(N k)`` and the k-NN search is nnkscope's exact one.  It is 1 on
  ``(X, X)`` but, the three masks being different, not bounded by 1: with k a large fraction of N values above 1
  occur (2.6 at N = 8, k = 6 on random data), so its declared range is unbounded.
* **nnk_jaccard** / **nnk_edge_agreement**: the NNK graph of each representation
  (:func:`nnkscope.engine.pipeline.nnk_graph`, cosine kernel, ``k = 25``, duplicates kept: the settings of
  :func:`nnkscope.studies.comparison.compare_features`), then the mean per-node Jaccard overlap of the NNK
  neighbour sets (:func:`~nnkscope.measures.compare.neighbourhood_jaccard`) or the weighted edge agreement
  ``sum min(A, B) / sum max(A, B)`` of the symmetrised adjacencies (:func:`~nnkscope.measures.compare.graph_agreement`).
  Both also accept prebuilt :class:`~nnkscope.engine.graph.NNKGraph` objects.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validate import check_k, check_no_zero_rows
from ..engine.graph import NNKGraph
from ..engine.neighbors import knn
from ..engine.pipeline import nnk_graph
from ..errors import InvalidParameterError
from ..measures.compare import graph_agreement, neighbourhood_jaccard
from ._registry import pair, points

__all__ = ["mutual_knn", "cknna", "nnk_jaccard", "nnk_edge_agreement", "nnk_graph_of"]


def _cosine_knn(X: np.ndarray, k: int) -> np.ndarray:
    return knn(X, k, metric="cosine", duplicates="keep", progress=False).indices


def mutual_knn(A, B, *, k: int = 10) -> float:
    """Mutual k-NN alignment: mean fraction of each point's k cosine neighbours shared by both representations.

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(100, 8)); Q, _ = np.linalg.qr(r.normal(size=(8, 8)))
    >>> mutual_knn(X, 4 * X @ Q), round(mutual_knn(X, r.normal(size=(100, 8))), 2)
    (1.0, 0.1)
    """
    A, B = pair(A, B)
    k = check_k(k, len(A), extra=1)
    both = np.sort(np.concatenate([_cosine_knn(A, k), _cosine_knn(B, k)], axis=1), axis=1)
    shared = np.count_nonzero(np.diff(both, axis=1) == 0, axis=1)  # each side's neighbours are distinct
    return float(shared.mean() / k)


def _masked_kernel(mask: sp.csr_array, U: np.ndarray, rows_per_chunk: int = 65536) -> sp.csr_array:
    """``mask o (U U')`` as a sparse matrix, its entries computed only where the mask is set (in chunks)."""
    r, c = mask.nonzero()
    vals = np.empty(len(r))
    for lo in range(0, len(r), rows_per_chunk):
        hi = lo + rows_per_chunk
        vals[lo:hi] = np.einsum("ij,ij->i", U[r[lo:hi]], U[c[lo:hi]])
    return sp.csr_array((vals, (r, c)), shape=mask.shape)


def _hsic_unbiased(K: sp.csr_array, L: sp.csr_array) -> float:
    """Song et al.'s unbiased HSIC of two sparse kernels with zero diagonals (not necessarily symmetric)."""
    n = K.shape[0]
    t1 = K.multiply(L.T).sum()  # tr(K L) = sum_ij K_ij L_ji
    t2 = K.sum() * L.sum() / ((n - 1) * (n - 2))
    t3 = np.asarray(K.sum(axis=0)).ravel() @ np.asarray(L.sum(axis=1)).ravel()  # 1' K L 1
    return float((t1 + t2 - 2.0 * t3 / (n - 2)) / (n * (n - 3)))


def cknna(A, B, *, k: int = 10) -> float:
    """Centred kernel nearest-neighbour alignment (Huh et al. 2024) with cosine kernels and k-NN masks.

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(200, 6)); Q, _ = np.linalg.qr(r.normal(size=(6, 6)))
    >>> round(cknna(X, 3 * X @ Q), 12)
    1.0
    """
    A, B = pair(A, B, min_rows=4)
    k = check_k(k, len(A), extra=1)
    Ua = A / check_no_zero_rows(A, "A")[:, None]
    Ub = B / check_no_zero_rows(B, "B")[:, None]
    n = len(A)
    rows = np.repeat(np.arange(n), k)

    def mask_of(idx):
        return sp.csr_array((np.ones(n * k), (rows, idx.ravel())), shape=(n, n))

    MA, MB = mask_of(_cosine_knn(A, k)), mask_of(_cosine_knn(B, k))
    both = MA.multiply(MB).tocsr()
    kl = _hsic_unbiased(_masked_kernel(both, Ua), _masked_kernel(both, Ub))
    kk = _hsic_unbiased(_masked_kernel(MA, Ua), _masked_kernel(MA, Ua))
    ll = _hsic_unbiased(_masked_kernel(MB, Ub), _masked_kernel(MB, Ub))
    if not (kk > 0 and ll > 0):
        raise InvalidParameterError("CKNNA is undefined here: a representation's neighbourhood self-alignment is not "
                                    "positive (too few points or a degenerate geometry); raise k or add points")
    return float(kl / np.sqrt(kk * ll))


def nnk_graph_of(X, *, k: int = 25, kernel: str = "cosine", **graph_options) -> NNKGraph:
    """The NNK graph the NNK measures compare (an :class:`NNKGraph` passes through)."""
    if isinstance(X, NNKGraph):
        return X
    graph_options.setdefault("duplicates", "keep")
    graph_options.setdefault("progress", False)
    return nnk_graph(points(X, "features"), k, kernel=kernel, **graph_options)


def _graphs(A, B, k, kernel, graph_options):
    if not isinstance(A, NNKGraph) and not isinstance(B, NNKGraph):
        A, B = pair(A, B)
    return (nnk_graph_of(A, k=k, kernel=kernel, **graph_options),
            nnk_graph_of(B, k=k, kernel=kernel, **graph_options))


def nnk_jaccard(A, B, *, k: int = 25, kernel: str = "cosine", **graph_options) -> float:
    """Mean per-node Jaccard overlap of the NNK neighbour sets of two representations' NNK graphs.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(120, 4))
    >>> nnk_jaccard(X, np.c_[5 * X, np.zeros((120, 2))], k=10)   # same geometry, wider and scaled
    1.0
    """
    Ga, Gb = _graphs(A, B, k, kernel, graph_options)
    return float(neighbourhood_jaccard(Ga, Gb).mean())


def nnk_edge_agreement(A, B, *, k: int = 25, kernel: str = "cosine", **graph_options) -> float:
    """Weighted edge agreement ``sum min(W_a, W_b) / sum max(W_a, W_b)`` of the two max-symmetrised NNK graphs.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(120, 4))
    >>> round(nnk_edge_agreement(X, 2 * X, k=10), 12)
    1.0
    """
    Ga, Gb = _graphs(A, B, k, kernel, graph_options)
    return float(graph_agreement(Ga, Gb))
