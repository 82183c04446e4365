"""Manifold graph metrics on synthetic manifolds with known answers, and against brute-force oracles."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import subspace_angles

from nnkscope import nnk_graph
from nnkscope.errors import InputShapeError, InvalidParameterError
from nnkscope.measures.labels import class_homogeneity, cross_class_fraction, dirichlet_energy, label_propagation
from nnkscope.measures.manifold import curvature, local_dimension, local_geometry, polytope_diameter, tangent_spaces
from nnkscope.measures.metrics import point_metrics
from nnkscope.nn.datasets import make_manifold

D_AMBIENT = 10


def plane(m, n=1500, seed=0):
    return make_manifold("plane", n, dim=m, ambient=D_AMBIENT, seed=seed)


def sphere(dim, n, r=1.0, seed=0):
    return make_manifold("sphere", n, dim=dim, radius=r, ambient=D_AMBIENT, seed=seed)


def swiss_roll(n=1500, seed=0):
    return make_manifold("swiss_roll", n, ambient=D_AMBIENT, seed=seed)


@pytest.fixture(scope="module")
def planes():
    out = {}
    for m in range(1, 6):
        X = plane(m)
        G = nnk_graph(X, 30)
        ids, _ = local_dimension(X, G.candidates, G.theta)
        out[m] = (G.n_neighbors.mean(), np.median(ids))
    return out


def test_nnk_degree_grows_with_intrinsic_dimension(planes):
    degrees = [planes[m][0] for m in range(1, 6)]
    assert all(b > a + 1 for a, b in zip(degrees, degrees[1:], strict=False))
    assert degrees[0] == pytest.approx(2.0, abs=0.1)  # a line: one neighbour on each side


def test_local_dimension_is_exact_up_to_three(planes):
    for m in (1, 2, 3):
        assert planes[m][1] == m
    assert planes[5][1] < 5  # the 90% rule under-estimates above 3 (research notes 17.9), documented


@pytest.mark.parametrize("maker, expected", [(lambda: sphere(1, 1500), 1), (lambda: sphere(2, 1500), 2),
                                             (lambda: swiss_roll(), 2)])
def test_curved_manifolds_local_dimension(maker, expected):
    X = maker()
    G = nnk_graph(X, 30)
    ids, _ = local_dimension(X, G.candidates, G.theta)
    assert np.median(ids) == expected


def test_sphere_curvature_ordering_at_fixed_density():
    kappa = {}
    for r in (0.5, 1.0, 2.0):
        X = sphere(2, int(1500 * r * r), r=r, seed=3)
        G = nnk_graph(X, 30)
        kappa[r] = np.mean(curvature(X, G.candidates, G.theta, dim=2))
    side = np.sqrt(4 * np.pi)  # same density as the unit sphere: 1500 points on area 4 pi
    flat = plane(2, seed=3) * side
    G = nnk_graph(flat, 30)
    kappa_flat = np.mean(curvature(flat, G.candidates, G.theta, dim=2))
    assert kappa[0.5] > kappa[1.0] > kappa[2.0] > 10 * kappa_flat
    assert 2.5 <= kappa[0.5] / kappa[1.0] <= 6  # ~ 1/r^2
    assert kappa_flat < 1e-10


def test_diameter_matches_brute_force_and_lies_in_0_2():
    r = np.random.default_rng(4)
    X = r.normal(size=(300, 12))
    G = nnk_graph(X, 15, kernel="cosine")
    diam = polytope_diameter(X, G.candidates, G.theta, normalize=True)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    for i in range(0, 300, 7):
        S = np.r_[i, G.candidates[i][G.theta[i] > 0]]
        D = np.linalg.norm(Z[S][:, None] - Z[S][None], axis=-1)
        assert diam[i] == pytest.approx(D.max(), abs=1e-12)
    assert (diam >= 0).all() and (diam <= 2).all()


def test_local_dimension_and_curvature_match_brute_force():
    X = swiss_roll(400, seed=5)
    G = nnk_graph(X, 20)
    ids, ratio = local_dimension(X, G.candidates, G.theta, energy=0.8)
    U = tangent_spaces(X, G.candidates, 2)
    kappa = curvature(X, G.candidates, G.theta, dim=2, tangents=U)
    for i in range(0, 400, 13):
        sup = G.theta[i] > 0
        B = X[G.candidates[i][sup]] - X[i]
        w = G.theta[i][sup] / G.theta[i][sup].sum()
        lam = np.sort(np.linalg.eigvalsh((B * w[:, None]).T @ B))[::-1]
        assert ids[i] == int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.8 - 1e-12) + 1)
        assert ratio[i] == pytest.approx(lam[0] / lam.sum(), rel=1e-9)
        Nb = np.r_[X[i][None], X[G.candidates[i]]]
        Vt = np.linalg.svd(Nb - Nb.mean(0), full_matrices=False)[2][:2]
        # same 2-D subspace as the brute-force SVD: all principal cosines are 1
        np.testing.assert_allclose(np.linalg.svd(Vt @ U[i].T, compute_uv=False), 1.0, atol=1e-8)
        js = G.candidates[i][sup]
        expected = np.mean([np.mean(np.sin(subspace_angles(U[i].T, U[j].T)) ** 2) for j in js])
        assert kappa[i] == pytest.approx(expected, abs=1e-10)


def test_metric_input_errors():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InputShapeError):
        polytope_diameter(X, np.zeros((20, 3), int), np.zeros((20, 4)))
    with pytest.raises(InvalidParameterError, match="energy"):
        local_dimension(X, np.zeros((20, 3), int), np.zeros((20, 3)), energy=1.5)
    with pytest.raises(InvalidParameterError, match="dim"):
        tangent_spaces(X, np.zeros((20, 3), int), 5)


# ---- labels ------------------------------------------------------------------------------------------------------

def _random_graph(n, seed):
    r = np.random.default_rng(seed)
    W = sp.random(n, n, density=0.1, random_state=seed, data_rvs=r.random).toarray()
    W = np.maximum(W, W.T)
    np.fill_diagonal(W, 0)
    return W


def test_dirichlet_energy_and_cross_class_fraction_dense():
    W = _random_graph(40, 1)
    y = np.random.default_rng(2).integers(0, 3, 40)
    F = np.eye(3)[y]
    expected = 0.5 * sum(W[i, j] * np.sum((F[i] - F[j]) ** 2) for i in range(40) for j in range(40))
    assert dirichlet_energy(sp.csr_array(W), F) == pytest.approx(expected, rel=1e-12)
    iu = np.triu_indices(40, 1)
    cross = W[iu][y[iu[0]] != y[iu[1]]].sum() / W[iu].sum()
    assert cross_class_fraction(sp.csr_array(W), y) == pytest.approx(cross, rel=1e-12)
    assert expected == pytest.approx(2 * W[iu][y[iu[0]] != y[iu[1]]].sum(), rel=1e-12)


def test_label_propagation_is_the_harmonic_solution():
    W = _random_graph(60, 3) + np.diag(np.ones(59), 1) + np.diag(np.ones(59), -1)  # connected
    y = -np.ones(60, int)
    y[[0, 10, 20]] = [0, 1, 2]
    y[[30, 45]] = [1, 0]
    labels, proba = label_propagation(sp.csr_array(W), y)
    Lap = np.diag(W.sum(1)) - W
    U, Lb = np.flatnonzero(y < 0), np.flatnonzero(y >= 0)
    F = np.linalg.solve(Lap[np.ix_(U, U)], W[np.ix_(U, Lb)] @ np.eye(3)[y[Lb]])
    np.testing.assert_allclose(proba[U], F, atol=1e-10)
    np.testing.assert_array_equal(labels[Lb], y[Lb])
    # an unlabelled component that no label can reach
    W2 = np.zeros((63, 63))
    W2[:60, :60] = W
    W2[60, 61] = W2[61, 60] = W2[61, 62] = W2[62, 61] = 1.0
    labels2, _ = label_propagation(sp.csr_array(W2), np.r_[y, -1, -1, -1])
    assert (labels2[60:] == -1).all()


def test_class_homogeneity_hand_example():
    cand = np.array([[1, 2, 3], [0, 2, 3]])
    theta = np.array([[0.5, 0.5, 0.0], [0.2, 0.0, 0.6]])
    y = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(class_homogeneity(cand, theta, y), [0.5, 0.25])
    np.testing.assert_allclose(class_homogeneity(cand, theta, y, weighted=False), [0.5, 0.5])


# ---- the one-call table and the CLI --------------------------------------------------------------------------------

def test_point_metrics_table_and_cli(tmp_path, capsys, digits, digits_labels):
    import pandas as pd

    from nnkscope.cli import main

    X, y = digits[:600], digits_labels[:600]
    df, summary = point_metrics(X, y, k=20)
    assert len(df) == 600 and not df.drop(columns="label").isna().any().any()
    assert df["diameter"].between(0, 2).all()
    assert summary["loo_error_nnk"] <= summary["loo_error_kernel"]
    assert 0 <= summary["homogeneous_fraction_H"] <= 1
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    assert main(["metrics", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "-k", "20", "-o",
                 str(tmp_path / "m.parquet")]) == 0
    assert "loo_error_nnk" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "m.parquet"), df)
    with pytest.raises(InvalidParameterError, match="only 3 sample"):
        point_metrics(X[:203], np.r_[y[:200], 99, 99, 99], k=20)
    np.save(tmp_path / "bad.npy", y[:10])
    assert main(["metrics", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "bad.npy"), "-o",
                 str(tmp_path / "m2.parquet")]) == 2
    assert "600 entries" in capsys.readouterr().err and not (tmp_path / "m2.parquet").exists()


def test_multiscale_coarsens_and_keeps_the_dimension():
    from nnkscope.measures.metrics import merge_neighbourhoods, multiscale_metrics

    X = plane(2, n=4000, seed=7)
    table = multiscale_metrics(X, 20, levels=2)
    assert table["n_points"].is_monotonic_decreasing and table["n_points"].iloc[-1] < 4000 / 3
    assert (table["median_local_id"] == 2).all()
    assert (table["mean_diameter"].diff().dropna() > 0).all()  # coarser points are farther apart
    # each point is used once: merging with no neighbours returns the data unchanged
    same = merge_neighbourhoods(X[:10], np.zeros((10, 1), int), np.zeros((10, 1)), np.arange(10.0))
    np.testing.assert_array_equal(same, X[:10])


def test_nnk_means_beats_kmeans_on_digits():
    """R6 (research notes 16.2): at equal dictionary size NNK-Means classifies better and reconstructs better."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import nnk_means_digits

    t = nnk_means_digits.run(sizes=(20, 50), verbose=False)
    assert (t["nnk_means_accuracy"] >= t["kmeans_accuracy"] - 0.005).all()
    assert t["nnk_means_accuracy"].iloc[0] > t["kmeans_accuracy"].iloc[0]
    assert (t["nnk_means_mse"] < t["kmeans_mse"]).all()


