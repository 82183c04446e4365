"""Global and pointwise intrinsic dimension: TwoNN, Levina-Bickel MLE, PCA.

The neighbour-based estimators read the same search as the NNK graph (:func:`nnkscope.engine.neighbors.knn`), or
a precomputed :class:`~nnkscope.engine.neighbors.Neighbors` so that a study can share one search; memory is
``O(N k)``.

* **TwoNN** (Facco et al. 2017).  ``mu_i = r2 / r1``, the ratio of each point's second to first neighbour
  distance, is Pareto(1, d) on a locally uniform d-manifold, i.e. ``log mu ~ Exponential(d)``.  ``fit="mle"``
  (default): the unbiased maximum-likelihood estimate ``(n - 1) / sum log mu_i`` (Denti et al. 2022); with a
  ``discard`` fraction the largest ratios are treated as censored (Type-II), ``(m - 1) / (sum_{i<=m} log mu_(i) +
  (n - m) log mu_(m))`` over the ``m = int(n (1 - discard))`` smallest.  ``fit="linear"``: the paper's fit through
  the origin of ``-log(1 - i / n)`` against ``log mu_(i)`` over the ``m`` smallest ratios (``discard`` default 0.1,
  as in the paper).  Both match scikit-dimension's ``TwoNN(method=..., discard_fraction=...)``.
* **MLE** (Levina & Bickel 2004) with the MacKay-Ghahramani correction: per point,
  ``1 / m_i = (1 / (k - 1)) sum_{j<k} log(T_k / T_j)`` over its ``k`` neighbour distances ``T_j``; the global
  estimate averages the *inverses*, ``d = 1 / mean_i(1 / m_i)`` (the average of ``m_i`` itself is biased upward).
* **PCA**: the smallest number of principal components whose covariance eigenvalues hold ``fraction`` of the
  variance (exact on linear data whose spectrum is not too skewed within its span).

Distances: Euclidean, or for ``metric="cosine"`` the chord ``sqrt(2 (1 - cos))`` between unit-normalised rows
(``1 - cos`` itself grows like the squared angle and would halve every estimate).

Duplicates follow the library's policy.  ``"error"`` raises :class:`~nnkscope.errors.DuplicatePointsError`.
``"keep"`` (default) and ``"drop"`` both give the estimates of the *de-duplicated* data: a candidate at zero
distance from the point (a copy of it), or identical to an earlier candidate (a copy of a neighbour), is left out
of the log ratios, so TwoNN's ``r1, r2`` are the distances to the two nearest distinct other points and MLE uses
the ``k' <= k`` distinct neighbours among the ``k`` candidates; each point still counts once per copy.  (Leaving
out only the zero distances is not enough: a neighbour's copy would tie ``r2 = r1``, ``log mu = 0``, and inflate
TwoNN -- a bootstrap resample makes such ties at ~40 % of the points.)  Copies are recognised from ``X`` (rows
identical; for cosine, ``1 - cos <= 1e-12`` as in the search), only among candidates at tied distances, so the
check costs nothing on data without ties.  The two policies differ in the search: ``"drop"`` never returns a
point's own copies, so every point keeps ``k`` candidates; under ``"keep"`` a point with ``k - 1`` or more copies
may have fewer than two distinct neighbours: it is left out of the global estimate, and
:func:`pointwise_dimension` refuses it (raise ``k`` or use ``"drop"``).  No estimate is ever NaN.

**Weights** (``weights=``, e.g. bootstrap multiplicities from :func:`~nnkscope.measures.uncertainty.
bootstrap_weights`): point ``i`` counts ``w_i`` times and the neighbour search of the unweighted ``X`` is held
fixed.  TwoNN is then ``(sum w - 1) / sum w_i log mu_i`` and MLE ``sum w / sum w_i (1 / m_i)`` (over the points
that have an estimate); PCA uses the weighted covariance (:func:`~nnkscope.measures.spectral.covariance_spectrum`).
A bootstrap built on these is *conditional on the neighbourhoods*: it covers the sampling variability of the
per-point terms over points, not the change of each point's neighbours that a new sample would bring (a resample
with repeated rows would only create zero distances, so the unconditional version is not better defined).
All-ones weights give exactly the unweighted estimate.
"""

