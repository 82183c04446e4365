"""NNK-Means: dictionary summarisation with NNK sparse codes (Shekkizhar & Ortega, EUSIPCO 2022).

Alternates (1) coding: each point is NNK-interpolated from its ``n_nonzero`` most similar atoms (exact solver,
weights L1-normalised) and (2) a least-squares update of the atoms ``D = (W'W)^-1 W'X`` and of their soft labels
``A = (W'W)^-1 W'Y``.  Atoms no point uses are re-seeded with the points coded worst (deterministic).  Predictions
interpolate the atom labels with the codes.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from .._validate import check_labels, check_positive_int
from ..engine.kernels import make_kernel
from ..errors import InvalidParameterError
from .estimators import check_fitted, check_points, check_size, refuse_unknown_params
from .interpolation import check_tau, nnk_interpolate

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


class NNKMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Dictionary learning with NNK codes, a scikit-learn transformer (``transform`` gives the sparse codes).

    Fitted with labels (``fit(X, y)``) it also predicts classes: each atom carries soft labels and a point's class
    scores are its code times those.  It is a transformer rather than a clusterer because ``predict`` returns those
    classes, not atom indices; fitted without labels it summarises ``X`` only.

    Parameters
    ----------
    n_components : int, default 50
        Number of atoms M; at most the number of training samples (larger is refused at fit, naming the fix).
    n_nonzero : int, default 10
        Atoms considered per point (the code's candidate set), an upper bound: with fewer atoms
        (``n_components < n_nonzero``) every atom is considered.
    n_iter : int, default 10
        Coding / update rounds (0: the k-means++ seeds after one Lloyd step).
    kernel : {"cosine", "gaussian"}, default "cosine"
    sigma : float, optional
        Gaussian bandwidth; default: the atoms' mean distance to their ``n_nonzero``-th neighbour / 3.
    tau : float, default 1e-10
        NNK pruning threshold.
    seed : int, default 0
        Initialisation seed.
    n_jobs : int, optional
        Threads for the solver.

    Attributes
    ----------
    atoms_ : (M, d) dictionary. atom_labels_ : (M, n_classes) soft labels, None when fitted without labels.
    classes_ : class labels (only when fitted with labels). train_error_ : mean NNK interpolation error of the
    training points. n_features_in_, feature_names_in_.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(50, 2)) + 5, rng.normal(size=(50, 2)) - 5]; y = np.repeat([0, 1], 50)
    >>> m = NNKMeans(n_components=4, n_nonzero=2, n_iter=3, kernel="gaussian").fit(X, y)
    >>> float(np.mean(m.predict(X) == y))
    1.0
    >>> round(float(m.transform(X[:1]).sum()), 12)  # a point's code: convex weights on its atoms
    1.0
    """

    def __init__(self, n_components: int = 50, n_nonzero: int = 10, n_iter: int = 10, kernel: str = "cosine",
                 sigma: float | None = None, tau: float = 1e-10, seed: int = 0, n_jobs: int | None = None):
        self.n_components = n_components
        self.n_nonzero = n_nonzero
        self.n_iter = n_iter
        self.kernel = kernel
        self.sigma = sigma
        self.tau = tau
        self.seed = seed
        self.n_jobs = n_jobs

    def set_params(self, **params):
        refuse_unknown_params(self, params)
        return super().set_params(**params)

    def _codes(self, X: np.ndarray):
        # n_nonzero is an upper bound: a dictionary of fewer atoms offers all of them (so a search over
        # n_components need not adjust it)
        I = nnk_interpolate(self.atoms_, X, min(self.n_nonzero, len(self.atoms_)), kernel=self.kernel,
                            sigma=self.sigma, tau=self.tau, n_jobs=self.n_jobs, progress=False)
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
        """Learn the atoms from ``X``; with labels ``y`` (any hashable type) also the atoms' soft labels."""
        X = check_points(self, X, reset=True).astype(np.float64)
        M = check_size(self, self.n_components, "n_components", len(X))
        check_positive_int(self.n_nonzero, "n_nonzero")
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, numbers.Integral) or self.n_iter < 0:
            raise InvalidParameterError(f"n_iter must be an integer >= 0; got {self.n_iter!r}")
        make_kernel(self.kernel, self.sigma)
        check_tau(self.tau)
        Y = None
        self.__dict__.pop("classes_", None)  # a refit without labels must not keep the last fit's classes
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

    @property
    def _n_features_out(self) -> int:  # get_feature_names_out: nnkmeans0, nnkmeans1, ... (one per atom)
        return len(self.atoms_)

    def transform(self, X) -> sp.csr_array:
        """Sparse (n, M) NNK codes (rows sum to 1)."""
        check_fitted(self, "fit(X)")
        return self._codes(check_points(self, X, reset=False).astype(np.float64))[0]

    def reconstruct(self, X) -> np.ndarray:
        """The rows of ``X`` as their codes rebuild them from the atoms."""
        return self.transform(X) @ self.atoms_

    def predict_proba(self, X) -> np.ndarray:
        """(n, n_classes) class scores (code times atom labels), columns in ``classes_`` order."""
        check_fitted(self, "fit(X, y)")
        if self.atom_labels_ is None:
            raise InvalidParameterError("NNKMeans was fitted without labels; pass y to fit to predict classes")
        return self.transform(X) @ self.atom_labels_

    def predict(self, X) -> np.ndarray:
        """The class of the highest score (needs a fit with labels)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]

    def score(self, X, y=None) -> float:
        """Accuracy on ``(X, y)`` when ``y`` is given, else the negative mean squared reconstruction error.

        ``GridSearchCV(...).fit(X, y)`` passes ``y`` on, so a labelled search ranks by accuracy and an unlabelled
        one by reconstruction (higher is better in both).
        """
        if y is None:
            check_fitted(self, "fit(X)")
            X = check_points(self, X, reset=False).astype(np.float64)
            return -float(np.mean(((X - self._codes(X)[0] @ self.atoms_) ** 2).sum(1)))
        return float(np.mean(self.predict(X) == np.asarray(y)))
