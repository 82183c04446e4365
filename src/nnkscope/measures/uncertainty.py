"""Uncertainty of a measured number: bootstrap confidence intervals over points, permutation tests against chance.

Both resample *points* (rows), the unit a representation measure averages over, with a seeded
``numpy.random.default_rng`` so that a result can be reproduced exactly.  The statistic is any Python callable
returning a real number; it is called ``n_boot`` / ``n_perm`` + 1 times.

* :func:`bootstrap_ci` -- the percentile bootstrap (Efron): draw ``N`` rows with replacement (the same rows from
  every array, so paired data stay paired), recompute the statistic, and report the ``(1 - level) / 2`` and
  ``(1 + level) / 2`` quantiles of the replicates (``numpy.quantile``, linear interpolation).  Resamples repeat
  rows: a neighbour-based statistic then sees exact duplicates, which :func:`~nnkscope.measures.intrinsic.
  intrinsic_dimension` with ``duplicates="keep"`` handles (zero distances are excluded from its log ratios).
* :func:`permutation_test` -- "is ``statistic(A, B)`` above chance?": the rows of ``B`` are permuted, breaking the
  pairing of points while keeping both sets as they are; the p-value is ``(1 + #{s_perm >= s_obs}) / (1 + n_perm)``
  (Phipson & Smyth 2010: never 0, and exact -- ``P(p <= a) <= a`` -- under exchangeability).
* :func:`bootstrap_weights` / :func:`weighted_bootstrap_ci` -- the same resamples as *multiplicities*: replicate
  ``b`` is the vector ``w_b = bincount(rng.integers(0, N, N))`` (the rows :func:`bootstrap_ci` would draw with the
  same seed, counted), so a statistic written for weighted points never sees a repeated row and can reuse what does
  not depend on the resample (a neighbour search, per-point terms, a projection).  With ``w = 1`` such a statistic
  is the plain estimate.  The weights come in chunks of at most :data:`WEIGHT_CHUNK_ENTRIES` numbers (128 MiB), so
  memory does not grow with ``n_boot``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator

import numpy as np

from .._validate import check_choice, check_positive_int
from ..errors import InputShapeError, InvalidParameterError, TooFewPointsError

__all__ = ["bootstrap_ci", "permutation_test", "bootstrap_weights", "weighted_bootstrap_ci", "percentile_interval",
           "weighted_mean", "weighted_median", "WEIGHT_CHUNK_ENTRIES"]

ALTERNATIVES = ("greater", "less")
WEIGHT_CHUNK_ENTRIES = 1 << 24  # float64 weights per chunk of replicates: 128 MiB (200 resamples of 80,000 points)


def _as_rows(arrays) -> tuple[list[np.ndarray], int]:
    if not arrays:
        raise InvalidParameterError("pass at least one array to resample (its rows are the points)")
    out = [np.asarray(a) for a in arrays]
    for i, a in enumerate(out):
        if a.ndim == 0:
            raise InputShapeError(f"array {i} is a scalar; pass arrays whose first axis indexes the points")
    n = len(out[0])
    if any(len(a) != n for a in out):
        raise InputShapeError(f"every array must have one row per point; got lengths {[len(a) for a in out]}")
    if n < 2:
        raise TooFewPointsError(f"resampling needs at least 2 points; got {n}")
    return out, n


def _value(statistic, args, what: str) -> float:
    v = statistic(*args)
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"statistic must return a real number; got {type(v).__name__} on {what}") \
            from None
    if not np.isfinite(v):
        raise InvalidParameterError(f"statistic returned {v} on {what}; make it finite on every resample (e.g. "
                                    "guard divisions by zero)")
    return v


def _check_level(level) -> None:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise InvalidParameterError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic(*arrays)`` over the points (rows).

    Parameters
    ----------
    statistic : callable taking the arrays (resampled) and returning a real number.
    *arrays : arrays with one row per point, resampled with the same row indices.
    n_boot : bootstrap replicates.
    level : confidence level in (0, 1).
    seed : seed of the resampling.

    Returns
    -------
    (low, high)

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(loc=3.0, size=200)
    >>> low, high = bootstrap_ci(np.mean, x, n_boot=500)
    >>> bool(low < 3.0 < high), bool(high - low < 0.4)
    (True, True)
    """
    arrays, n = _as_rows(arrays)
    n_boot = check_positive_int(n_boot, "n_boot")
    _check_level(level)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        reps[b] = _value(statistic, [a[idx] for a in arrays], f"bootstrap replicate {b}")
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def permutation_test(statistic: Callable[[np.ndarray, np.ndarray], float], A, B, n_perm: int = 1000, *,
                     seed: int = 0, alternative: str = "greater") -> float:
    """p-value of ``statistic(A, B)`` against its values with the rows of ``B`` randomly permuted.

    Parameters
    ----------
    statistic : callable ``(A, B) -> float``, e.g. a similarity of two representations of the same points.
    A, B : arrays with one row per point (the same points, in the same order).
    n_perm : permutations.
    seed : seed of the permutations.
    alternative : "greater" (default: is the statistic larger than chance?) or "less".

    Returns
    -------
    float in ``[1 / (n_perm + 1), 1]``: ``(1 + #{s_perm >= s_obs}) / (1 + n_perm)`` (``<=`` for "less").

    Examples
    --------
    >>> A = np.random.default_rng(0).normal(size=(50, 3))
    >>> corr = lambda a, b: float(np.corrcoef(a[:, 0], b[:, 0])[0, 1])
    >>> permutation_test(corr, A, A, n_perm=99)  # identical sets: no permutation does as well
    0.01
    """
    (A, B), _ = _as_rows((A, B))
    n_perm = check_positive_int(n_perm, "n_perm")
    check_choice(alternative, "alternative", ALTERNATIVES)
    observed = _value(statistic, (A, B), "the data")
    rng = np.random.default_rng(seed)
    hits = 0
    for b in range(n_perm):
        s = _value(statistic, (A, B[rng.permutation(len(B))]), f"permutation {b}")
        hits += s >= observed if alternative == "greater" else s <= observed
    return (1 + hits) / (1 + n_perm)


