"""Unit-diagonal kernels and the per-node local problems (K, g) built from them.

Two kernels, both with kappa(x, x) = 1 so that the NNK interpolation error lies in [0, 1]:

* Gaussian ``exp(-||x - y||^2 / (2 sigma^2))``, sigma explicit or by the rule "mean distance to the k-th
  neighbour (self excluded) / 3" (the rule the NNK authors intended, see research notes section 2.3);
* normalised cosine ``1/2 + 1/2 cos(x, y)``.

The local problem of node ``i`` with candidate indices ``S`` is ``K = kappa(X[S], X[S])`` (k x k) and
``g = kappa(X[S], X[i])``.  It is built in float64 from the rows of ``X`` directly (no N x k x d gather is ever
materialised), with squared distances summed as ``(a - b)^2`` so that identical points get distance exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .._validate import as_points, check_choice, check_no_zero_rows, check_positive
from ..errors import InputDTypeError, InputShapeError, InvalidParameterError

__all__ = ["Kernel", "KERNELS", "METRIC_OF_KERNEL", "make_kernel", "gaussian_kernel", "cosine_kernel",
           "sigma_from_kth_distance", "local_problems"]

KERNELS = ("gaussian", "cosine")
GAUSSIAN, COSINE = 0, 1


METRIC_OF_KERNEL = {"gaussian": "euclidean", "cosine": "cosine"}


@dataclass(frozen=True)
class Kernel:
    """A kernel: its name, its bandwidth (Gaussian), the metric its candidates are ranked by, its values.

    The one home of everything a kernel knows: ``metric`` (Gaussian -> Euclidean candidates, cosine -> cosine),
    :meth:`values` (kernel values from candidate distances, the same numbers the solver builds from the rows) and
    :meth:`resolve` (the default bandwidth rule for a Gaussian whose ``sigma`` was not given).

    Examples
    --------
    >>> Kernel("cosine").values(np.array([0.0, 1.0, 2.0])).tolist()
    [1.0, 0.5, 0.0]
    >>> Kernel("gaussian").resolve(np.array([3.0, 6.0])).sigma
    1.5
    """

    name: str
    sigma: float | None = None

    @property
    def code(self) -> int:
        return GAUSSIAN if self.name == "gaussian" else COSINE

    @property
    def metric(self) -> str:
        """The distance candidates are ranked by: "euclidean" (Gaussian) or "cosine" (``1 - cos``)."""
        return METRIC_OF_KERNEL[self.name]

    @property
    def normalize(self) -> bool:
        """Whether geometry is measured on unit rows (the cosine kernel sees directions only)."""
        return self.name == "cosine"

    @property
    def gamma(self) -> float:
        """``1 / (2 sigma^2)`` for the Gaussian, 0 for cosine (unused there)."""
        return 0.0 if self.sigma is None else 1.0 / (2.0 * self.sigma * self.sigma)

    def values(self, distances: np.ndarray) -> np.ndarray:
        """Kernel values from candidate distances (Euclidean for the Gaussian, ``1 - cos`` for cosine)."""
        if self.name == "gaussian":
            if self.sigma is None:
                raise InvalidParameterError("the Gaussian kernel's sigma is not resolved yet; call resolve() first")
            return np.exp(-(np.asarray(distances) ** 2) * self.gamma)
        return np.clip(1.0 - 0.5 * np.asarray(distances), 0.0, 1.0)  # 1/2 + 1/2 cos with distance = 1 - cos

    def resolve(self, kth_distances: np.ndarray) -> Kernel:
        """This kernel with its bandwidth set: a Gaussian without ``sigma`` takes the rule of
        :func:`sigma_from_kth_distance` on the distances to each point's k-th neighbour; others are returned as is."""
        if self.name != "gaussian" or self.sigma is not None:
            return self
        return Kernel("gaussian", sigma_from_kth_distance(kth_distances))

    def to_dict(self) -> dict:
        return {"name": self.name, "sigma": self.sigma}


def sigma_from_kth_distance(kth_distances: np.ndarray) -> float:
    """The default Gaussian bandwidth: mean Euclidean distance to the k-th neighbour (self excluded), divided by 3.

    Examples
    --------
    >>> sigma_from_kth_distance(np.array([3.0, 6.0]))
    1.5
    """
    sigma = float(np.mean(kth_distances)) / 3.0
    if not sigma > 0:
        raise InvalidParameterError(
            "the bandwidth rule gave sigma = 0: every point's k-th neighbour is an exact duplicate. "
            "Increase k, remove duplicates, or pass sigma explicitly"
        )
    return sigma


def make_kernel(kernel: str, sigma: float | None) -> Kernel:
    """Validate a kernel name and explicit sigma (``None`` = not yet resolved for the Gaussian)."""
    check_choice(kernel, "kernel", KERNELS)
    if kernel == "cosine":
        if sigma is not None:
            raise InvalidParameterError("sigma only applies to kernel='gaussian'; drop it for kernel='cosine'")
        return Kernel("cosine")
    return Kernel("gaussian", None if sigma is None else check_positive(sigma, "sigma"))


def gaussian_kernel(X: np.ndarray, Y: np.ndarray, sigma: float) -> np.ndarray:
    """Dense Gaussian kernel matrix between the rows of ``X`` and ``Y`` (small inputs only: it is len(X) x len(Y)).

    Examples
    --------
    >>> gaussian_kernel(np.zeros((1, 2)), np.array([[1.0, 0.0]]), sigma=1.0).round(4)
    array([[0.6065]])
    """
    X = as_points(X, "X").astype(np.float64)
    Y = as_points(Y, "Y").astype(np.float64)
    sigma = check_positive(sigma, "sigma")
    d2 = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma * sigma))


