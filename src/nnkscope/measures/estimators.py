"""scikit-learn estimators on NNK interpolation: :class:`NNKClassifier` and :class:`NNKRegressor`.

They are real scikit-learn estimators (``clone``, ``Pipeline``, ``cross_val_score``, ``GridSearchCV``,
``check_estimator``) whose input errors stay nnkscope errors naming the fix; those subclass ``ValueError`` /
``TypeError`` as scikit-learn expects.  :class:`~nnkscope.measures.nnk_means.NNKMeans` shares the checks defined
here.  The usual import path is ``nnkscope.measures.interpolation`` (or the old ``nnkscope.interpolation``), which
loads this module on first use so that ``import nnkscope`` does not pay for importing scikit-learn.

Conventions:

* ``__init__`` only stores the parameters; ``fit`` validates them and the data, so a bad setting fails at ``fit``.
* ``k`` is taken as given: ``k`` larger than the training set is an error naming the largest usable ``k``, never
  silently lowered (a grid search over ``k`` must not score the same model under two names; scikit-learn's own
  ``KNeighborsClassifier`` refuses too).
* ``predict`` never changes the estimator (scikit-learn's rule: it may run in parallel threads); the queries that
  fell back to their nearest candidate come back with ``return_fallback=True``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from .._validate import as_points, check_choice, check_labels, check_positive_int
from ..engine.kernels import make_kernel
from ..engine.neighbors import resolve_search
from ..engine.solvers import SOLVERS
from ..errors import InputDTypeError, InputShapeError, InvalidParameterError, TooFewPointsError
from .interpolation import WEIGHTINGS, Interpolation, _resolve_sigma, check_tau, nnk_interpolate, vote

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data

    def _record_features(est, X, reset: bool) -> None:
        _sklearn_validate_data(est, X, reset=reset, skip_check_array=True)
except ImportError:  # scikit-learn 1.3 - 1.5: the same checks are a method
    def _record_features(est, X, reset: bool) -> None:
        est._validate_data(X, reset=reset, cast_to_ndarray=False)

__all__ = ["NNKClassifier", "NNKRegressor", "NotFittedError"]


class NotFittedError(InvalidParameterError, _SklearnNotFittedError):
    """An estimator was used before ``fit``: an nnkscope error that is also scikit-learn's ``NotFittedError``."""


def check_points(est, X, *, reset: bool) -> np.ndarray:
    """``X`` as :func:`~nnkscope._validate.as_points` returns it, with the checks scikit-learn estimators make.

    ``reset=True`` (in ``fit``) records ``n_features_in_`` and ``feature_names_in_``; ``reset=False`` (every other
    method) checks ``X`` against them.  Numbers held in an object array are converted (scikit-learn's rule);
    sparse matrices, 1-D arrays and zero columns are refused with scikit-learn's wording and the fix.
    """
    name = type(est).__name__
    if sp.issparse(X):
        raise InputDTypeError(f"X is a scipy sparse matrix, which {name} does not support (its neighbour search "
                              "needs dense rows); pass X.toarray() if it fits in memory")
    arr = X if isinstance(X, np.ndarray) else np.asarray(X)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputDTypeError(f"X holds entries that are not numbers ({exc}); convert it to real numbers "
                                  "first, e.g. X.astype(np.float32)") from None
    if arr.ndim == 1:
        raise InputShapeError(f"X must be 2-D (n_samples, n_features); got a 1-D array of shape {arr.shape}. "
                              "Reshape your data: X.reshape(-1, 1) if it has a single feature, X.reshape(1, -1) "
                              "if it is a single sample")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise InputShapeError(f"X has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required; pass at "
                              "least one column")
    arr = as_points(arr, "X")
    if not reset and arr.shape[1] != est.n_features_in_:
        raise InputShapeError(f"X has {arr.shape[1]} features, but {name} is expecting {est.n_features_in_} "
                              "features as input (the number it was fitted on); use features from the same model "
                              "and layer")
    _record_features(est, X, reset)  # feature names of a DataFrame: recorded at fit, compared afterwards
    return arr


def check_size(est, value, name: str, n_samples: int) -> int:
    """A count (``k``, ``n_components``) that needs at least that many training samples: never lowered silently."""
    value = check_positive_int(value, name)
    if value > n_samples:
        raise TooFewPointsError(f"{type(est).__name__}({name}={value}) needs at least {value} training samples; got "
                                f"{n_samples} sample(s). Lower {name} to at most {n_samples} or fit on more samples")
    return value


def check_fitted(est, fit_call: str) -> None:
    """Raise :class:`NotFittedError` (an nnkscope and a scikit-learn error) if ``est`` is not fitted."""
    try:
        check_is_fitted(est)
    except _SklearnNotFittedError:
        raise NotFittedError(f"this {type(est).__name__} is not fitted yet; call {fit_call} first") from None


