"""Spectral summaries against spectra built exactly: isotropic, rank r, power law; both Gram routes; bad input."""

import numpy as np
import pytest

from nnkscope import spectral_summary
from nnkscope.errors import InvalidParameterError, NonFiniteError, TooFewPointsError
from nnkscope.measures.spectral import covariance_spectrum


def _with_spectrum(lam, n, ambient, seed=0):
    """(n, ambient) centred data whose covariance eigenvalues are exactly ``lam`` (then zeros)."""
    r = np.random.default_rng(seed)
    A = r.normal(size=(n, len(lam)))
    A -= A.mean(axis=0)
    U = np.linalg.qr(A)[0]  # orthonormal columns, each orthogonal to the ones vector
    V = np.linalg.qr(r.normal(size=(ambient, ambient)))[0][: len(lam)]
    return (U * np.sqrt(np.asarray(lam) * (n - 1))) @ V + r.normal(size=ambient)  # any mean


def _oracle(lam):
    """The four numbers from their definitions, on the non-zero eigenvalues."""
    lam = np.asarray(lam, dtype=np.float64)
    s = np.sqrt(lam)
    p = s / s.sum()
    return {"rankme": np.exp(-(p * np.log(p)).sum()), "participation_ratio": lam.sum() ** 2 / (lam**2).sum(),
            "stable_rank": lam.sum() / lam.max()}


@pytest.mark.parametrize("n, ambient", [(300, 20), (15, 40)])  # d x d Gram, and N x N Gram
def test_isotropic_and_rank_r_data(n, ambient):
    for r in (1, 3, 7):
        X = _with_spectrum(np.full(r, 2.5), n, ambient, seed=r)
        s = spectral_summary(X)
        for key in ("rankme", "participation_ratio", "stable_rank", "rank"):
            assert s[key] == pytest.approx(r, rel=1e-9), (key, r)
        assert np.isnan(s["alpha"]) if r == 1 else s["alpha"] == pytest.approx(0.0, abs=1e-9)
        np.testing.assert_allclose(covariance_spectrum(X)[:r], 2.5, rtol=1e-9)


def test_isotropic_gaussian_sample():
    X = np.random.default_rng(0).normal(size=(20000, 10))
    s = spectral_summary(X)
    assert 9.9 < s["rankme"] <= 10 and 9.9 < s["participation_ratio"] <= 10
    assert 8.5 < s["stable_rank"] <= 10 and s["rank"] == 10


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_exact_power_law(alpha):
    lam = np.arange(1, 31, dtype=np.float64) ** -alpha
    X = _with_spectrum(lam, 500, 64, seed=3)
    s = spectral_summary(X)
    assert s["alpha"] == pytest.approx(alpha, rel=1e-8)
    assert s["rank"] == 30
    ref = _oracle(lam)
    for key, value in ref.items():
        assert s[key] == pytest.approx(value, rel=1e-9), key
    # a sub-range of the same line gives the same slope; a range past the rank is capped at it
    assert spectral_summary(X, alpha_range=(5, 20))["alpha"] == pytest.approx(alpha, rel=1e-8)
    assert spectral_summary(X, alpha_range=(2, 1000))["alpha"] == pytest.approx(alpha, rel=1e-8)


def test_against_the_singular_values_and_scaling():
    X = np.random.default_rng(1).normal(size=(80, 12)) @ np.random.default_rng(2).normal(size=(12, 12))
    sv = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(covariance_spectrum(X), sv**2 / 79, rtol=1e-10)
    s = spectral_summary(X)
    assert s["stable_rank"] == pytest.approx(np.linalg.norm(X - X.mean(0)) ** 2 / sv[0] ** 2, rel=1e-10)
    p = sv / sv.sum()
    assert s["rankme"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-10)
    big = spectral_summary(1e3 * X + 7)
    for key in s:
        assert big[key] == pytest.approx(s[key], rel=1e-9), key
    # uncentred: the second-moment matrix, as RankMe's authors use
    raw = np.linalg.svd(X, compute_uv=False)
    np.testing.assert_allclose(covariance_spectrum(X, center=False), raw**2 / 79, rtol=1e-10)
    # float32 input and the blocked Gram (many more rows than one block holds)
    Y = np.random.default_rng(4).normal(size=(400_000, 12)).astype(np.float32)
    ref = np.linalg.eigvalsh(np.cov(Y.astype(np.float64), rowvar=False))[::-1]
    np.testing.assert_allclose(covariance_spectrum(Y), ref, rtol=1e-9)


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="constant"):
        spectral_summary(np.full((30, 5), 3.0))
    with pytest.raises(InvalidParameterError, match="constant"):
        spectral_summary(np.zeros((30, 5)), center=False)
    X = np.random.default_rng(0).normal(size=(30, 5))
    X[2, 2] = np.inf
    with pytest.raises(NonFiniteError):
        spectral_summary(X)
    with pytest.raises(TooFewPointsError):
        spectral_summary(np.ones((1, 5)))
    for bad in ((0, 3), (3, 3), (1.0, 4), "all", (1, 2, 3)):
        with pytest.raises(InvalidParameterError, match="alpha_range"):
            spectral_summary(np.random.default_rng(0).normal(size=(30, 5)), alpha_range=bad)
