"""A 2-D (or n-D) picture of an NNK graph: Laplacian eigenmaps of its symmetric adjacency.

Belkin & Niyogi's eigenmaps with the normalised Laplacian ``L = I - D^-1/2 A D^-1/2``: the eigenvectors ``v`` of
the smallest eigenvalues after the trivial one, returned as ``D^-1/2 v`` (the random-walk / generalised
eigenvectors ``L_rw y = lambda y``), each with the sign that makes its largest-magnitude entry positive.  For a
connected graph this is exactly scikit-learn's ``SpectralEmbedding(affinity="precomputed")``.  The diagonal of the
adjacency (self-loops) is ignored.  Eigenvectors come from ``scipy.sparse.linalg.eigsh`` in shift-invert mode
(``sigma = -1e-5``, tolerance 0, start vector seeded by ``seed``), or from a dense ``eigh`` for components of up
to 1000 nodes; a repeated eigenvalue (a ring's cos/sin pair) has no unique basis, and ``seed`` fixes which one.

Disconnected graphs have one zero eigenvalue per component, whose eigenvectors only say which component a node is
in (every component collapses to a point).  Rule used instead: each connected component is embedded on its own
(its own normalised Laplacian; a component of ``s`` nodes has ``s - 1`` coordinates, the rest are 0), every
coordinate is scaled to ``max |y| = 1`` within the component, and the components are placed side by side along the
first coordinate, largest first (ties: lowest node index), centres 3 apart.  Isolated nodes (no edge) all sit at
the next centre, ``(3 c, 0, ...)`` after ``c`` components.  A graph that is connected apart from isolated nodes
follows the same rule.

:func:`umap_embedding` is the alternative picture: UMAP (McInnes et al. 2018, the optional ``umap-learn``
package) on a kNN search already done (e.g. the NNK graph's own candidates), so it searches nothing itself.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh

from ..engine.graph import NNKGraph
from ..errors import InputShapeError, InvalidParameterError, TooFewPointsError

__all__ = ["spectral_embedding", "umap_embedding"]

DENSE_MAX = 1000  # components up to this size use a dense eigendecomposition (exact, O(s^3))
SPACING = 3.0  # distance between component centres (each spans [-1, 1])


def _adjacency(graph_or_adjacency, rule) -> sp.csr_array:
    if isinstance(graph_or_adjacency, NNKGraph):
        A = graph_or_adjacency.adjacency(rule)
    else:
        if rule is not None:
            raise InvalidParameterError("rule applies to an NNKGraph; an adjacency matrix is used as it is")
        A = graph_or_adjacency
        if sp.issparse(A):
            A = sp.csr_array(A, dtype=np.float64)
        else:
            arr = np.asarray(A)
            if arr.dtype.kind not in "biuf":
                raise InvalidParameterError(f"adjacency has dtype {arr.dtype}; pass real edge weights")
            A = sp.csr_array(arr.astype(np.float64))
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise InputShapeError(f"the adjacency must be a square (N, N) matrix; got shape {A.shape}")
    A = sp.csr_array(A, dtype=np.float64, copy=True)
    if A.nnz:
        if not np.isfinite(A.data).all():
            raise InvalidParameterError("the adjacency holds NaN/inf weights; fix the graph first")
        if A.data.min() < 0:
            raise InvalidParameterError("the adjacency holds negative weights; eigenmaps need non-negative "
                                        "affinities (e.g. NNKGraph.adjacency())")
        asym = abs(A - A.T).max() if A.nnz else 0.0
        if asym > 1e-12 * A.data.max():
            raise InvalidParameterError(f"the adjacency is not symmetric (max |A - A'| = {asym:.3g}); symmetrise "
                                        "it first, e.g. nnkscope.symmetrize(W, 'max')")
    A.setdiag(0.0)
    A.eliminate_zeros()
    return sp.csr_array((A + A.T) * 0.5)  # exact symmetry for eigsh (removes rounding-level asymmetry)


def _eigenmap(A: sp.csr_array, n_components: int, seed: int) -> np.ndarray:
    """(s, n_components) eigenmap of one connected component (missing coordinates 0), signs fixed."""
    s = A.shape[0]
    deg = np.asarray(A.sum(axis=1)).ravel()
    inv_sqrt = 1.0 / np.sqrt(deg)
    L = sp.eye_array(s, format="csr") - sp.diags_array(inv_sqrt) @ A @ sp.diags_array(inv_sqrt)
    m = min(n_components + 1, s)
    if s <= DENSE_MAX or m >= s - 1:
        vals, vecs = np.linalg.eigh(L.toarray())
    else:
        v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, s)
        vals, vecs = eigsh(sp.csc_array(L), k=m, sigma=-1e-5, which="LM", tol=0, v0=v0)
    order = np.argsort(vals, kind="stable")[1:m]  # drop the trivial eigenvector D^1/2 1 (eigenvalue 0)
    Y = np.zeros((s, n_components))
    Y[:, : order.size] = vecs[:, order] * inv_sqrt[:, None]
    # sign: the largest-magnitude entry of each coordinate is positive (scikit-learn's rule)
    signs = np.sign(Y[np.argmax(np.abs(Y), axis=0), np.arange(n_components)])
    return Y * np.where(signs == 0, 1.0, signs)


def spectral_embedding(graph_or_adjacency, n_components: int = 2, *, seed: int = 0,
                       rule: str | None = None) -> np.ndarray:
    """Laplacian-eigenmaps coordinates of the nodes of an NNK graph (or of a symmetric adjacency matrix).

    Parameters
    ----------
    graph_or_adjacency : an :class:`~nnkscope.engine.graph.NNKGraph` (its ``adjacency(rule)`` is embedded) or a
        symmetric non-negative (N, N) adjacency, sparse or dense.
    n_components : coordinates per node.
    seed : seed of the eigensolver's start vector.
    rule : symmetrisation rule for an NNKGraph (default: the graph's own).

    Returns
    -------
    (N, n_components) float64 array; see the module notes for disconnected graphs and isolated nodes.

    Examples
    --------
    >>> n = 40
    >>> ring = sp.diags_array([np.ones(n - 1), np.ones(n - 1)], offsets=[1, -1]).tolil()
    >>> ring[0, n - 1] = ring[n - 1, 0] = 1.0
    >>> Y = spectral_embedding(ring)
    >>> r = np.hypot(Y[:, 0], Y[:, 1])
    >>> bool(np.allclose(r, r[0]))  # a ring maps to a circle
    True
    """
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise InvalidParameterError(f"n_components must be a positive integer; got {n_components!r}")
    A = _adjacency(graph_or_adjacency, rule)
    n = A.shape[0]
    if n < n_components + 1:
        raise TooFewPointsError(f"{n_components} coordinates need at least {n_components + 1} nodes; got {n}")
    isolated = np.diff(A.indptr) == 0
    n_comp, labels = connected_components(A, directed=False)
    if n_comp == 1:
        return _eigenmap(A, n_components, seed)
    labels = np.where(isolated, -1, labels)
    comps = [np.flatnonzero(labels == c) for c in np.unique(labels[labels >= 0])]
    comps.sort(key=lambda idx: (-idx.size, idx[0]))
    Y = np.zeros((n, n_components))
    for j, idx in enumerate(comps):
        sub = _eigenmap(sp.csr_array(A[idx][:, idx]), n_components, seed)
        scale = np.abs(sub).max(axis=0)
        sub = sub / np.where(scale > 0, scale, 1.0)
        sub[:, 0] += SPACING * j
        Y[idx] = sub
    Y[isolated, 0] = SPACING * len(comps)
    return Y


def umap_embedding(indices: np.ndarray, distances: np.ndarray, n_components: int = 2, *, seed: int = 0,
                   min_dist: float = 0.1) -> np.ndarray:
    """UMAP coordinates of points from their precomputed k nearest neighbours (self excluded).

    Parameters
    ----------
    indices, distances : (N, k) neighbour indices (self excluded, nearest first) and their distances, e.g. an NNK
        graph's ``candidates`` and the chord ``sqrt(2 (1 - cos))`` of its cosine distances.  UMAP's
        ``n_neighbors`` is ``k + 1`` (itself included, as UMAP counts).
    n_components : output dimension.
    seed : UMAP's ``random_state``: the layout is reproducible (UMAP then runs single-threaded).
    min_dist : UMAP's ``min_dist``.

    Returns
    -------
    (N, n_components) float64 array.

    Examples
    --------
    >>> from nnkscope.engine.neighbors import knn
    >>> X = np.random.default_rng(0).normal(size=(300, 5)); nb = knn(X, 10)
    >>> umap_embedding(nb.indices, nb.distances).shape  # doctest: +SKIP
    (300, 2)
    """
    from .._runtime import require

    umap = require("umap", "the UMAP view (view: umap)")
    idx = np.asarray(indices, dtype=np.int64)
    dist = np.asarray(distances, dtype=np.float64)
    if idx.ndim != 2 or idx.shape != dist.shape:
        raise InputShapeError(f"indices and distances must be (N, k) arrays of the same shape; got {idx.shape} and "
                              f"{dist.shape}")
    n, k = idx.shape
    if n < 4 or k < 1:
        raise TooFewPointsError(f"UMAP needs at least 4 points and 1 neighbour each; got N={n}, k={k}")
    # UMAP counts each point as its own nearest neighbour, at distance 0
    idx = np.hstack([np.arange(n)[:, None], idx])
    dist = np.hstack([np.zeros((n, 1)), dist])
    import warnings

    with warnings.catch_warnings():  # no search index is passed, so UMAP warns that transform() is unavailable
        warnings.simplefilter("ignore")
        model = umap.UMAP(n_neighbors=k + 1, n_components=n_components, min_dist=min_dist, random_state=seed,
                          precomputed_knn=(idx, dist, None), init="spectral", n_jobs=1)
        return np.asarray(model.fit_transform(np.zeros((n, 1))), dtype=np.float64)