@pytest.mark.parametrize("normalize, diameter_normalize", [(False, True), (True, True), (False, False)])
def test_local_geometry_is_both_measures_from_one_gather(normalize, diameter_normalize):
    # brute-force oracles of each measure with its own scaling: the diameter of {i} ∪ support, and the smallest m
    # whose top eigenvalues of the theta-weighted covariance about the point hold 90% of its trace
    r = np.random.default_rng(9)
    X = r.normal(size=(250, 9)) * r.uniform(0.5, 3.0, size=(250, 1))
    G = nnk_graph(X, 12, kernel="cosine")
    ids, ratio, diam = local_geometry(X, G.candidates, G.theta, normalize=normalize,
                                      diameter_normalize=diameter_normalize)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    Zd, Zi = (unit if diameter_normalize else X), (unit if normalize else X)
    for i in range(0, 250, 5):
        sup = G.theta[i] > 0
        S = np.r_[i, G.candidates[i][sup]]
        assert diam[i] == pytest.approx(np.linalg.norm(Zd[S][:, None] - Zd[S][None], axis=-1).max(), abs=1e-12)
        w = G.theta[i][sup] / G.theta[i][sup].sum()
        D = Zi[G.candidates[i][sup]] - Zi[i]
        lam = np.sort(np.linalg.eigvalsh((D * w[:, None]).T @ D))[::-1].clip(0)
        assert ids[i] == int(np.searchsorted(np.cumsum(lam), 0.9 * lam.sum() * (1 - 1e-12)) + 1)
        assert ratio[i] == pytest.approx(lam[0] / lam.sum(), rel=1e-10)
    np.testing.assert_array_equal(diam, polytope_diameter(X, G.candidates, G.theta, normalize=diameter_normalize))
    np.testing.assert_array_equal(ids, local_dimension(X, G.candidates, G.theta, normalize=normalize)[0])


def test_tangent_spaces_into_out_and_its_checks():
    X = np.random.default_rng(5).normal(size=(60, 6))
    cand = nnk_graph(X, 8).candidates
    ref = tangent_spaces(X, cand, 3)
    out = np.full((60, 3, 6), np.nan)
    assert tangent_spaces(X, cand, 3, out=out) is out
    np.testing.assert_array_equal(out, ref)
    frozen = np.empty((60, 3, 6))
    frozen.flags.writeable = False
    for bad in (np.empty((60, 2, 6)), np.empty((60, 3, 6), np.float32), np.empty((60, 6, 3)).transpose(0, 2, 1),
                frozen, [[0.0]]):
        with pytest.raises(InputShapeError, match="out must be a writeable C-contiguous float64 array"):
            tangent_spaces(X, cand, 3, out=bad)
