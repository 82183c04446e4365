"""NNK-Means: dictionary summarisation with NNK sparse codes (Shekkizhar & Ortega, EUSIPCO 2022).

Alternates (1) coding: each point is NNK-interpolated from its ``n_nonzero`` most similar atoms (exact solver,
weights L1-normalised) and (2) a least-squares update of the atoms ``D = (W'W)^-1 W'X`` and of their soft labels
``A = (W'W)^-1 W'Y``.  Atoms no point uses are re-seeded with the points coded worst (deterministic).  Predictions
interpolate the atom labels with the codes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validate import as_points, check_k, check_labels
from ..errors import InvalidParameterError
from .interpolation import _Estimator, nnk_interpolate

__all__ = ["NNKMeans", "kmeans_plus_plus"]


def kmeans_plus_plus(X: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` k-means++ seeds (squared-distance sampling, seeded)."""
    rng = np.random.default_rng(seed)
    X64 = X.astype(np.float64)
    idx = [int(rng.integers(len(X)))]
    d2 = ((X64 - X64[idx[0]]) ** 2).sum(1)
    for _ in range(1, n):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(X), 1 / len(X))
        j = int(rng.choice(len(X), p=p))
        idx.append(j)
        d2 = np.minimum(d2, ((X64 - X64[j]) ** 2).sum(1))
    return np.array(idx)


class NNKMeans(_Estimator):
    """Dictionary learning with NNK codes.

    Parameters
    ----------
    n_components : number of atoms M. n_nonzero : atoms considered per point (the code's candidate set).
    n_iter : coding / update rounds. kernel : "cosine" (default) or "gaussian". seed : initialisation seed.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(50, 2)) + 5, rng.normal(size=(50, 2)) - 5]; y = np.repeat([0, 1], 50)
    >>> m = NNKMeans(n_components=4, n_nonzero=2, n_iter=3, kernel="gaussian").fit(X, y)
    >>> float(np.mean(m.predict(X) == y))
    1.0
    """

    def __init__(self, n_components: int = 50, n_nonzero: int = 10, n_iter: int = 10, kernel: str = "cosine",
                 sigma: float | None = None, tau: float = 1e-10, seed: int = 0, n_jobs: int | None = None):
        self.n_components, self.n_nonzero, self.n_iter, self.kernel = n_components, n_nonzero, n_iter, kernel
        self.sigma, self.tau, self.seed, self.n_jobs = sigma, tau, seed, n_jobs

    def _codes(self, X: np.ndarray):
        I = nnk_interpolate(self.atoms_, X, self.n_nonzero, kernel=self.kernel, sigma=self.sigma, tau=self.tau,
                            n_jobs=self.n_jobs, progress=False)
        W = I.theta.copy()
        total = W.sum(1)
        empty = total <= 0
        W[empty, 0] = 1.0  # no usable atom: the most similar one alone
        W /= W.sum(1, keepdims=True)
        n, k = W.shape
        codes = sp.csr_array((W.ravel(), I.candidates.ravel(), np.arange(0, n * k + 1, k)),
                             shape=(n, len(self.atoms_)))
        return codes.copy(), I.errors

    def fit(self, X, y=None) -> NNKMeans:
        X = as_points(X, "X").astype(np.float64)
        M = check_k(self.n_components, len(X), extra=0, what="n_components")
        check_k(self.n_nonzero, M, extra=0, what="n_nonzero")
        Y = None
        if y is not None:
            self.classes_, codes_y = check_labels(y, len(X))
            Y = np.eye(len(self.classes_))[codes_y]
        seeds = kmeans_plus_plus(X, M, self.seed)
        self.atoms_ = X[seeds].copy()
        # one Lloyd step from the seeds (nearest seed, Euclidean) before the NNK rounds
        d2 = ((X[:, None, :] - self.atoms_[None]) ** 2).sum(-1) if len(X) * M * X.shape[1] < 5e7 else None
        if d2 is not None:
            near = d2.argmin(1)
            for a in range(M):
                if (near == a).any():
                    self.atoms_[a] = X[near == a].mean(0)
        self.atom_labels_ = None
        for _ in range(self.n_iter):
            C, err = self._codes(X)
            CtC = (C.T @ C).toarray()
            used = np.diag(CtC) > 1e-4
            reg = 1e-10 * np.trace(CtC) / M
            new = np.linalg.solve(CtC + reg * np.eye(M), (C.T @ X))
            self.atoms_[used] = new[used]
            if (~used).any():  # re-seed unused atoms with the worst-coded points
                worst = np.argsort(-err, kind="stable")[: int((~used).sum())]
                self.atoms_[~used] = X[worst]
        C, err = self._codes(X)
        self.train_error_ = float(err.mean())
        if Y is not None:
            CtC = (C.T @ C).toarray()
            self.atom_labels_ = np.linalg.solve(CtC + 1e-10 * np.trace(CtC) / M * np.eye(M), C.T @ Y)
        return self

    def transform(self, X) -> sp.csr_array:
        """Sparse (n, M) NNK codes (rows sum to 1)."""
        if not hasattr(self, "atoms_"):
            raise InvalidParameterError("this NNKMeans is not fitted yet; call fit(X) first")
        return self._codes(as_points(X, "X").astype(np.float64))[0]

    def reconstruct(self, X) -> np.ndarray:
        return self.transform(X) @ self.atoms_

    def predict_proba(self, X) -> np.ndarray:
        if getattr(self, "atom_labels_", None) is None:
            raise InvalidParameterError("NNKMeans was fitted without labels; pass y to fit to predict classes")
        return self.transform(X) @ self.atom_labels_

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]