def refuse_unknown_params(est, params: dict) -> None:
    """``set_params`` with a name the estimator does not have: an nnkscope error listing the valid names."""
    valid = est.get_params(deep=False)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InvalidParameterError(f"{type(est).__name__} has no parameter {unknown[0]!r}; valid: {sorted(valid)}")


def _require_y(est, y) -> None:
    if y is None:
        raise InvalidParameterError(f"{type(est).__name__} requires y to be passed, but the target y is None; call "
                                    "fit(X, y) with one target per row of X")


class _NNKInterpolator(BaseEstimator):
    """What the classifier and the regressor share: parameter checks, the fitted training set, ``interpolate``."""

    def set_params(self, **params):
        refuse_unknown_params(self, params)
        return super().set_params(**params)

    @property
    def n_fallback_(self):
        raise AttributeError(f"{type(self).__name__}.n_fallback_ is gone: predict no longer changes the estimator "
                             "(scikit-learn's rule); use predict(X, return_fallback=True), which also returns the "
                             "mask of the queries that fell back, and sum it")

    def _search(self):
        """The candidate search: ``knn``, or the deprecated ``knn_method`` when it was given."""
        if self.knn_method is None:
            return self.knn
        if not (isinstance(self.knn, str) and self.knn == "exact") and self.knn != self.knn_method:
            raise InvalidParameterError(f"knn={self.knn!r} and knn_method={self.knn_method!r} disagree; knn_method "
                                        "is the former name of knn: pass knn only")
        return self.knn_method

    def _fit_points(self, X) -> np.ndarray:
        """Check ``X`` and every parameter (so a bad setting fails at fit, not at the first predict)."""
        X = check_points(self, X, reset=True)
        check_size(self, self.k, "k", len(X))
        make_kernel(self.kernel, self.sigma)
        check_choice(self.weights, "weights", WEIGHTINGS)
        check_choice(self.solver, "solver", SOLVERS)
        check_tau(self.tau)
        if self.knn_method is not None:
            warnings.warn(f"{type(self).__name__}(knn_method=...) is now knn=...", DeprecationWarning, stacklevel=3)
        resolve_search(self._search(), "knn")
        return X

    def _fit_bandwidth(self, X: np.ndarray) -> float | None:
        """The Gaussian bandwidth, fixed at fit (the rule reads the training set only, so predict needs not redo it)."""
        kern = make_kernel(self.kernel, self.sigma)
        if kern.name != "gaussian" or kern.sigma is not None:
            return kern.sigma
        return _resolve_sigma(X, self.k, kern, None, in_sample=False).sigma

    def interpolate(self, X) -> Interpolation:
        """NNK weights of the rows of ``X`` over the training set (``candidates`` index ``X_``)."""
        check_fitted(self, "fit(X, y)")
        Q = check_points(self, X, reset=False)
        return nnk_interpolate(self.X_, Q, self.k, kernel=self.kernel, sigma=self.sigma_, solver=self.solver,
                               tau=self.tau, knn=self._search(), n_jobs=self.n_jobs, progress=False)

    def _weights(self, I: Interpolation, weights: str | None) -> np.ndarray:
        return I.weights(self.weights if weights is None else weights)


class NNKClassifier(ClassifierMixin, _NNKInterpolator):
    """NNK interpolation classifier (DeepNNK / the NNK classifier of the SSL benchmark), a scikit-learn classifier.

    A query's class probabilities are ``sum_j w_j [y_j = c] / sum_j w_j`` over its ``k`` nearest training points;
    a query whose weights are all zero takes its nearest candidate's label.

    Parameters
    ----------
    k : int, default 25
        Candidates per query; at most the number of training samples (larger is refused at fit, naming the fix).
    kernel : {"cosine", "gaussian"}, default "cosine" (as in the papers)
    sigma : float, optional
        Gaussian bandwidth; default: the training set's mean distance to its k-th neighbour / 3, fixed at fit.
    weights : {"nnk", "nnk_uniform", "kernel", "uniform"}, default "nnk"
        "kernel" is weighted kNN and "uniform" plain kNN: the baselines share the candidates.
    solver, tau : NNK solver and pruning threshold (interpolation default 1e-10).
    knn : "exact" (default), "hnsw", "ivf", "gpu" or a search object: the candidate search.
    n_jobs : int, optional
        Threads for the search and the solver.
    knn_method : deprecated
        The former name of ``knn``; warns at fit.

    Attributes
    ----------
    classes_ : the sorted class labels (any hashable type). X_, y_ : the training rows and their class codes.
    sigma_ : the Gaussian bandwidth used (None for the cosine kernel). n_features_in_, feature_names_in_.

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]]); y = np.array([0, 0, 1, 1])
    >>> NNKClassifier(k=2).fit(X, y).predict(np.array([[0.05, 1.0], [1.0, 0.02]])).tolist()
    [0, 1]
    """

    def __init__(self, k: int = 25, kernel: str = "cosine", sigma: float | None = None, weights: str = "nnk",
                 solver: str = "exact", tau: float = 1e-10, knn="exact", n_jobs: int | None = None,
                 knn_method=None):
        self.k = k
        self.kernel = kernel
        self.sigma = sigma
        self.weights = weights
        self.solver = solver
        self.tau = tau
        self.knn = knn
        self.n_jobs = n_jobs
        self.knn_method = knn_method

    def fit(self, X, y) -> NNKClassifier:
        """Store the training set after checking it, ``y`` (class labels of any hashable type) and the parameters."""
        X = self._fit_points(X)
        _require_y(self, y)
        classes, codes = check_labels(y, len(X))
        _refuse_continuous(classes)
        self.classes_, self.y_, self.X_ = classes, codes, X
        self.sigma_ = self._fit_bandwidth(X)
        return self

    def predict_proba(self, X, weights: str | None = None, *, return_fallback: bool = False):
        """(n, n_classes) class probabilities, columns in ``classes_`` order; ``weights`` overrides the weighting.

        With ``return_fallback=True`` also the boolean mask of the queries whose weights were all zero (they took
        their nearest candidate's label).
        """
        I = self.interpolate(X)
        proba, fallback = vote(self._weights(I, weights), self.y_[I.candidates], len(self.classes_))
        return (proba, fallback) if return_fallback else proba

    def predict(self, X, weights: str | None = None, *, return_fallback: bool = False):
        """Class labels (the most probable class, ties to the lowest); ``return_fallback`` as in predict_proba."""
        proba, fallback = self.predict_proba(X, weights, return_fallback=True)
        labels = self.classes_[proba.argmax(1)]
        return (labels, fallback) if return_fallback else labels


