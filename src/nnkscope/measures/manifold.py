"""Manifold graph metrics (MGMs) per point from an NNK neighbourhood (research notes papers.md section 8).

* NNK degree ``k_NNK(i)``: size of the NNK support (grows with the local intrinsic dimension);
* polytope diameter: largest distance within ``{i} ∪ N(i)`` (on unit-normalised features when ``normalize``,
  hence in [0, 2]);
* local intrinsic dimension: theta-weighted PCA of the NNK neighbours centred at the point,
  ``C_i = sum_j theta_j (z_j - z_i)(z_j - z_i)' / sum_j theta_j``; the smallest m whose top-m eigenvalues hold
  ``energy`` (default 0.9) of the trace;
* tangent basis and curvature proxy: tangents of fixed dimension m from PCA of the k *candidates* (the NNK support
  alone, ~2 ID points, is too small for a stable tangent; research notes 17.8), and
  ``kappa(i) = mean_{j in N(i)} (1 - |U_i' U_j|_F^2 / m)``, the mean squared sine of the principal angles between
  neighbouring tangent spaces (0 on flat manifolds).  It is scale-free: compare manifolds at fixed sampling
  density.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .._runtime import thread_limit
from .._validate import as_points, check_positive
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["polytope_diameter", "local_dimension", "local_geometry", "tangent_spaces", "curvature",
           "curvature_from_tangents"]


def _check(Z, candidates, theta):
    Z = as_points(Z, "X")
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    if candidates.shape != theta.shape or candidates.ndim != 2 or len(candidates) > len(Z):
        raise InputShapeError(f"candidates {candidates.shape} and theta {theta.shape} must be (N, k) for N <= "
                              f"{len(Z)} points")
    return Z, candidates, theta


def _inv_norms(Z, normalize: bool) -> np.ndarray:
    if not normalize:
        return np.ones(len(Z))
    n = np.sqrt(np.einsum("ij,ij->i", Z, Z, dtype=np.float64))
    if (n == 0).any():
        raise InvalidParameterError("normalize=True needs non-zero rows; drop all-zero rows or pass normalize=False")
    return 1.0 / n


@nb.njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _gram(B, p):
    """``B[:p] @ B[:p].T`` by explicit loops: a BLAS call per point from inside a parallel loop costs more than the
    few thousand multiply-adds of these small Gram matrices (and can oversubscribe threads)."""
    d = B.shape[1]
    G = np.empty((p, p))
    for a in range(p):
        for b in range(a + 1):
            s = 0.0
            for t in range(d):
                s += B[a, t] * B[b, t]
            G[a, b] = s
            G[b, a] = s
    return G


@nb.njit(cache=True)
def _max_sq_distance(P, p):
    """Largest squared distance among rows ``0 .. p - 1`` of ``P``, summed in feature order (no fast-math: the
    diameter is the plain float64 value)."""
    d = P.shape[1]
    best = 0.0
    for a in range(p):
        for b in range(a):
            s = 0.0
            for t in range(d):
                diff = P[a, t] - P[b, t]
                s += diff * diff
            if s > best:
                best = s
    return best


@nb.njit(parallel=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def _local_geometry(Z, inv_dim, inv_diam, shared, candidates, theta, energy, out_id, out_ratio, out_diam):
    """Each point's NNK support gathered once: its polytope diameter (rows scaled by ``inv_diam``) and its local
    dimension (theta-weighted PCA of the support centred at the point, rows scaled by ``inv_dim``; ``shared``:
    the two scalings are the same, so the gathered rows serve both)."""
    n, k = candidates.shape
    d = Z.shape[1]
    for i in nb.prange(n):
        members = np.empty(k + 1, np.int64)
        w = np.empty(k)
        members[0] = i
        p = 0
        total = 0.0
        for a in range(k):
            if theta[i, a] > 0:
                members[p + 1] = candidates[i, a]
                w[p] = theta[i, a]
                total += theta[i, a]
                p += 1
        P = np.empty((p + 1, d))
        for a in range(p + 1):
            for t in range(d):
                P[a, t] = Z[members[a], t] * inv_diam[members[a]]
        out_diam[i] = np.sqrt(_max_sq_distance(P, p + 1))
        if p == 0:
            out_id[i] = 0
            out_ratio[i] = 0.0
            continue
        B = np.empty((p, d))
        if shared:
            for a in range(p):
                sw = np.sqrt(w[a] / total)
                for t in range(d):
                    B[a, t] = sw * (P[a + 1, t] - P[0, t])
        else:
            for a in range(p):
                sw = np.sqrt(w[a] / total)
                j = members[a + 1]
                for t in range(d):
                    B[a, t] = sw * (Z[j, t] * inv_dim[j] - Z[i, t] * inv_dim[i])
        G = _gram(B, p)  # same non-zero spectrum as the d x d weighted covariance
        lam = np.linalg.eigvalsh(G)[::-1]
        tr = 0.0
        for a in range(p):
            tr += max(lam[a], 0.0)
        if tr <= 0:
            out_id[i] = 0
            out_ratio[i] = 0.0
            continue
        acc = 0.0
        m = 0
        while m < p:
            acc += max(lam[m], 0.0)
            m += 1
            if acc >= energy * tr:
                break
        out_id[i] = m
        out_ratio[i] = max(lam[0], 0.0) / tr


def local_geometry(X, candidates, theta, *, energy: float = 0.9, normalize: bool = False,
                   diameter_normalize: bool | None = None,
                   n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`local_dimension` and :func:`polytope_diameter` from one gather of each point's NNK support.

    Returns ``(ids, first_ratio, diameters)``; ``diameter_normalize`` (default: ``normalize``) is the
    diameter's own ``normalize``.

    Examples
    --------
    >>> X = np.array([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0]])
    >>> ids, _, diam = local_geometry(X, np.array([[1, 2, 3]]), np.array([[1.0, 1.0, 0.0]]))
    >>> ids.tolist(), diam.tolist()
    ([1], [2.0])
    """
    Z, candidates, theta = _check(X, candidates, theta)
    if not 0 < check_positive(energy, "energy") <= 1:
        raise InvalidParameterError(f"energy must be in (0, 1]; got {energy}")
    inv = _inv_norms(Z, normalize)
    dnorm = normalize if diameter_normalize is None else bool(diameter_normalize)
    inv_diam = inv if dnorm == normalize else _inv_norms(Z, dnorm)
    n = len(candidates)
    ids, ratio, diam = np.empty(n, np.int64), np.empty(n), np.empty(n)
    with thread_limit(n_jobs):
        _local_geometry(Z, inv, inv_diam, dnorm == normalize, candidates, theta, float(energy), ids, ratio, diam)
    return ids, ratio, diam


