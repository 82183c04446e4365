"""NNK interpolation: classification, regression and leave-one-out estimates (DeepNNK).

For a query with candidates ``S`` (its k nearest training points) and weights ``w`` the soft prediction is
``p = sum_j w_j y_j / sum_j w_j``.  Four weightings share the same candidates, so they compare like for like:

* ``"nnk"``: the NNK weights theta (zero outside the NNK support);
* ``"nnk_uniform"``: uniform weights on the NNK support (the unweighted error of the GSP 2023 paper);
* ``"kernel"``: kernel values on all k candidates (weighted kNN);
* ``"uniform"``: uniform weights on all k candidates (plain kNN).

Hard predictions take the argmax with ties going to the lowest class.  A query whose weights are all zero (no
candidate above the threshold) falls back to its nearest candidate's label; :func:`vote` returns the mask of those
queries (``return_fallback=True`` on the estimators' ``predict``).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._validate import as_points, check_choice, check_k, check_labels, check_positive
from ..engine.kernels import Kernel, make_kernel
from ..engine.neighbors import knn as _search
from ..engine.solvers import DEFAULT_TOL, SOLVERS, solve_candidates
from ..errors import InputShapeError, InvalidParameterError, TooFewPointsError

# The scikit-learn estimators live in .estimators: importing scikit-learn costs about as much as importing nnkscope
# itself, so `import nnkscope` skips it and the first use of one of these names loads it.
_ESTIMATORS = ("NNKClassifier", "NNKRegressor")

__all__ = ["Interpolation", "nnk_interpolate", "vote", "leave_one_out", "WEIGHTINGS", "LOOResult",
           "require_class_sizes", *_ESTIMATORS]


def __getattr__(name: str):
    if name in _ESTIMATORS:
        return getattr(importlib.import_module("nnkscope.measures.estimators"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


WEIGHTINGS = ("nnk", "nnk_uniform", "kernel", "uniform")


@dataclass
class Interpolation:
    """NNK weights of queries over training candidates (``candidates`` index the training rows)."""

    candidates: np.ndarray
    distances: np.ndarray
    kernel_values: np.ndarray
    theta: np.ndarray
    errors: np.ndarray
    status: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_neighbors(self) -> np.ndarray:
        return np.count_nonzero(self.theta, axis=1)

    def weights(self, weighting: str = "nnk") -> np.ndarray:
        """(n, k) weights of the chosen weighting on the candidates."""
        check_choice(weighting, "weighting", WEIGHTINGS)
        if weighting == "nnk":
            return self.theta
        if weighting == "nnk_uniform":
            return (self.theta > 0).astype(np.float64)
        if weighting == "kernel":
            return self.kernel_values
        return np.ones_like(self.theta)


def _resolve_sigma(X, k, kern: Kernel, nbrs, in_sample: bool, seed: int = 0) -> Kernel:
    if kern.name != "gaussian" or kern.sigma is not None or in_sample:
        return kern.resolve(nbrs.distances[:, -1])
    # out of sample: the training set's own k-th neighbour distance, estimated on a seeded sample of its points
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), size=min(len(X), 2000), replace=False))
    k_eff = min(k, len(X) - 1)
    if k_eff < 1:
        raise TooFewPointsError("the Gaussian bandwidth rule needs at least 2 training points; pass sigma")
    nb = _search(X, k_eff + 1, queries=X[rows], progress=False)
    kth = np.array([d[i != r][k_eff - 1] if (i == r).any() else d[k_eff - 1]
                    for i, d, r in zip(nb.indices, nb.distances, rows, strict=True)])
    return kern.resolve(kth)


def check_tau(tau) -> float:
    """The NNK threshold: a real number in [0, 1) (kernel values are at most 1)."""
    tau = check_positive(tau, "tau", allow_zero=True)
    if tau >= 1:
        raise InvalidParameterError(f"tau must lie in [0, 1); got {tau!r}: kernel values are at most 1, so it would "
                                    "prune every candidate (the interpolation default is 1e-10)")
    return tau


def nnk_interpolate(X, queries=None, k: int = 25, *, kernel: str = "cosine", sigma: float | None = None,
                    solver: str = "exact", tau: float = 1e-10, tol: float = DEFAULT_TOL, duplicates: str = "keep",
                    knn="exact", n_jobs: int | None = None, progress: bool | None = None,
                    knn_method=None) -> Interpolation:
    """NNK weights of each query over its k nearest training points.

    ``queries=None`` interpolates every training point from the *others* (leave-one-out: the point itself is never
    a candidate; ``duplicates="drop"`` also removes points identical to it).  ``tau`` defaults to 1e-10, the
    threshold the authors use for interpolation (graphs use 1e-6: a graph edge of weight 1e-8 is noise, an
    interpolation weight is not); k defaults to 25, the DeepNNK setting.  ``knn`` is the candidate search
    (``knn_method`` is its former name).

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> I = nnk_interpolate(X, np.array([[2.0, 2.0]]), k=3)
    >>> I.candidates[0].tolist(), I.theta[0].round(3).tolist()
    ([2, 0, 1], [1.0, 0.0, 0.0])
    """
    X = as_points(X, "X")
    in_sample = queries is None
    k = check_k(k, len(X), extra=1 if in_sample else 0)
    Q = X if in_sample else as_points(queries, "queries")
    if Q.shape[1] != X.shape[1]:
        raise InputShapeError(f"queries have {Q.shape[1]} features but the training data has {X.shape[1]}; "
                              "use features from the same model and layer")
    if knn_method is not None:
        warnings.warn("nnk_interpolate(knn_method=...) is now knn=...", DeprecationWarning, stacklevel=2)
        knn = knn_method
    kern = make_kernel(kernel, sigma)
    check_choice(solver, "solver", SOLVERS)
    tau = check_tau(tau)
    nbrs = _search(X, k, queries=None if in_sample else Q, metric=kern.metric, method=knn,
                   duplicates=duplicates, n_jobs=n_jobs, progress=progress)
    kern = _resolve_sigma(X, k, kern, nbrs, in_sample)
    theta, errors, status = solve_candidates(Q, X, kern, nbrs.indices, solver=solver, tau=tau, tol=tol,
                                             n_jobs=n_jobs, progress=progress)
    params = {"k": k, "kernel": kern.name, "sigma": kern.sigma, "solver": solver, "tau": tau,
              "leave_one_out": in_sample, "duplicates": duplicates}
    return Interpolation(nbrs.indices, nbrs.distances, kern.values(nbrs.distances), theta, errors, status,
                         params)


def vote(weights: np.ndarray, candidate_labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``sum_j w_j [y_j = c] / sum_j w_j``; returns ``(proba, fallback_mask)``.

    Rows whose weights sum to 0 get the one-hot label of their first (nearest) candidate.

    Examples
    --------
    >>> p, fb = vote(np.array([[0.5, 0.25, 0.25]]), np.array([[1, 0, 0]]), 2)
    >>> p.tolist(), fb.tolist()
    ([[0.5, 0.5]], [False])
    """
    n, k = weights.shape
    proba = np.zeros((n, n_classes))
    np.add.at(proba, (np.repeat(np.arange(n), k), candidate_labels.ravel()), weights.ravel())
    total = proba.sum(1)
    fallback = total <= 0
    proba[~fallback] /= total[~fallback, None]
    proba[np.flatnonzero(fallback), candidate_labels[fallback, 0]] = 1.0
    return proba, fallback


