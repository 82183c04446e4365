"""First-order bootstrap spectra (``first_order_spectra``): exact at unit weights, second-order error in the
perturbation (the error shrinks 4x when the perturbation halves), both Gram routes, and bootstrap intervals of
the spectral summaries that agree with the exact resampling."""

import numpy as np
import pytest

from nnkscope.errors import InvalidParameterError
from nnkscope.measures.spectral import covariance_eigen, covariance_spectrum, first_order_spectra, summarize_spectrum
from nnkscope.measures.uncertainty import bootstrap_weights, percentile_interval


def _points(n, d, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, d)) * np.geomspace(3.0, 0.3, d) + 2.0  # distinct eigenvalues, an offset to centre


@pytest.mark.parametrize("n, d", [(300, 12), (15, 40)])  # d <= N (d x d Gram) and d > N (N x N Gram)
def test_unit_weights_give_the_spectrum_and_the_error_is_second_order(n, d):
    X = _points(n, d)
    np.testing.assert_allclose(first_order_spectra(X, np.ones((1, n)))[0], covariance_spectrum(X), rtol=1e-10,
                               atol=1e-12 * covariance_spectrum(X)[0])
    u = np.random.default_rng(1).uniform(-1, 1, n)
    u -= u.mean()
    errors = []
    for eps in (0.04, 0.02, 0.01):
        w = 1.0 + eps * u
        exact = covariance_spectrum(X, weights=w)
        approx = first_order_spectra(X, w[None])[0]
        np.testing.assert_allclose(approx.sum(), exact.sum(), rtol=1e-10)  # the trace is exact
        errors.append(np.abs(approx - exact).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.0) & (ratios < 5.0)), ratios  # O(eps^2): halving eps divides the error by 4


def test_no_centring_uses_the_second_moment():
    X = _points(200, 6)
    w = np.random.default_rng(2).multinomial(200, np.full(200, 1 / 200), size=3).astype(float)
    exact = np.array([covariance_spectrum(X, weights=r, center=False) for r in w])
    approx = first_order_spectra(X, w, center=False)
    np.testing.assert_allclose(approx.sum(axis=1), exact.sum(axis=1), rtol=1e-10)
    assert np.abs(approx - exact).max() < 0.02 * exact.max()


def test_bootstrap_intervals_of_the_summaries_agree_with_exact_resampling():
    """Percentile intervals from 300 resamples: the first-order endpoints sit within 10% of the exact interval's
    width (N = 3000: the second-order term is ~N^-1/2 of the first-order one)."""
    X = _points(3000, 15, seed=3)
    W = np.concatenate(list(bootstrap_weights(len(X), 300, seed=0)))
    exact = [summarize_spectrum(covariance_spectrum(X, weights=w)) for w in W]
    approx = [summarize_spectrum(lam) for lam in first_order_spectra(X, W)]
    for key in ("rankme", "participation_ratio", "stable_rank", "alpha"):
        lo_e, hi_e = percentile_interval(np.array([r[key] for r in exact]))
        lo_a, hi_a = percentile_interval(np.array([r[key] for r in approx]))
        width = hi_e - lo_e
        assert width > 0 and abs(lo_a - lo_e) < 0.1 * width and abs(hi_a - hi_e) < 0.1 * width, key


def test_bad_weights_and_a_zero_replicate():
    X = _points(50, 4)
    with pytest.raises(InvalidParameterError, match="weights must be a"):
        first_order_spectra(X, np.ones(50))
    with pytest.raises(InvalidParameterError, match="sum to more than 1"):
        first_order_spectra(X, np.zeros((1, 50)))
    w = np.zeros((1, 50))
    w[0, 7] = 5.0  # one point repeated: no variance
    assert np.isnan(first_order_spectra(X, w)).all()


@pytest.mark.parametrize("n, d", [(300, 12), (15, 40)])
def test_covariance_eigen_is_the_spectrum_and_the_principal_coordinates(n, d, monkeypatch):
    """One decomposition serves everything: its values are covariance_spectrum's, its coordinates are the
    centred rows' principal scores (an SVD oracle, up to each axis's sign), and first_order_spectra given it
    equals first_order_spectra computing its own."""
    import nnkscope.measures.spectral as spectral

    monkeypatch.setattr(spectral, "_BLOCK_ENTRIES", 7 * d)  # coordinates in 7-row blocks
    X = _points(n, d)
    e = covariance_eigen(X)
    np.testing.assert_allclose(e.values, covariance_spectrum(X), rtol=1e-12, atol=1e-14 * e.values[0])
    U, S, _ = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    scores = U * S
    coords = e.coordinates(X)
    r = int(np.count_nonzero(e.values))
    for j in range(r):  # each principal axis up to its sign
        sign = np.sign(coords[:, j] @ scores[:, j])
        np.testing.assert_allclose(sign * coords[:, j], scores[:, j], atol=1e-9 * S[0])
    np.testing.assert_allclose(e.coordinates(X, 5, 19, axes=2), coords[5:19, :2], rtol=0, atol=1e-12 * S[0])
    W = np.vstack([np.ones(n), np.random.default_rng(2).multinomial(n, np.full(n, 1 / n), size=3)])
    np.testing.assert_allclose(first_order_spectra(X, W, eigen=e), first_order_spectra(X, W), rtol=1e-12,
                               atol=1e-14 * e.values[0])
    with pytest.raises(InvalidParameterError, match="eigen was computed for other data"):
        first_order_spectra(X[:-1], W[:, :-1], eigen=e)
    with pytest.raises(InvalidParameterError, match="eigen was computed for other data"):
        first_order_spectra(X, W, center=False, eigen=e)