def polytope_diameter(X, candidates, theta, *, normalize: bool = True, n_jobs: int | None = None) -> np.ndarray:
    """Max pairwise distance within each point's NNK polytope ``{i} ∪ N(i)`` (0 for a point with no neighbour).

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> polytope_diameter(X, np.array([[1, 2], [0, 2], [0, 1]]), np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    array([2.        , 1.41421356, 0.        ])
    """
    return local_geometry(X, candidates, theta, normalize=normalize, n_jobs=n_jobs)[2]


def local_dimension(X, candidates, theta, *, energy: float = 0.9, normalize: bool = False,
                    n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local intrinsic dimension from theta-weighted PCA of each point's NNK neighbours.

    Returns ``(ids, first_ratio)``: the dimension (0 without neighbours) and the share of variance on the first
    principal direction.

    Examples
    --------
    >>> X = np.array([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0]])
    >>> ids, _ = local_dimension(X, np.array([[1, 2, 3]]), np.array([[1.0, 1.0, 0.0]]))
    >>> ids.tolist()
    [1]
    """
    ids, ratio, _ = local_geometry(X, candidates, theta, energy=energy, normalize=normalize, n_jobs=n_jobs)
    return ids, ratio


@nb.njit(parallel=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def _tangents(Z, inv, candidates, m, out):
    n, k = candidates.shape
    d = Z.shape[1]
    for i in nb.prange(n):
        B = np.empty((k + 1, d))
        mean = np.zeros(d)
        for a in range(k + 1):
            row = np.int64(i)  # prange index and int64 would unify to float in a conditional expression
            if a > 0:
                row = candidates[i, a - 1]
            for t in range(d):
                B[a, t] = Z[row, t] * inv[row]
                mean[t] += B[a, t]
        for t in range(d):
            mean[t] /= k + 1
        for a in range(k + 1):
            for t in range(d):
                B[a, t] -= mean[t]
        lam, U = np.linalg.eigh(_gram(B, k + 1))
        coef = np.empty((k + 1, m))
        for c in range(m):
            col = k - c  # eigh sorts ascending
            s = 1.0 / np.sqrt(max(lam[col], 1e-300))
            for a in range(k + 1):
                coef[a, c] = U[a, col] * s
        for c in range(m):
            for t in range(d):
                out[i, c, t] = 0.0
        for a in range(k + 1):  # each row of B read once, into all m bases (row-major: a column sweep is 5x slower)
            for c in range(m):
                u = coef[a, c]
                for t in range(d):
                    out[i, c, t] += B[a, t] * u


def tangent_spaces(X, candidates, dim: int, *, normalize: bool = False, n_jobs: int | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """(N, dim, d) orthonormal tangent bases from PCA of each point with its k candidates (orientation).

    The result takes ``8 N dim d`` bytes (float64, kept so that flat manifolds give curvature 0 to 1e-12);
    for 10^6 points in 128-D at dim 3 that is 3 GB: compute on a subset or in a lower dimension there.
    ``out``: a C-contiguous float64 array of that shape to write the bases into (returned).

    Examples
    --------
    >>> X = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]])   # points on the x axis: the tangent is (+-1, 0)
    >>> U = tangent_spaces(X, np.array([[1, 2], [0, 2], [1, 3], [1, 2]]), 1)
    >>> np.abs(U[:, 0]).round(12).tolist()
    [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    """
    Z = as_points(X, "X")
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    if not isinstance(dim, (int, np.integer)) or not 1 <= dim <= min(candidates.shape[1], Z.shape[1]):
        raise InvalidParameterError(f"dim must be an integer in [1, min(k, d)]; got {dim!r}")
    shape = (len(candidates), int(dim), Z.shape[1])
    if out is None:
        out = np.empty(shape)
    elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float64
          or not out.flags.c_contiguous or not out.flags.writeable):
        got = (f"{out.dtype} {out.shape}, C-contiguous={out.flags.c_contiguous}, writeable={out.flags.writeable}"
               if isinstance(out, np.ndarray) else type(out).__name__)
        raise InputShapeError(f"out must be a writeable C-contiguous float64 array of shape {shape}; got {got}. "
                              "Pass np.empty(shape) or leave out=None")
    with thread_limit(n_jobs):
        _tangents(Z, _inv_norms(Z, normalize), candidates, int(dim), out)
    return out


@nb.njit(parallel=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def _curv(U, candidates, theta, out):
    n, k = candidates.shape
    m = U.shape[1]
    for i in nb.prange(n):
        total = 0.0
        cnt = 0
        for a in range(k):
            if theta[i, a] <= 0:
                continue
            j = candidates[i, a]
            s = 0.0  # ||U_i U_j'||_F^2 by explicit loops (see _gram)
            for x in range(m):
                for y in range(m):
                    dot = 0.0
                    for t in range(U.shape[2]):
                        dot += U[i, x, t] * U[j, y, t]
                    s += dot * dot
            total += 1.0 - s / m
            cnt += 1
        out[i] = total / cnt if cnt else 0.0


def curvature(X, candidates, theta, *, dim: int, normalize: bool = False, tangents: np.ndarray | None = None,
              n_jobs: int | None = None) -> np.ndarray:
    """Curvature proxy: mean squared sine of the principal angles between i's tangent space and those of its NNK
    neighbours (tangents of dimension ``dim`` from the k candidates).

    Examples
    --------
    >>> t = np.linspace(0, 1, 30); X = np.c_[t, 2 * t, np.zeros(30)]   # a straight line
    >>> from nnkscope import nnk_graph
    >>> G = nnk_graph(X, 5)
    >>> bool(curvature(X, G.candidates, G.theta, dim=1).max() < 1e-12)
    True
    """
    Z, candidates, theta = _check(X, candidates, theta)
    U = tangent_spaces(Z, candidates, dim, normalize=normalize, n_jobs=n_jobs) if tangents is None else tangents
    return curvature_from_tangents(U, candidates, theta, n_jobs=n_jobs)


def curvature_from_tangents(U, candidates, theta, *, n_jobs: int | None = None) -> np.ndarray:
    """The curvature proxy of each row of ``candidates`` from tangent bases ``U`` (rows of ``U`` indexed like
    the candidates; the first ``len(candidates)`` rows are the queries' own)."""
    out = np.empty(len(candidates))
    with thread_limit(n_jobs):
        _curv(np.ascontiguousarray(U), np.ascontiguousarray(candidates, dtype=np.int64),
              np.ascontiguousarray(theta, dtype=np.float64), out)
    return out
