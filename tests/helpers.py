"""Independent reference implementations used only by the tests.

Each is written directly from the mathematics with dense numpy / scipy, sharing no code with nnkscope, so that
agreement between the two is evidence, not tautology.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.optimize import nnls


def brute_knn(X: np.ndarray, k: int, metric: str = "euclidean"):
    """Exact kNN by a full distance matrix, ties to the lower index, self excluded."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "euclidean":
        D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    else:
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        D = np.maximum(0.0, 1.0 - Xn @ Xn.T)
    n = len(X)
    np.fill_diagonal(D, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), D), axis=1)[:, :k]
    return order, np.take_along_axis(D, order, axis=1)


def dense_kernel(X: np.ndarray, kernel: str, sigma: float | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if kernel == "gaussian":
        D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        return np.exp(-D2 / (2 * sigma**2))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    return np.clip(0.5 + 0.5 * Xn @ Xn.T, 0.0, 1.0)


def nnls_oracle(K: np.ndarray, g: np.ndarray, tau: float = 0.0) -> np.ndarray:
    """argmin_{t>=0} 1/2 t'Kt - g't via K = R'R and scipy's NNLS on (R, R^{-T} g); g <= tau excluded."""
    theta = np.zeros_like(g)
    a = np.flatnonzero(g > tau)
    if a.size == 0:
        return theta
    R = np.linalg.cholesky(K[np.ix_(a, a)]).T
    b = sla.solve_triangular(R, g[a], trans="T")
    theta[a] = nnls(R, b, maxiter=1000)[0]
    return theta


def reference_heuristic(K: np.ndarray, g: np.ndarray, tau: float) -> np.ndarray:
    """The NNK authors' solver as specified in words (nnk_reference.md section 1.2), re-implemented here."""
    k = len(g)
    dup = g > 1 - tau
    if dup.any():
        return np.where(dup, g, 0.0)
    P = np.flatnonzero(g > tau)
    theta = np.zeros(k)
    for _ in range(50 * k):
        theta = np.zeros(k)
        if P.size:
            c = sla.cho_factor(K[np.ix_(P, P)], lower=False)
            theta[P] = sla.cho_solve(c, g[P])
        small = theta < tau
        viol = np.abs(theta[small]).max() if small.any() else 0.0
        P = P[theta[P] > tau]
        if viol <= tau:
            break
    theta[theta < tau] = 0.0
    return theta


def objective(K, g, theta) -> float:
    return 0.5 * theta @ K @ theta - g @ theta


def interpolation_error(K, g, theta) -> float:
    return 1.0 - 2.0 * g @ theta + theta @ K @ theta


def dense_symmetrize(W: np.ndarray, rule: str, C: np.ndarray | None = None, e: np.ndarray | None = None):
    """Dense symmetrisation rules; C[i, j] = 1 iff j is a candidate of i."""
    if rule == "max":
        return np.maximum(W, W.T)
    if rule == "min":
        return np.minimum(W, W.T)
    if rule == "mean":
        return (W + W.T) / 2
    keep = np.zeros_like(W, dtype=bool)
    n = len(W)
    for i in range(n):
        for j in range(n):
            keep[i, j] = W[i, j] > 0 and C[j, i] == 1 and e[i] < e[j]
    D = np.where(keep, W, 0.0)
    return np.maximum(D, D.T)


def swiss_roll_2d(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    return np.column_stack([t * np.cos(t), t * np.sin(t)]) + 0.05 * rng.normal(size=(n, 2))

def clustered(n: int, d: int, seed: int, n_clusters: int = 10) -> np.ndarray:
    """Embedding-like data: Gaussian clusters on a low-dimensional latent space, mapped to d dimensions."""
    r = np.random.default_rng(seed)
    latent = min(d, 8)
    centres = r.normal(scale=3.0, size=(n_clusters, latent))
    z = centres[r.integers(n_clusters, size=n)] + r.normal(size=(n, latent))
    return (z @ r.normal(size=(latent, d)) + 0.1 * r.normal(size=(n, d))).astype(np.float32)
