"""Bootstrap coverage on a known distribution, permutation p-values under the null and for identical sets."""

import numpy as np
import pytest
from scipy.stats import binom

from nnkscope.errors import InputShapeError, InvalidParameterError, TooFewPointsError
from nnkscope.measures.compare import linear_cka
from nnkscope.measures.intrinsic import intrinsic_dimension
from nnkscope.measures.uncertainty import bootstrap_ci, permutation_test


def _bounds(n, p, tail=1e-4):
    """Central binomial interval holding all but ``tail`` of Binomial(n, p)."""
    return binom.ppf(tail / 2, n, p), binom.isf(tail / 2, n, p)


def test_bootstrap_ci_covers_the_true_mean_at_its_level():
    # 200 seeded data sets of 100 N(mu, 2^2) draws; the percentile interval's coverage of the mean is ~0.95 (slightly
    # under for small n, about 0.945 at n = 100): the count must be a plausible Binomial(200, 0.945) draw
    mu, reps, covered = 1.7, 200, 0
    for seed in range(reps):
        x = np.random.default_rng(seed).normal(mu, 2.0, size=100)
        low, high = bootstrap_ci(np.mean, x, n_boot=300, seed=seed)
        covered += low <= mu <= high
    lo, hi = _bounds(reps, 0.945)
    assert lo <= covered <= hi, covered
    # and a 50 % interval covers about half as often (the level is used, not just the spread)
    covered50 = sum(low <= mu <= high for low, high in (
        bootstrap_ci(np.mean, np.random.default_rng(s).normal(mu, 2.0, size=100), n_boot=200, level=0.5, seed=s)
        for s in range(100)))
    lo, hi = _bounds(100, 0.5)
    assert lo <= covered50 <= hi, covered50


def test_bootstrap_is_seeded_paired_and_percentile():
    x = np.random.default_rng(0).normal(size=50)
    y = 2 * x + 1
    assert bootstrap_ci(np.mean, x, n_boot=300, seed=3) == bootstrap_ci(np.mean, x, n_boot=300, seed=3)
    assert bootstrap_ci(np.mean, x, n_boot=300, seed=3) != bootstrap_ci(np.mean, x, n_boot=300, seed=4)
    # the same rows are drawn from every array: an exact linear relation survives every resample
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    low, high = bootstrap_ci(corr, x, y, n_boot=200)
    assert low == pytest.approx(1.0, abs=1e-12) and high == pytest.approx(1.0, abs=1e-12)
    # percentile method: the replicate quantiles themselves, reproduced from the documented draws
    rng = np.random.default_rng(5)
    reps = [np.mean(x[rng.integers(0, 50, 50)]) for _ in range(300)]
    assert bootstrap_ci(np.mean, x, n_boot=300, seed=5, level=0.9) == tuple(np.quantile(reps, [0.05, 0.95]))


def test_bootstrap_of_a_neighbour_statistic_has_no_nan():
    # resamples repeat rows; the intrinsic-dimension estimators skip the copies
    r = np.random.default_rng(1)
    X = r.random((800, 2)) @ np.linalg.qr(r.normal(size=(6, 6)))[0][:2]
    low, high = bootstrap_ci(lambda Z: intrinsic_dimension(Z, "mle", k=10), X, n_boot=10)
    assert 1.8 < low <= high < 2.2


def test_permutation_p_values_are_uniform_under_the_null():
    # 300 independent pairs: P(p <= a) <= a exactly for the +1 estimator, so the counts at a = 0.05 and 0.5 are
    # Binomial draws with (at most) those rates
    # sum a_i b_i: under permutation it orders the pairings exactly as the correlation does, at a fraction of the cost
    stat = lambda a, b: float(a[:, 0] @ b[:, 0])  # noqa: E731
    ps = np.array([permutation_test(stat, *np.random.default_rng(s).normal(size=(2, 40, 1)), n_perm=99, seed=s)
                   for s in range(300)])
    assert ps.min() >= 0.01 and ps.max() <= 1.0
    for a in (0.05, 0.2, 0.5):
        lo, hi = _bounds(300, a)
        assert lo <= np.sum(ps <= a) <= hi, (a, np.sum(ps <= a))


def test_permutation_identical_and_related_sets():
    A = np.random.default_rng(0).normal(size=(60, 5))
    assert permutation_test(linear_cka, A, A, n_perm=199) == 1 / 200
    assert permutation_test(linear_cka, A, A @ np.random.default_rng(1).normal(size=(5, 8)), n_perm=199) == 1 / 200
    # "less": a statistic that is small for related sets
    dist = lambda a, b: float(np.linalg.norm(a - b))  # noqa: E731
    assert permutation_test(dist, A, A + 0.01, n_perm=99, alternative="less") == 0.01
    assert permutation_test(dist, A, A + 0.01, n_perm=99) == 1.0
    assert permutation_test(linear_cka, A, A, n_perm=50, seed=7) == permutation_test(linear_cka, A, A, n_perm=50,
                                                                                    seed=7)


def test_bad_input():
    x = np.arange(10.0)
    with pytest.raises(InputShapeError, match="one row per point"):
        bootstrap_ci(lambda a, b: 0.0, x, x[:5])
    with pytest.raises(TooFewPointsError):
        bootstrap_ci(np.mean, x[:1])
    with pytest.raises(InvalidParameterError, match="at least one array"):
        bootstrap_ci(np.mean)
    with pytest.raises(InvalidParameterError, match="level"):
        bootstrap_ci(np.mean, x, level=95)
    with pytest.raises(InvalidParameterError, match="n_boot"):
        bootstrap_ci(np.mean, x, n_boot=0)
    with pytest.raises(InvalidParameterError, match="finite"):
        bootstrap_ci(lambda a: np.nan, x)
    with pytest.raises(InvalidParameterError, match="real number"):
        bootstrap_ci(lambda a: "x", x)
    with pytest.raises(InvalidParameterError, match="alternative"):
        permutation_test(lambda a, b: 0.0, x, x, alternative="two-sided")
    with pytest.raises(InputShapeError):
        permutation_test(lambda a, b: 0.0, x, x[:3])