from __future__ import annotations

import numbers

import numba as nb
import numpy as np

from .._runtime import thread_limit
from .._validate import as_points, check_choice, check_k
from ..engine.neighbors import COSINE_DUP_EPS, DUPLICATES, METRICS, Neighbors, duplicate_error, knn
from ..errors import InputShapeError, InvalidParameterError, TooFewPointsError
from .spectral import covariance_spectrum

__all__ = ["intrinsic_dimension", "pointwise_dimension", "pca_dimension", "pca_from_spectrum",
           "dimension_from_weights", "METHODS", "POINTWISE_METHODS"]

METHODS = ("twonn", "mle", "pca")
POINTWISE_METHODS = ("twonn", "mle")
TWONN_FITS = ("mle", "linear")
DEFAULT_K = 20  # neighbours per point (scikit-dimension's MLE default); TwoNN needs 2 but gains duplicate slack
# copies a, b of one direction (1 - cos(a, b) <= 1e-12, angle <= 1.5e-6) have cosine distances to a third point
# that differ by at most that angle: candidates that close are compared
_COSINE_TIE = 2e-6


def _check_constant(X: np.ndarray) -> None:
    if not (X.max(axis=0) > X.min(axis=0)).any():
        raise InvalidParameterError("X is constant (every row equal): it has no intrinsic dimension; check the layer "
                                    "(dead units, a collapsed representation)")


def _check_two(k: int) -> None:
    if k < 2:
        raise InvalidParameterError(f"k={k}: TwoNN and MLE need at least 2 neighbours per point; use k >= 2 "
                                    "(typical: 10-20)")


@nb.njit(parallel=True, cache=True)
def _distinct(X, inv, cosine, idx, raw, eps, tie, out):
    """``out[i, c]``: candidate c of point i is neither a copy of i nor of an earlier distinct candidate."""
    n, k = idx.shape
    d = X.shape[1]
    for i in nb.prange(n):
        for c in range(k):
            keep = raw[i, c] > eps
            c2 = c - 1
            # copies of one point lie at (nearly) the same distance from i: only tied candidates are compared
            while keep and c2 >= 0 and raw[i, c] - raw[i, c2] <= tie:
                if out[i, c2]:
                    a = idx[i, c]
                    b = idx[i, c2]
                    s = 0.0
                    if cosine:
                        for t in range(d):
                            s += np.float64(X[a, t]) * np.float64(X[b, t])
                        same = 1.0 - s * inv[a] * inv[b] <= eps
                    else:
                        for t in range(d):
                            diff = np.float64(X[a, t]) - np.float64(X[b, t])
                            s += diff * diff
                        same = s <= 0.0
                    if same:
                        keep = False
                c2 -= 1
            out[i, c] = keep