def _refuse_continuous(classes: np.ndarray) -> None:
    """Non-integer float labels are a regression target, not classes (scikit-learn refuses them too)."""
    if classes.dtype.kind == "f" and (classes != np.round(classes)).any():
        example = classes[classes != np.round(classes)][0]
        raise InvalidParameterError(f"Unknown label type: continuous. y holds non-integer numbers (e.g. {example!r}), "
                                    "a regression target rather than class labels: use NNKRegressor, or cast the "
                                    "labels to int or str if they really are classes")


class NNKRegressor(RegressorMixin, _NNKInterpolator):
    """NNK interpolation regressor ``sum_j w_j y_j / sum_j w_j`` (multi-output when ``y`` is 2-D).

    Parameters and attributes are those of :class:`NNKClassifier` (without ``classes_``; ``y_`` holds the float
    targets), except that ``kernel`` defaults to "gaussian".  ``score`` is scikit-learn's R^2 (the mean over
    outputs for a 2-D ``y``).

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0]]); y = np.array([0.0, 10.0, 20.0])
    >>> NNKRegressor(k=2, kernel="gaussian", sigma=1.0).fit(X, y).predict(np.array([[1.5]])).round(6).tolist()
    [15.0]
    """

    def __init__(self, k: int = 25, kernel: str = "gaussian", sigma: float | None = None, weights: str = "nnk",
                 solver: str = "exact", tau: float = 1e-10, knn="exact", n_jobs: int | None = None,
                 knn_method=None):
        self.k = k
        self.kernel = kernel
        self.sigma = sigma
        self.weights = weights
        self.solver = solver
        self.tau = tau
        self.knn = knn
        self.n_jobs = n_jobs
        self.knn_method = knn_method

    def fit(self, X, y) -> NNKRegressor:
        """Store the training set after checking it, ``y`` ((n,) or (n, n_outputs) numbers) and the parameters."""
        X = self._fit_points(X)
        _require_y(self, y)
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidParameterError("y must hold numbers for a regressor; for class labels use NNKClassifier"
                                        ) from None
        if y.shape[:1] != (len(X),) or y.ndim > 2:
            raise InputShapeError(f"y must have shape ({len(X)},) or ({len(X)}, n_outputs); got {y.shape}")
        if not np.isfinite(y).all():
            raise InvalidParameterError("y contains NaN/inf targets; drop or impute them")
        self.X_, self.y_ = X, y
        self.sigma_ = self._fit_bandwidth(X)
        return self

    def predict(self, X, weights: str | None = None, *, return_fallback: bool = False):
        """(n,) or (n, n_outputs) predictions; with ``return_fallback=True`` also the mask of the queries whose
        weights were all zero (they took their nearest candidate's target)."""
        I = self.interpolate(X)
        w = self._weights(I, weights)
        fallback = w.sum(1) <= 0
        w = np.where(fallback[:, None], np.eye(w.shape[1])[0], w)  # nearest candidate when every weight is zero
        Y = self.y_[I.candidates]
        pred = np.einsum("nk,nk...->n...", w, Y) / w.sum(1).reshape((-1,) + (1,) * (Y.ndim - 2))
        return (pred, fallback) if return_fallback else pred

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
