"""Bootstrap by point multiplicities: the weights are bootstrap_ci's draws, every weighted estimator equals the plain
estimator on the rows repeated (all-ones weights: bit for bit), and the intervals cover a known truth."""

import numpy as np
import pytest
from scipy.stats import binom

import nnkscope.measures.uncertainty as unc
from nnkscope.engine.neighbors import knn
from nnkscope.errors import InvalidParameterError
from nnkscope.measures.collapse import neural_collapse, separation_fuzziness, weighted_nc1_fuzziness
from nnkscope.measures.intrinsic import dimension_from_weights, intrinsic_dimension, pca_dimension
from nnkscope.measures.spectral import covariance_spectrum, spectral_summary
from nnkscope.measures.uncertainty import (
    bootstrap_ci,
    bootstrap_weights,
    percentile_interval,
    weighted_bootstrap_ci,
    weighted_mean,
    weighted_median,
)


def _counts(n, n_boot, seed):
    """bootstrap_ci's documented draws, counted: the oracle of bootstrap_weights."""
    rng = np.random.default_rng(seed)
    return np.array([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)], dtype=float)


def test_weights_are_bootstrap_ci_draws_and_chunking_changes_nothing(monkeypatch):
    W = np.concatenate(list(bootstrap_weights(37, 25, seed=4)))
    assert np.array_equal(W, _counts(37, 25, 4))
    assert (W.sum(axis=1) == 37).all()
    monkeypatch.setattr(unc, "WEIGHT_CHUNK_ENTRIES", 37 * 3)  # chunks of 3 replicates
    chunks = list(bootstrap_weights(37, 25, seed=4))
    assert [len(c) for c in chunks] == [3] * 8 + [1]
    assert np.array_equal(np.concatenate(chunks), W)
    assert not np.array_equal(np.concatenate(list(bootstrap_weights(37, 25, seed=5))), W)


def test_weighted_mean_and_median_equal_the_repeated_sample():
    r = np.random.default_rng(0)
    for n in (1, 2, 7, 10, 501):
        v = r.normal(size=n).round(1)  # ties included
        W = _counts(n, 30, n)
        for w, m, med in zip(W, weighted_mean(v, W), weighted_median(v, W), strict=True):
            rep = np.repeat(v, w.astype(int))
            assert med == np.median(rep)
            assert m == pytest.approx(rep.mean(), rel=1e-13, abs=1e-15)
        ones = np.ones(n)
        assert weighted_mean(v, ones) == v.mean() and weighted_median(v, ones) == np.median(v)


@pytest.mark.parametrize("entries", [1, 90, 1 << 20])  # one row per chunk, a few rows, all rows in one
def test_weighted_mean_and_median_in_row_chunks_change_no_number(monkeypatch, entries):
    r = np.random.default_rng(11)
    v = r.normal(size=37)
    W = np.vstack([np.ones(37), *unc.bootstrap_weights(37, 9, seed=2)])
    rows_mean = [(w * v).sum() / w.sum() for w in W]  # each row alone, the summation the docstring promises
    rows_median = [np.median(np.repeat(v, w.astype(int))) for w in W]
    monkeypatch.setattr(unc, "_ROW_CHUNK_ENTRIES", entries)
    m, md = unc.weighted_mean(v, W), unc.weighted_median(v, W)
    np.testing.assert_array_equal(m, rows_mean)
    np.testing.assert_array_equal(md, rows_median)
    assert m[0] == v.mean() and md[0] == np.median(v)


def test_weighted_mean_and_median_refuse_values_that_are_not_one_per_point():
    from nnkscope.errors import InputShapeError

    W = np.ones((3, 5))
    for v in (np.ones((3, 5)), np.ones(4)):
        for fn in (unc.weighted_mean, unc.weighted_median):
            with pytest.raises(InputShapeError, match=r"values must be one number per point"):
                fn(v, W)