def _distances(X, k, metric, duplicates, neighbors, search, n_jobs):
    """(N, k) neighbour distances in a geometry where they scale like length, their candidates, and the mask of
    distinct ones (the pairs the log ratios may use)."""
    check_choice(duplicates, "duplicates", DUPLICATES)
    if X is None:
        raise InvalidParameterError("pass the points X (with neighbors=knn(X, k) to reuse a search)")
    X = as_points(X, "X")
    n = len(X)
    _check_constant(X)
    if neighbors is None:
        metric = "euclidean" if metric is None else metric
        check_choice(metric, "metric", METRICS)
        k = check_k(max(2, min(DEFAULT_K, n - 1)) if k is None else k, n)
        _check_two(k)
        nb_ = knn(X, k, metric=metric, method=search, duplicates=duplicates, n_jobs=n_jobs, progress=False)
        idx, raw = nb_.indices, nb_.distances
    else:
        if not isinstance(neighbors, Neighbors):
            raise InvalidParameterError(f"neighbors must be a Neighbors from nnkscope.knn(X, k); got "
                                        f"{type(neighbors).__name__}")
        if metric is not None and metric != neighbors.metric:
            raise InvalidParameterError(f"metric={metric!r} but the neighbors were searched with "
                                        f"{neighbors.metric!r}; omit metric or search again")
        metric = neighbors.metric
        idx, raw = neighbors.indices, neighbors.distances
        if len(idx) != n:
            raise InputShapeError(f"neighbors describe {len(idx)} points but X has {n} rows; search the same points")
        if k is not None:
            k = check_k(k, n)
            _check_two(k)
            if k > idx.shape[1]:
                raise InvalidParameterError(f"k={k} but the neighbors hold {idx.shape[1]} per point; lower k or "
                                            "search with a larger k")
            idx, raw = idx[:, :k], raw[:, :k]
        _check_two(idx.shape[1])
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    raw = np.ascontiguousarray(raw, dtype=np.float64)
    cosine = metric == "cosine"
    eps = COSINE_DUP_EPS if cosine else 0.0
    if duplicates == "error" and (raw[:, 0] <= eps).any():
        first = int(np.flatnonzero(raw[:, 0] <= eps)[0])
        raise duplicate_error(int((raw[:, 0] <= eps).sum()), first, int(idx[first, 0]))
    inv = 1.0 / np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)) if cosine else np.ones(1)
    distinct = np.empty(idx.shape, np.bool_)
    with thread_limit(n_jobs):
        _distinct(X, inv, cosine, idx, raw, eps, _COSINE_TIE if cosine else 0.0, distinct)
    dist = np.sqrt(2.0 * raw) if cosine else raw
    return dist, idx, distinct


def _no_estimate_error(n_bad: int, first: int) -> TooFewPointsError:
    return TooFewPointsError(
        f"{n_bad} point(s) have fewer than 2 distinct neighbours among their candidates (first: row {first}), "
        "because of duplicated rows; raise k, deduplicate (np.unique(X, axis=0)) or pass duplicates='drop'"
    )


def _twonn_logmu(dist, distinct):
    """log(r2 / r1) per point from its two nearest distinct neighbours, and whether the point has two."""
    seen = np.cumsum(distinct, axis=1)
    ok = seen[:, -1] >= 2
    rows = np.arange(len(dist))
    r1 = dist[rows, np.argmax(seen >= 1, axis=1)]
    r2 = dist[rows, np.argmax(seen >= 2, axis=1)]
    logmu = np.zeros(len(dist))
    logmu[ok] = np.log(r2[ok]) - np.log(r1[ok])
    return logmu, ok


def _twonn(logmu: np.ndarray, fit: str, discard: float) -> float:
    n = logmu.size
    m = int(n * (1 - discard))
    if m < 2:
        raise TooFewPointsError(f"TwoNN keeps {m} ratio(s) of {n} after discard={discard}; it needs 2. Add points "
                                "or lower discard")
    x = np.sort(logmu)[:m]
    tied = InvalidParameterError("every second-to-first neighbour distance ratio is 1 (a lattice or tied "
                                 "distances): TwoNN is undefined here; use method='mle' or 'pca'")
    if fit == "mle":
        denom = x.sum() + (n - m) * x[-1]
        if denom <= 0:
            raise tied
        return float((m - 1) / denom)
    if m == n:
        raise InvalidParameterError("fit='linear' needs discard > 0 (the largest ratio has empirical CDF 1, whose "
                                    "-log(1 - F) is infinite); Facco et al. use discard=0.1")
    y = -np.log1p(-np.arange(1, m + 1) / n)
    sxx = float(x @ x)
    if sxx == 0:
        raise tied
    return float(x @ y / sxx)