def bootstrap_weights(n: int, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Multinomial point multiplicities of ``n_boot`` bootstrap resamples of ``n`` points, in chunks.

    Yields float64 arrays of shape ``(b, n)`` (``b`` replicates at a time, at most :data:`WEIGHT_CHUNK_ENTRIES`
    numbers per chunk); every row sums to ``n``.  Replicate ``r`` counts the rows ``rng.integers(0, n, n)`` that
    :func:`bootstrap_ci` draws for its replicate ``r`` with the same seed, so the chunking never changes a result.

    Examples
    --------
    >>> W = np.concatenate(list(bootstrap_weights(5, 3, seed=0)))
    >>> W.shape, W.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    n = check_positive_int(n, "n")
    n_boot = check_positive_int(n_boot, "n_boot")
    rng = np.random.default_rng(seed)
    step = max(1, WEIGHT_CHUNK_ENTRIES // n)
    for lo in range(0, n_boot, step):
        W = np.empty((min(step, n_boot - lo), n))
        for b in range(len(W)):
            W[b] = np.bincount(rng.integers(0, n, n), minlength=n)
        yield W


def percentile_interval(replicates, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` percentile interval of bootstrap replicates along axis 0 (``numpy.quantile``, linear).

    Non-finite replicates (a resample on which the statistic is undefined) are left out; a column with no finite
    replicate gets NaN.

    Examples
    --------
    >>> percentile_interval(np.array([[1.0], [2.0], [3.0], [np.nan]]), level=0.5)
    (array([1.5]), array([2.5]))
    """
    _check_level(level)
    R = np.asarray(replicates, dtype=np.float64)
    R = R.reshape(len(R), -1)
    low, high = np.full(R.shape[1], np.nan), np.full(R.shape[1], np.nan)
    for j in range(R.shape[1]):
        r = R[:, j][np.isfinite(R[:, j])]
        if r.size:
            low[j], high[j] = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return low, high


def weighted_bootstrap_ci(statistic: Callable[[np.ndarray], np.ndarray], n: int, *, n_boot: int = 200,
                          level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of a statistic of weighted points, over ``n`` points (seeded).

    Parameters
    ----------
    statistic : callable taking a ``(b, n)`` array of point multiplicities (a chunk of
        :func:`bootstrap_weights`) and returning ``(b,)`` or ``(b, m)`` values (``m`` statistics at once).  With
        all-ones weights it should return the plain estimate.
    n : number of points.
    n_boot, level, seed : replicates, confidence level, seed.

    Returns
    -------
    (low, high) : arrays of ``m`` values (``m = 1`` for a scalar statistic).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(loc=3.0, size=200)
    >>> low, high = weighted_bootstrap_ci(lambda W: weighted_mean(x, W), len(x), n_boot=500)
    >>> bool(np.allclose([low[0], high[0]], bootstrap_ci(np.mean, x, n_boot=500), rtol=1e-12))  # the same draws
    True
    """
    reps = [np.asarray(statistic(W), dtype=np.float64).reshape(len(W), -1)
            for W in bootstrap_weights(n, n_boot, seed)]
    return percentile_interval(np.concatenate(reps), level)


def weighted_mean(values, W) -> np.ndarray:
    """``sum_i w_i v_i / sum_i w_i`` for each row of weights ``W`` (``(b, n)`` or ``(n,)``).

    All-ones weights give exactly ``values.mean()`` (the same pairwise summation).

    Examples
    --------
    >>> weighted_mean(np.array([1.0, 2.0, 4.0]), np.array([[1.0, 1, 1], [0, 0, 3]])).tolist()
    [2.3333333333333335, 4.0]
    """
    v = np.asarray(values, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    _check_values(v, W)
    Wm = np.atleast_2d(W)
    out = np.empty(len(Wm))
    for lo, hi in _row_chunks(Wm):  # each row is its own pairwise sum: chunks change no number, only the memory
        out[lo:hi] = (Wm[lo:hi] * v).sum(axis=-1) / Wm[lo:hi].sum(axis=-1)
    return out if W.ndim == 2 else out[0]


def weighted_median(values, W) -> np.ndarray:
    """The median of each resample given as multiplicities (rows of ``W``, integer counts): ``numpy.median`` of
    the repeated values, without repeating them.  All-ones weights give ``numpy.median(values)``.

    Examples
    --------
    >>> weighted_median(np.array([3.0, 1.0, 2.0]), np.array([[1.0, 1, 1], [0, 2, 2], [3, 0, 0]])).tolist()
    [2.0, 1.5, 3.0]
    """
    v = np.asarray(values, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    _check_values(v, W)
    Wm = np.atleast_2d(W)
    order = np.argsort(v, kind="stable")
    sv = v[order]
    out = np.empty(len(Wm))
    for lo, hi in _row_chunks(Wm):
        cum = np.cumsum(Wm[lo:hi, order], axis=1)
        half = (cum[:, -1] - 1) / 2  # 0-based position of the middle of each sorted resample
        for r in range(hi - lo):  # the element at position p is the first whose cumulative count exceeds p
            a, b = np.searchsorted(cum[r], [np.floor(half[r]), np.ceil(half[r])], side="right")
            out[lo + r] = (sv[a] + sv[b]) / 2
    return out if W.ndim == 2 else out[0]


# weights per temporary in weighted_mean / weighted_median: 8 MB.  A chunk of bootstrap_weights
# (WEIGHT_CHUNK_ENTRIES, 128 MiB) is made once per chunk of resamples; these temporaries, once per statistic
_ROW_CHUNK_ENTRIES = 1 << 20


def _check_values(v: np.ndarray, W: np.ndarray) -> None:
    if v.ndim != 1 or W.ndim not in (1, 2) or W.shape[-1] != len(v):
        raise InputShapeError(f"values must be one number per point, shape (n,), and W of shape (n,) or (b, n); got "
                              f"values {v.shape} and W {W.shape}")


def _row_chunks(W: np.ndarray):
    """Row ranges of ``W`` of at most :data:`_ROW_CHUNK_ENTRIES` entries.  Why: a ``(b, N)`` temporary per call
    (80 MB for 200 resamples of 50,000 points) is fresh memory from the system each time, page faults and all;
    8 MB temporaries are reused from the heap."""
    step = max(1, _ROW_CHUNK_ENTRIES // max(1, W.shape[1]))
    return [(lo, min(len(W), lo + step)) for lo in range(0, len(W), step)]