def test_weighted_bootstrap_of_a_mean_is_bootstrap_ci():
    x = np.random.default_rng(1).normal(size=80)
    low, high = weighted_bootstrap_ci(lambda W: weighted_mean(x, W), len(x), n_boot=300, seed=2, level=0.9)
    ref = bootstrap_ci(np.mean, x, n_boot=300, seed=2, level=0.9)
    assert (low[0], high[0]) == pytest.approx(ref, rel=1e-13)
    # percentile_interval drops non-finite replicates, and gives NaN when none is left
    lo, hi = percentile_interval(np.array([[1.0, np.nan], [np.inf, np.nan], [3.0, np.nan]]), 0.5)
    assert lo.tolist()[0] == 1.5 and hi.tolist()[0] == 2.5 and np.isnan(lo[1]) and np.isnan(hi[1])


@pytest.mark.parametrize("shape", [(300, 12), (40, 90)])  # the d x d route and the N x N route
def test_weighted_spectrum_is_the_spectrum_of_the_repeated_rows(shape):
    r = np.random.default_rng(3)
    X = r.normal(size=shape) * np.geomspace(3, 0.1, shape[1])
    ones = np.ones(len(X))
    assert np.array_equal(covariance_spectrum(X, weights=ones), covariance_spectrum(X))
    assert spectral_summary(X, weights=ones) == spectral_summary(X)
    assert pca_dimension(X, 0.8, weights=ones) == pca_dimension(X, 0.8)
    W = _counts(len(X), 4, 0)
    batch = spectral_summary(X, weights=W)
    dims = pca_dimension(X, 0.8, weights=W)
    for b, w in enumerate(W):
        rep = X[np.repeat(np.arange(len(X)), w.astype(int))]
        lam, lam_rep = covariance_spectrum(X, weights=w), covariance_spectrum(rep)
        np.testing.assert_allclose(lam, lam_rep, rtol=1e-10, atol=1e-12 * lam_rep[0])
        s = spectral_summary(rep)
        for key in ("rankme", "participation_ratio", "stable_rank", "alpha"):
            assert batch[key][b] == pytest.approx(s[key], rel=1e-9), key
        assert dims[b] == pca_dimension(rep, 0.8)
    with pytest.raises(InvalidParameterError, match="weights"):
        covariance_spectrum(X, weights=-ones)


def test_weighted_intrinsic_dimension_holds_the_search_fixed():
    r = np.random.default_rng(4)
    X = r.random((600, 3)) @ r.normal(size=(3, 8))
    nb = knn(X, 10)
    ones = np.ones(len(X))
    for method in ("twonn", "mle", "pca"):
        assert intrinsic_dimension(X, method, neighbors=nb, weights=ones) == intrinsic_dimension(X, method,
                                                                                                   neighbors=nb)
    # oracle: the per-point terms from a brute-force search, repeated w_i times, in the estimators' formulas
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    T = np.sort(D, axis=1)[:, :10]
    logmu = np.log(T[:, 1] / T[:, 0])
    inv = np.log(T[:, -1:] / T[:, :-1]).sum(1) / 9
    W = _counts(len(X), 5, 1)
    twonn = intrinsic_dimension(X, "twonn", neighbors=nb, weights=W)
    mle = intrinsic_dimension(X, "mle", neighbors=nb, weights=W)
    assert np.array_equal(dimension_from_weights(X, "twonn", neighbors=nb)(W), twonn)  # terms computed once
    assert np.array_equal(dimension_from_weights(X, "mle", neighbors=nb)(W), mle)
    for b, w in enumerate(W.astype(int)):
        assert twonn[b] == pytest.approx((w.sum() - 1) / np.repeat(logmu, w).sum(), rel=1e-10)
        assert mle[b] == pytest.approx(1 / np.repeat(inv, w).mean(), rel=1e-10)
    with pytest.raises(InvalidParameterError, match="fit='mle'"):
        intrinsic_dimension(X, "twonn", fit="linear", neighbors=nb, weights=ones)


def test_weighted_class_geometry_is_that_of_the_repeated_rows():
    r = np.random.default_rng(5)
    y = r.integers(0, 4, 400)
    H = r.normal(size=(400, 12)) + 3 * r.normal(size=(4, 12))[y] + 50.0  # an offset: residuals, not raw rows
    W = np.vstack([np.ones(400), _counts(400, 3, 2)])
    nc1, D = weighted_nc1_fuzziness(H, y, 4, W)
    for b, w in enumerate(W.astype(int)):
        rows = np.repeat(np.arange(400), w)
        assert nc1[b] == pytest.approx(neural_collapse(H[rows], y[rows])["nc1"], rel=1e-9)
        assert D[b] == pytest.approx(separation_fuzziness(H[rows], y[rows]), rel=1e-9)
    w = np.ones(400)
    w[y == 2] = 0  # a class missing from a resample: undefined, NaN
    assert np.isnan(weighted_nc1_fuzziness(H, y, 4, w[None])).all()