def cosine_kernel(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Dense normalised cosine kernel ``1/2 + 1/2 cos`` between rows of ``X`` and ``Y`` (small inputs only).

    Examples
    --------
    >>> cosine_kernel(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [-1.0, 0.0]]))
    array([[0.5, 0. ]])
    """
    X = as_points(X, "X").astype(np.float64)
    Y = as_points(Y, "Y").astype(np.float64)
    Xn = X / check_no_zero_rows(X, "X")[:, None]
    Yn = Y / check_no_zero_rows(Y, "Y")[:, None]
    return np.clip(0.5 + 0.5 * (Xn @ Yn.T), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------------------
# numba kernels: one node's local problem, written into caller-owned scratch buffers


@nb.njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _sqdist(a, b):
    s = 0.0
    for t in range(a.shape[0]):
        diff = a[t] - b[t]
        s += diff * diff
    return s


@nb.njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _dot(a, b):
    s = 0.0
    for t in range(a.shape[0]):
        s += a[t] * b[t]
    return s


@nb.njit(cache=True)
def build_local_problem(X, inv_norms, q, q_inv, cand, kind, gamma, xi, buf, K, g):
    """Fill ``K`` (k x k) and ``g`` (k) for the query vector ``q`` with candidate rows ``cand`` of ``X``.

    ``q_inv`` is the query's inverse norm (cosine only); ``xi`` and ``buf`` are scratch.
    """
    k = cand.shape[0]
    d = X.shape[1]
    if kind == GAUSSIAN:
        for t in range(d):
            xi[t] = q[t]
        for a in range(k):
            row = cand[a]
            for t in range(d):
                buf[a, t] = X[row, t]
    else:
        for t in range(d):
            xi[t] = q[t] * q_inv
        for a in range(k):
            row = cand[a]
            s = inv_norms[row]
            for t in range(d):
                buf[a, t] = X[row, t] * s
    for a in range(k):
        K[a, a] = 1.0
        if kind == GAUSSIAN:
            g[a] = np.exp(-gamma * _sqdist(xi, buf[a]))
        else:
            g[a] = min(1.0, max(0.0, 0.5 + 0.5 * _dot(xi, buf[a])))
        for b in range(a):
            if kind == GAUSSIAN:
                v = np.exp(-gamma * _sqdist(buf[a], buf[b]))
            else:
                v = min(1.0, max(0.0, 0.5 + 0.5 * _dot(buf[a], buf[b])))
            K[a, b] = v
            K[b, a] = v


@nb.njit(parallel=True, cache=True)
def _local_problems(Q, q_inv, X, inv_norms, rows, candidates, kind, gamma):
    n, k = candidates.shape
    d = X.shape[1]
    Ks = np.empty((n, k, k))
    gs = np.empty((n, k))
    for r in nb.prange(n):
        xi = np.empty(d)
        buf = np.empty((k, d))
        qi = q_inv[rows[r]] if kind == COSINE else 1.0
        build_local_problem(X, inv_norms, Q[rows[r]], qi, candidates[r], kind, gamma, xi, buf, Ks[r], gs[r])
    return Ks, gs


def inverse_norms(X: np.ndarray, kernel: Kernel) -> np.ndarray:
    """Row inverse norms for the cosine kernel (raising on zero rows); a dummy for the Gaussian."""
    if kernel.name == "cosine":
        return 1.0 / check_no_zero_rows(X)
    return np.ones(1)


def local_problems(X, candidates, kernel: str = "gaussian", sigma: float | None = None, rows=None):
    """Build the NNK local problems ``(K, g)`` for the given nodes, batched.

    Parameters
    ----------
    X : (N, d) array
    candidates : (n, k) int array, candidate indices of each node in ``rows``.
    kernel : "gaussian" or "cosine".
    sigma : Gaussian bandwidth (required for the Gaussian).
    rows : (n,) node indices, default ``arange(n)``.

    Returns
    -------
    K : (n, k, k) float64, g : (n, k) float64

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> K, g = local_problems(X, np.array([[1, 2]]), "gaussian", sigma=1.0)
    >>> K.shape, g.round(4).tolist()
    ((1, 2, 2), [[0.6065, 0.6065]])
    """
    X = as_points(X)
    candidates = np.asarray(candidates)
    if candidates.dtype.kind not in "iu":
        raise InputDTypeError(f"candidates must hold integer indices; got dtype {candidates.dtype}. "
                              "Use the indices from nnkscope.knn(...), or candidates.astype(np.int64)")
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    if candidates.ndim != 2:
        raise InputShapeError(f"candidates must be 2-D (n, k); got shape {candidates.shape}")
    rows = np.arange(len(candidates), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape != (len(candidates),):
        raise InputShapeError(f"rows must have one entry per candidate row ({len(candidates)}); got {rows.shape}")
    if candidates.size and (candidates.min() < 0 or candidates.max() >= len(X)):
        raise InputShapeError(f"candidate indices must lie in [0, {len(X)}); got range "
                              f"[{candidates.min()}, {candidates.max()}]")
    kern = make_kernel(kernel, sigma)
    if kern.name == "gaussian" and kern.sigma is None:
        raise InvalidParameterError("local_problems needs an explicit sigma for the Gaussian kernel")
    inv = inverse_norms(X, kern)
    return _local_problems(X, inv, X, inv, rows, candidates, kern.code, kern.gamma)