def require_class_sizes(codes: np.ndarray, classes: np.ndarray, k: int) -> None:
    """Refuse k >= the smallest class size, where a point cannot have k same-class candidates."""
    sizes = np.bincount(codes, minlength=len(classes))
    if sizes.min() <= k:
        small = classes[sizes.argmin()]
        raise InvalidParameterError(
            f"class {small!r} has only {sizes.min()} sample(s) but k={k}: its points cannot have k same-class "
            f"candidates, which biases homogeneity and LOO. Use k < {sizes.min()}, drop tiny classes, or pass "
            "check_class_sizes=False to accept it")


@dataclass
class LOOResult:
    """Leave-one-out interpolation of a training set by its own points (the DeepNNK generalisation estimate)."""

    interpolation: Interpolation
    labels: np.ndarray
    proba: dict  # weighting -> (N, C)
    fallback: dict

    def hard_error(self, weighting: str = "nnk") -> np.ndarray:
        return self.proba[weighting].argmax(1) != self.labels

    def soft_error(self, weighting: str = "nnk") -> np.ndarray:
        return 1.0 - self.proba[weighting][np.arange(len(self.labels)), self.labels]

    def summary(self) -> dict:
        out = {"n": len(self.labels), "k": self.interpolation.params["k"],
               "mean_nnk_degree": float(self.interpolation.n_neighbors.mean()),
               "mean_interpolation_error": float(self.interpolation.errors.mean())}
        for w in WEIGHTINGS:
            out[f"loo_error_{w}"] = float(self.hard_error(w).mean())
            out[f"loo_soft_error_{w}"] = float(self.soft_error(w).mean())
        out["weighted_unweighted_gap"] = out["loo_error_nnk_uniform"] - out["loo_error_nnk"]
        out["fallback_nodes"] = int(self.fallback["nnk"].sum())
        return out


def leave_one_out(X, y, k: int = 25, *, kernel: str = "cosine", sigma: float | None = None,
                  duplicates: str = "keep", solver: str = "exact", tau: float = 1e-10, n_jobs: int | None = None,
                  check_class_sizes: bool = True, progress: bool | None = None,
                  drop_identical: bool | None = None) -> LOOResult:
    """Interpolate every training point from the others: hard, soft and interpolation errors for all weightings.

    The point itself is never its own candidate; ``duplicates="drop"`` also drops points identical to it (the
    CW-DeepNNK ``ignore_identical`` option; ``drop_identical=True`` is its former name), so exact duplicates
    cannot leak the label.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.2]])
    >>> r = leave_one_out(X, np.array([0, 0, 0, 1, 1, 1]), k=2)
    >>> r.summary()["loo_error_nnk"]
    0.0
    """
    X = as_points(X, "X")
    classes, codes = check_labels(y, len(X))
    if drop_identical is not None:
        warnings.warn("leave_one_out(drop_identical=...) is now duplicates='drop' / 'keep'", DeprecationWarning,
                      stacklevel=2)
        duplicates = "drop" if drop_identical else "keep"
    if check_class_sizes:
        require_class_sizes(codes, classes, k)
    I = nnk_interpolate(X, None, k, kernel=kernel, sigma=sigma, solver=solver, tau=tau, duplicates=duplicates,
                        n_jobs=n_jobs, progress=progress)
    cand_labels = codes[I.candidates]
    proba, fallback = {}, {}
    for w in WEIGHTINGS:
        proba[w], fallback[w] = vote(I.weights(w), cand_labels, len(classes))
    return LOOResult(I, codes, proba, fallback)
