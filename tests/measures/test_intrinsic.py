"""Intrinsic dimension: known answers on flat balls and spheres (d = 1..6) embedded in R^12, the formulas against a
brute-force oracle written from the papers, the duplicate rule, bad input, and agreement with scikit-dimension."""

import numpy as np
import pytest
from helpers import brute_knn

import nnkscope
from nnkscope import knn
from nnkscope.errors import (
    DuplicatePointsError,
    InputShapeError,
    InvalidParameterError,
    NonFiniteError,
    TooFewPointsError,
)
from nnkscope.measures.intrinsic import intrinsic_dimension, pca_dimension, pointwise_dimension


def _embed(Y, ambient=12, seed=0):
    Q = np.linalg.qr(np.random.default_rng(seed + 1000).normal(size=(ambient, ambient)))[0]
    return Y @ Q[: Y.shape[1]]


def _flat(n, d, seed):
    """Uniform in the unit d-ball: a piece of a d-plane (a ball has less boundary bias than a cube)."""
    r = np.random.default_rng(seed)
    G = r.normal(size=(n, d))
    return _embed(G / np.linalg.norm(G, axis=1, keepdims=True) * r.random((n, 1)) ** (1 / d), seed=seed)


def _sphere(n, d, seed):
    """Uniform on the d-sphere S^d (d + 1 coordinates)."""
    G = np.random.default_rng(seed).normal(size=(n, d + 1))
    return _embed(G / np.linalg.norm(G, axis=1, keepdims=True), seed=seed)


@pytest.mark.parametrize("d", range(1, 7))
def test_known_dimension_of_planes_and_spheres(d):
    n = 2500 if d <= 3 else 5000  # boundary bias of the flat ball grows with d
    for name, X in (("flat", _flat(n, d, seed=d)), ("sphere", _sphere(n, d, seed=d))):
        nb_ = knn(X, 10)  # one search shared by both estimators
        twonn = intrinsic_dimension(X, neighbors=nb_)
        mle = intrinsic_dimension(X, "mle", neighbors=nb_)
        assert abs(twonn - d) / d < 0.10, (name, twonn)
        assert abs(mle - d) / d < 0.10, (name, mle)
        if name == "flat":  # linear data: PCA is exact
            assert intrinsic_dimension(X, "pca") == d
            assert pca_dimension(X, 1.0) == d


def test_formulas_against_a_brute_force_oracle(rng):
    X = _sphere(400, 3, seed=7) + 0.01 * rng.normal(size=(400, 12))
    n, k = len(X), 10
    idx, D = brute_knn(X, k)
    logmu = np.log(D[:, 1] / D[:, 0])
    # TwoNN: unbiased MLE, censored MLE, and Facco's line through the origin
    assert intrinsic_dimension(X, k=k) == pytest.approx((n - 1) / logmu.sum(), rel=1e-12)
    x = np.sort(logmu)
    m = int(n * 0.8)
    censored = (m - 1) / (x[:m].sum() + (n - m) * x[m - 1])
    assert intrinsic_dimension(X, k=k, discard=0.2) == pytest.approx(censored, rel=1e-12)
    m = int(n * 0.9)
    y = -np.log(1 - np.arange(1, m + 1) / n)
    slope = np.linalg.lstsq(x[:m, None], y, rcond=None)[0][0]
    assert intrinsic_dimension(X, k=k, fit="linear") == pytest.approx(slope, rel=1e-12)
    # Levina-Bickel per point, MacKay-Ghahramani average of the inverses
    inv = np.log(D[:, -1:] / D[:, :-1]).sum(axis=1) / (k - 1)
    np.testing.assert_allclose(pointwise_dimension(X, "mle", k=k), 1 / inv, rtol=1e-12)
    assert intrinsic_dimension(X, "mle", k=k) == pytest.approx(1 / inv.mean(), rel=1e-12)
    # pointwise TwoNN: the unbiased MLE over the point and its k neighbours' ratios
    members = np.c_[np.arange(n), idx]
    np.testing.assert_allclose(pointwise_dimension(X, "twonn", k=k), k / logmu[members].sum(axis=1), rtol=1e-12)
    # a shared search gives the same numbers as an internal one; k takes a prefix of it
    nb_ = knn(X, 15)
    assert intrinsic_dimension(X, "mle", k=k, neighbors=nb_) == intrinsic_dimension(X, "mle", k=k)


def test_cosine_uses_the_chord_distance(rng):
    X = _sphere(600, 2, seed=3) + 3.0  # off-centre, so directions and positions differ
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    for method in ("twonn", "mle"):
        assert intrinsic_dimension(X, method, metric="cosine", k=10) == pytest.approx(
            intrinsic_dimension(U, method, k=10), rel=1e-7)


def test_duplicates_give_the_estimate_of_the_deduplicated_data():
    X = _flat(800, 3, seed=1)
    n = len(X)
    X2 = np.vstack([X, X])  # every point twice
    base = pointwise_dimension(X, "mle", k=10)
    # keep: own copy (distance 0) + 10 neighbours twice = 21 candidates, 10 of them distinct
    np.testing.assert_allclose(pointwise_dimension(X2, "mle", k=21), np.tile(base, 2), rtol=1e-12)
    # drop: the own copy is never a candidate; 20 candidates = 10 distinct neighbours
    np.testing.assert_allclose(pointwise_dimension(X2, "mle", k=20, duplicates="drop"), np.tile(base, 2), rtol=1e-12)
    # TwoNN: each ratio twice -> (2n - 1) / (2 S) against (n - 1) / S
    assert intrinsic_dimension(X2) == pytest.approx(intrinsic_dimension(X) * (2 * n - 1) / (2 * n - 2), rel=1e-12)
    with pytest.raises(DuplicatePointsError, match="duplicate"):
        intrinsic_dimension(X2, duplicates="error")
    with pytest.raises(DuplicatePointsError):
        intrinsic_dimension(X2, "mle", neighbors=knn(X2, 5), duplicates="error")
    # cosine copies are rows with the same direction, not identical rows
    Xc = np.vstack([X + 5.0, 2.0 * (X + 5.0)])
    np.testing.assert_allclose(pointwise_dimension(Xc, "mle", k=21, metric="cosine"),
                               np.tile(pointwise_dimension(X + 5.0, "mle", k=10, metric="cosine"), 2), rtol=1e-6)