@pytest.mark.parametrize(("nc_chunk", "basis_entries", "chunk"), [(16, 1 << 22, 16), (256, 3 * 12 * 5, 5)])
def test_weighted_nc1_chunks_and_blocks_equal_the_repeated_rows(monkeypatch, nc_chunk, basis_entries, chunk):
    """More resamples than one chunk (capped by count, or by the memory of K x d means per resample), a class
    missing from one of them, rows in many blocks: every replicate equals neural_collapse / separation_fuzziness
    on the resample's repeated rows."""
    import nnkscope.measures.collapse as col

    monkeypatch.setattr(col, "_BLOCK_ENTRIES", 12 * 50)  # 50-row blocks
    monkeypatch.setattr(col, "_NC_CHUNK", nc_chunk)
    monkeypatch.setattr(col, "_BASIS_ENTRIES", basis_entries)
    r = np.random.default_rng(5)
    y = r.integers(0, 3, 300)
    H = r.normal(size=(300, 12)) + 3 * r.normal(size=(3, 12))[y] - 20.0
    W = _counts(300, chunk + 5, 7).astype(float)
    W[chunk - 1, y == 1] = 0  # the last resample of the first chunk loses class 1
    nc1, D = col.weighted_nc1_fuzziness(H, y, 3, W)
    assert np.isnan(nc1[chunk - 1]) and np.isnan(D[chunk - 1])
    assert np.isfinite(nc1[np.arange(len(W)) != chunk - 1]).all()
    for b, w in enumerate(W.astype(int)):
        if b == chunk - 1:
            continue
        rows = np.repeat(np.arange(300), w)
        assert nc1[b] == pytest.approx(neural_collapse(H[rows], y[rows])["nc1"], rel=1e-9)
        assert D[b] == pytest.approx(separation_fuzziness(H[rows], y[rows]), rel=1e-9)
    # rows grouped by class beforehand (as a layer-wise study passes them) are read as slices: the same numbers
    order = np.argsort(y, kind="stable")
    grouped = col.weighted_nc1_fuzziness(H[order], y[order], 3, W[:, order])
    np.testing.assert_array_equal(grouped[0], nc1)
    np.testing.assert_array_equal(grouped[1], D)


def test_participation_ratio_interval_covers_the_truth():
    # Gaussian data with covariance diag(lam): the population participation ratio is (sum lam)^2 / sum lam^2.
    # 100 seeded data sets of 400 points; the 95 % percentile interval must cover it in at least 88 of them (a
    # Binomial(100, 0.95) draw falls below 88 with probability 0.003; the sample PR's bias is small here)
    lam = np.array([4.0, 2.0, 1.0, 0.5, 0.25])
    truth = lam.sum() ** 2 / (lam**2).sum()
    covered = 0
    for seed in range(100):
        X = np.random.default_rng(seed).normal(size=(400, 5)) * np.sqrt(lam)
        low, high = weighted_bootstrap_ci(lambda W, X=X: spectral_summary(X, weights=W)["participation_ratio"],
                                          len(X), n_boot=200, seed=seed)
        covered += low[0] <= truth <= high[0]
    assert binom.cdf(87, 100, 0.95) < 0.005
    assert covered >= 88, covered
    # the level is used: a 50 % interval covers far less often
    covered50 = 0
    for seed in range(40):
        X = np.random.default_rng(seed).normal(size=(400, 5)) * np.sqrt(lam)
        low, high = weighted_bootstrap_ci(lambda W, X=X: spectral_summary(X, weights=W)["participation_ratio"],
                                          len(X), n_boot=200, seed=seed, level=0.5)
        covered50 += low[0] <= truth <= high[0]
    assert covered50 <= 30, covered50
