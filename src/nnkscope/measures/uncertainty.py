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
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from .._validate import check_choice, check_positive_int
from ..errors import InputShapeError, InvalidParameterError, TooFewPointsError

__all__ = ["bootstrap_ci", "permutation_test"]

ALTERNATIVES = ("greater", "less")


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
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise InvalidParameterError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")
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