def test_a_bootstrap_resample_keeps_its_dimension():
    # a resample repeats ~26 % of the rows; a neighbour's copy would tie r2 = r1 at ~40 % of the points and push
    # TwoNN from ~3 to ~4.7 if copies of neighbours were not recognised
    X = _flat(3000, 3, seed=2)
    B = X[np.random.default_rng(0).integers(0, len(X), len(X))]
    for method in ("twonn", "mle"):
        full, boot = intrinsic_dimension(X, method), intrinsic_dimension(B, method)
        assert np.isfinite(boot) and abs(boot - full) / full < 0.08, (method, full, boot)


def test_many_copies_of_one_point():
    X = np.vstack([_flat(300, 2, seed=4), np.repeat(np.ones((1, 12)), 30, axis=0)])
    for method in ("twonn", "mle"):
        # keep: the 30 copies see only each other within k = 20 and are left out of the global estimate
        assert np.isfinite(intrinsic_dimension(X, method))
        assert np.isfinite(pointwise_dimension(X, method, duplicates="drop")).all()
        with pytest.raises(TooFewPointsError, match="distinct neighbours"):
            pointwise_dimension(X, method)


def test_bad_input():
    X = _flat(200, 2, seed=5)
    with pytest.raises(InvalidParameterError, match="constant"):
        intrinsic_dimension(np.ones((50, 4)))
    with pytest.raises(InvalidParameterError, match="constant"):
        intrinsic_dimension(np.ones((50, 4)), "pca")
    with pytest.raises(InvalidParameterError, match="constant"):
        pointwise_dimension(np.ones((50, 4)))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteError):
        intrinsic_dimension(bad)
    with pytest.raises(NonFiniteError):
        intrinsic_dimension(bad, "pca")
    with pytest.raises(TooFewPointsError, match="at most 199"):
        intrinsic_dimension(X, "mle", k=200)
    with pytest.raises(TooFewPointsError):
        intrinsic_dimension(X[:2])
    with pytest.raises(InvalidParameterError, match="at least 2"):
        intrinsic_dimension(X, k=1)
    with pytest.raises(InvalidParameterError, match="method"):
        intrinsic_dimension(X, "danco")
    with pytest.raises(InvalidParameterError, match="method"):
        pointwise_dimension(X, "pca")
    with pytest.raises(InvalidParameterError, match="discard"):
        intrinsic_dimension(X, discard=1.0)
    with pytest.raises(InvalidParameterError, match="discard > 0"):
        intrinsic_dimension(X, fit="linear", discard=0.0)
    with pytest.raises(InvalidParameterError, match="fraction"):
        intrinsic_dimension(X, "pca", fraction=0.0)
    with pytest.raises(InputShapeError, match="same points"):
        intrinsic_dimension(X[:100], neighbors=knn(X, 5))
    with pytest.raises(InvalidParameterError, match="hold 5"):
        intrinsic_dimension(X, k=6, neighbors=knn(X, 5))
    with pytest.raises(InvalidParameterError, match="searched with"):
        intrinsic_dimension(X, metric="cosine", neighbors=knn(X, 5))
    # an integer lattice: every point's two nearest neighbours are both at distance 1
    grid = np.stack(np.meshgrid(np.arange(20.0), np.arange(20.0)), -1).reshape(-1, 2)
    with pytest.raises(InvalidParameterError, match="lattice"):
        intrinsic_dimension(grid)
    assert np.isfinite(intrinsic_dimension(grid, "mle", k=20))  # distances differ beyond the first shell


def test_exported_from_the_package():
    assert nnkscope.intrinsic_dimension is intrinsic_dimension
    assert "intrinsic_dimension" in nnkscope.__all__ and "spectral_summary" in nnkscope.__all__


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # skdim's log(0) in its unused fit arrays
def test_agrees_with_scikit_dimension():
    """Same formulas as skdim 0.5 (TwoNN 'mle' and 'linear', MLE with comb='mle'): equal to 1e-9 relative, the
    only difference being how the neighbour distances are rounded."""
    skdim = pytest.importorskip("skdim")
    noise = 0.01 * np.random.default_rng(0).normal(size=(1000, 12))
    for X in (_sphere(1000, 4, seed=11), _flat(1000, 5, seed=12) + noise):
        assert intrinsic_dimension(X) == pytest.approx(
            skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(X).dimension_, rel=1e-9)
        assert intrinsic_dimension(X, fit="linear") == pytest.approx(
            skdim.id.TwoNN(method="linear", discard_fraction=0.1).fit(X).dimension_, rel=1e-9)
        assert intrinsic_dimension(X, discard=0.1) == pytest.approx(
            skdim.id.TwoNN(method="mle", discard_fraction=0.1).fit(X).dimension_, rel=1e-9)
        ref = skdim.id.MLE().fit(X, n_neighbors=20)
        assert intrinsic_dimension(X, "mle", k=20) == pytest.approx(ref.dimension_, rel=1e-9)
        np.testing.assert_allclose(pointwise_dimension(X, "mle", k=20), ref.dimension_pw_, rtol=1e-9)