def _mle_inverse(dist, distinct):
    """Per-point ``1 / m_i`` (Levina-Bickel over the distinct neighbours) and whether the point has two."""
    count = distinct.sum(axis=1)
    ok = count >= 2
    k = dist.shape[1]
    last = k - 1 - np.argmax(distinct[:, ::-1], axis=1)  # the farthest distinct neighbour, T_k'
    t_max = dist[np.arange(len(dist)), last]
    logs = np.log(np.where(distinct, dist, 1.0))
    # sum_{distinct j} log(T_k' / T_j); the j = k' term is 0, so the sum over all distinct j is the one wanted
    total = count * np.log(np.where(ok, t_max, 1.0)) - np.where(distinct, logs, 0.0).sum(axis=1)
    inv = np.zeros(len(dist))
    inv[ok] = total[ok] / (count[ok] - 1)
    return inv, ok


def pca_dimension(X, fraction: float = 0.9, *, weights=None):
    """Smallest number of principal components whose covariance eigenvalues hold ``fraction`` of the variance.

    ``weights``: ``(N,)`` point multiplicities (the weighted covariance), or ``(B, N)`` for ``B`` estimates at once
    (then an int array is returned).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 3)) @ np.random.default_rng(1).normal(size=(3, 10))
    >>> pca_dimension(X, 0.999999)
    3
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
        raise InvalidParameterError(f"fraction must be in (0, 1]; got {fraction!r}")
    if weights is not None and np.ndim(weights) == 2:
        return np.array([pca_from_spectrum(covariance_spectrum(X, weights=w), fraction) for w in weights])
    return pca_from_spectrum(covariance_spectrum(X, weights=weights), fraction)


def pca_from_spectrum(lam: np.ndarray, fraction: float = 0.9) -> int:
    """:func:`pca_dimension` from covariance eigenvalues (descending), e.g. those of a weighted covariance.

    Examples
    --------
    >>> pca_from_spectrum(np.array([3.0, 1.0, 0.0]), 0.75)
    1
    """
    cum = np.cumsum(lam) / lam.sum()
    # 1e-12: a fraction met exactly (e.g. 0.5 of two equal eigenvalues) must not miss by rounding
    return int(min(np.searchsorted(cum, fraction - 1e-12) + 1, np.count_nonzero(lam)))


def intrinsic_dimension(X, method: str = "twonn", *, k: int | None = None, fraction: float = 0.9,
                        fit: str = "mle", discard: float | None = None, metric: str | None = None,
                        duplicates: str = "keep", neighbors: Neighbors | None = None, search="exact",
                        n_jobs: int | None = None, weights=None):
    """Global intrinsic dimension of the points ``X`` (rows) by TwoNN, Levina-Bickel MLE or PCA.

    Parameters
    ----------
    X : (N, d) array of points.
    method : "twonn" (default), "mle" or "pca".
    k : candidates per point (TwoNN, MLE).  Default ``min(20, N - 1)``; with ``neighbors``, all of theirs.  TwoNN
        uses the two nearest distinct ones; MLE all distinct ones.
    fraction : variance fraction for ``method="pca"``.
    fit : TwoNN estimator, "mle" (default; unbiased maximum likelihood) or "linear" (Facco et al.'s line fit).
    discard : TwoNN fraction of the largest ratios to discard (censored, for ``fit="mle"``); default 0 for "mle",
        0.1 for "linear".
    metric : "euclidean" (default) or "cosine" (chord distance of unit rows); with ``neighbors``, theirs.
    duplicates : "keep" (default), "drop" or "error"; see the module notes.
    neighbors : the precomputed :class:`~nnkscope.engine.neighbors.Neighbors` of ``X`` (e.g. the search behind an
        NNK graph) instead of a new search.
    search : the search method for :func:`~nnkscope.engine.neighbors.knn` ("exact", "hnsw", ...).
    n_jobs : threads for the search.
    weights : ``(N,)`` non-negative point multiplicities, or ``(B, N)`` for ``B`` weightings at once (e.g. chunks of
        :func:`~nnkscope.measures.uncertainty.bootstrap_weights`); the search is done once, on ``X`` unweighted, and
        held fixed (see the module notes).  TwoNN takes weights with ``fit="mle"`` and ``discard=0`` only.

    Returns
    -------
    float, or a ``(B,)`` array for 2-D ``weights``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((2000, 3)) @ np.linalg.qr(rng.normal(size=(10, 10)))[0][:3]  # a 3-D cube in R^10
    >>> round(intrinsic_dimension(X), 1), round(intrinsic_dimension(X, "mle"), 1), intrinsic_dimension(X, "pca")
    (2.9, 2.9, 3.0)
    """
    check_choice(method, "method", METHODS)
    W = None if weights is None else _check_weights(weights, X)
    if method == "pca":
        if W is not None and W.ndim == 2:
            return pca_dimension(X, fraction, weights=W).astype(np.float64)
        return float(pca_dimension(X, fraction, weights=W))
    if method == "twonn":
        check_choice(fit, "fit", TWONN_FITS)
        discard = (0.0 if fit == "mle" else 0.1) if discard is None else discard
        if isinstance(discard, bool) or not isinstance(discard, numbers.Real) or not 0 <= discard < 1:
            raise InvalidParameterError(f"discard must be in [0, 1); got {discard!r}")
        if W is not None and (fit != "mle" or discard != 0):
            raise InvalidParameterError("weights work with TwoNN's fit='mle' and discard=0 only (the censored and "
                                        "line fits rank the ratios, which multiplicities do not extend); drop "
                                        "weights or use those settings")
    dist, _, distinct = _distances(X, k, metric, duplicates, neighbors, search, n_jobs)
    if method == "twonn":
        logmu, ok = _twonn_logmu(dist, distinct)
        if not ok.any():
            raise _no_estimate_error(int(len(ok)), 0)
        if W is not None:
            return _twonn_weighted(logmu[ok], W[..., ok])
        return _twonn(logmu[ok], fit, float(discard))
    inv, ok = _mle_inverse(dist, distinct)
    if not ok.any():
        raise _no_estimate_error(int(len(ok)), 0)
    if W is not None:
        return _mle_weighted(inv[ok], W[..., ok])
    mean_inv = inv[ok].mean()
    if mean_inv <= 0:
        raise InvalidParameterError("every point's neighbour distances are equal (a lattice or tied distances): "
                                    "the MLE is undefined here; use a larger k or method='pca'")
    return float(1.0 / mean_inv)


def dimension_from_weights(X, method: str = "twonn", *, k: int | None = None, metric: str | None = None,
                           duplicates: str = "keep", neighbors: Neighbors | None = None, search="exact",
                           n_jobs: int | None = None):
    """The weighted TwoNN or MLE estimate as a function of the weights, with the per-point terms computed once.

    Returns a callable ``f(weights)`` (``(N,)`` or ``(B, N)`` multiplicities) equal to
    ``intrinsic_dimension(X, method, weights=weights, ...)`` without redoing the neighbour pass per call: what a
    bootstrap over many chunks of weights wants.  Parameters as for :func:`intrinsic_dimension` (TwoNN: the
    unbiased MLE fit, no discard).

    Examples
    --------
    >>> X = np.random.default_rng(0).random((500, 2))
    >>> f = dimension_from_weights(X, "mle", k=10)
    >>> f(np.ones(500)) == intrinsic_dimension(X, "mle", k=10)
    True
    """
    check_choice(method, "method", POINTWISE_METHODS)
    dist, _, distinct = _distances(X, k, metric, duplicates, neighbors, search, n_jobs)
    terms, ok = _twonn_logmu(dist, distinct) if method == "twonn" else _mle_inverse(dist, distinct)
    if not ok.any():
        raise _no_estimate_error(int(len(ok)), 0)
    terms = terms[ok]
    estimate = _twonn_weighted if method == "twonn" else _mle_weighted
    n = len(dist)

    def f(weights):
        W = _check_weights(weights, np.empty((n, 0)))
        return estimate(terms, W[..., ok])

    return f


def _check_weights(weights, X) -> np.ndarray:
    W = np.asarray(weights, dtype=np.float64)
    n = len(X) if X is not None else None
    if W.ndim not in (1, 2) or (n is not None and W.shape[-1] != n):
        raise InputShapeError(f"weights must be (N,) or (B, N) with N = {n} rows of X; got shape {W.shape}")
    if not np.isfinite(W).all() or (W < 0).any():
        raise InvalidParameterError("weights must be finite and non-negative (point multiplicities)")
    return W


def _twonn_weighted(logmu: np.ndarray, W: np.ndarray):
    """TwoNN's unbiased MLE with multiplicities; the ratios are summed in sorted order, as :func:`_twonn` does, so
    all-ones weights reproduce it exactly.  NaN where the weights leave fewer than 2 points or all ratios are 1."""
    order = np.argsort(logmu, kind="stable")
    x, Wx = logmu[order], W[..., order]
    m, denom = Wx.sum(axis=-1), (Wx * x).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where((m >= 2) & (denom > 0), (m - 1) / denom, np.nan)
    return float(out) if out.ndim == 0 else out


def _mle_weighted(inv: np.ndarray, W: np.ndarray):
    """``1 / (weighted mean of 1 / m_i)``; NaN where it is undefined (no weight, or all distances tied)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_inv = (W * inv).sum(axis=-1) / W.sum(axis=-1)
        out = np.where(mean_inv > 0, 1.0 / mean_inv, np.nan)
    return float(out) if out.ndim == 0 else out


def pointwise_dimension(X, method: str = "mle", *, k: int | None = None, metric: str | None = None,
                        duplicates: str = "keep", neighbors: Neighbors | None = None, search="exact",
                        n_jobs: int | None = None) -> np.ndarray:
    """Intrinsic dimension around each point: (N,) float64.

    ``"mle"``: the Levina-Bickel estimate ``m_i`` from the point's distinct neighbour distances.  ``"twonn"``: the
    unbiased TwoNN maximum-likelihood estimate over the point and its distinct candidates,
    ``(n_i - 1) / sum_j log mu_j``, with ``mu_j`` each member's own ratio (from the whole data set).  A point whose
    distances (or ratios) are all equal gets ``inf``.  Parameters as for :func:`intrinsic_dimension`.

    Examples
    --------
    >>> X = np.random.default_rng(0).random((3000, 2))
    >>> ids = pointwise_dimension(X, k=20)
    >>> ids.shape, round(float(np.median(ids)), 1)
    ((3000,), 2.0)
    """
    check_choice(method, "method", POINTWISE_METHODS)
    dist, idx, distinct = _distances(X, k, metric, duplicates, neighbors, search, n_jobs)
    if method == "mle":
        inv, ok = _mle_inverse(dist, distinct)
        if not ok.all():
            raise _no_estimate_error(int((~ok).sum()), int(np.flatnonzero(~ok)[0]))
        with np.errstate(divide="ignore"):
            return 1.0 / inv
    logmu, ok = _twonn_logmu(dist, distinct)
    member = distinct & ok[idx]  # distinct candidates that have a ratio of their own
    count = member.sum(axis=1) + ok
    total = np.where(member, logmu[idx], 0.0).sum(axis=1) + logmu
    bad = count < 2
    if bad.any():
        raise _no_estimate_error(int(bad.sum()), int(np.flatnonzero(bad)[0]))
    with np.errstate(divide="ignore"):
        return (count - 1) / total
