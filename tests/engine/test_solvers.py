"""The per-node NNK solvers against optimality conditions, closed forms and independent oracles."""

import numpy as np
import pytest
from helpers import (
    brute_knn,
    dense_kernel,
    interpolation_error,
    nnls_oracle,
    objective,
    reference_heuristic,
    swiss_roll_2d,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnkscope import kkt_violation, local_problems, solve_nnk


def _problems(X, k, kernel, sigma=None):
    idx, dist = brute_knn(X, k, "euclidean" if kernel == "gaussian" else "cosine")
    if kernel == "gaussian" and sigma is None:
        sigma = dist[:, -1].mean() / 3
    return local_problems(X, idx, kernel, sigma)


@pytest.fixture(scope="module")
def random_problems():
    r = np.random.default_rng(7)
    X = r.normal(size=(600, 6)) @ r.normal(size=(6, 20))  # rank-6 data in 20-D: supports well below k
    return _problems(X, 30, "gaussian")


@pytest.fixture(scope="module")
def digits_problems(digits):
    return _problems(digits[:700], 30, "cosine")


@pytest.mark.parametrize("which", ["random_problems", "digits_problems"])
def test_exact_solver_satisfies_kkt(which, request):
    K, g = request.getfixturevalue(which)
    theta, errors, status = solve_nnk(K, g, solver="exact", tau=0.0)
    viol = [kkt_violation(K[i], g[i], theta[i]) for i in range(len(g))]
    assert max(viol) <= 1e-10
    assert (status == 0).all()
    sizes = (theta > 0).sum(1)
    assert 1 <= sizes.min() and sizes.max() < K.shape[1]  # real pruning happens: the test is not vacuous


@pytest.mark.parametrize("which", ["random_problems", "digits_problems"])
def test_exact_solver_matches_scipy_nnls(which, request):
    K, g = request.getfixturevalue(which)
    theta, errors, _ = solve_nnk(K, g, solver="exact", tau=0.0)
    oracle = np.array([nnls_oracle(K[i], g[i]) for i in range(len(g))])
    np.testing.assert_allclose(theta, oracle, rtol=0, atol=1e-8)
    expected_err = [interpolation_error(K[i], g[i], oracle[i]) for i in range(len(g))]
    np.testing.assert_allclose(errors, expected_err, rtol=0, atol=1e-10)


def test_scipy_solver_mode_matches_exact(random_problems):
    K, g = random_problems
    a = solve_nnk(K[:100], g[:100], solver="exact")
    b = solve_nnk(K[:100], g[:100], solver="scipy")
    np.testing.assert_allclose(a[0], b[0], atol=1e-8, rtol=0)
    np.testing.assert_allclose(a[1], b[1], atol=1e-10, rtol=0)


def _three_points(angle_deg: float):
    """Query at 0, x_j at (1, 0), x_m at unit distance from x_j with the given angle at x_j."""
    phi = np.deg2rad(angle_deg)
    return np.array([[0.0, 0.0], [1.0, 0.0], [1.0 - np.cos(phi), np.sin(phi)]])


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("angle", [30, 60, 80, 89, 91, 100, 120, 150])
def test_gaussian_kri_three_points(angle, sigma):
    """KRI: m is pruned iff the angle at x_j in the triangle (x_i, x_j, x_m) is obtuse, whatever sigma."""
    X = _three_points(angle)
    Kfull = dense_kernel(X, "gaussian", sigma)
    K, g = Kfull[1:, 1:], Kfull[0, 1:]
    for solver in ("exact", "reference", "scipy"):
        theta, err, status = solve_nnk(K, g, solver=solver, tau=0.0 if solver != "reference" else 1e-10)
        if angle < 90:
            assert (theta > 0).all(), solver
            np.testing.assert_allclose(theta, np.linalg.solve(K, g), rtol=1e-12)
        else:
            assert theta[1] == 0 and theta[0] > 0, solver
            np.testing.assert_allclose(theta[0], g[0], rtol=1e-12)  # K_jj = 1: the lone weight is g_j
        np.testing.assert_allclose(err, interpolation_error(K, g, theta), atol=1e-14)
        assert status == 0


def test_kri_ratio_interval_general_kernel_values():
    """Two-candidate NNK keeps both iff K_jm < K_ij / K_im < 1 / K_jm (any unit-diagonal kernel)."""
    r = np.random.default_rng(3)
    checked = {True: 0, False: 0}
    for _ in range(400):
        kjm, kij, kim = r.uniform(0.05, 0.95, size=3)
        K = np.array([[1.0, kjm], [kjm, 1.0]])
        g = np.array([kij, kim])
        theta, _, _ = solve_nnk(K, g, tau=0.0)
        both = kjm < kij / kim < 1 / kjm
        assert bool((theta > 0).all()) == both
        checked[both] += 1
    assert min(checked.values()) > 50


@pytest.mark.parametrize("case", ["swiss_roll", "digits_cosine"])
def test_reference_mode_equals_reimplementation(case, digits):
    if case == "swiss_roll":
        K, g = _problems(swiss_roll_2d(500, seed=1), 15, "gaussian")
    else:
        K, g = _problems(digits[:500], 10, "cosine")
    tau = 1e-6
    theta, errors, status = solve_nnk(K, g, solver="reference", tau=tau)
    oracle = np.array([reference_heuristic(K[i], g[i], tau) for i in range(len(g))])
    np.testing.assert_allclose(theta, oracle, rtol=0, atol=1e-10)
    assert ((theta > 0) == (oracle > 0)).all()
    np.testing.assert_allclose(errors, [interpolation_error(K[i], g[i], oracle[i]) for i in range(len(g))],
                               atol=1e-12)
    # the heuristic is not the optimum here, so this comparison has teeth (research notes 1.3)
    exact, exact_err, _ = solve_nnk(K, g, solver="exact", tau=tau)
    differs = np.abs(exact - theta).max(axis=1) > 1e-6
    assert differs.mean() > 0.05
    assert (exact_err <= errors + 1e-9).all()  # the optimum never reconstructs worse


def test_reference_duplicate_short_circuit():
    K = np.array([[1.0, 1.0, 0.3], [1.0, 1.0, 0.3], [0.3, 0.3, 1.0]])
    g = np.array([1.0, 1.0, 0.3])  # two exact duplicates of the query
    theta, err, status = solve_nnk(K, g, solver="reference")
    np.testing.assert_array_equal(theta, [1.0, 1.0, 0.0])  # the authors' behaviour: raw kernel values
    theta, err, status = solve_nnk(K, g, solver="exact")
    np.testing.assert_array_equal(theta, [1.0, 0.0, 0.0])  # exact: the first copy alone, zero error
    assert err == 0.0


def test_duplicate_candidates_are_handled_without_nan():
    K = np.array([[1.0, 1.0, 0.2], [1.0, 1.0, 0.2], [0.2, 0.2, 1.0]])  # singular: candidates 0 and 1 coincide
    g = np.array([0.6, 0.6, 0.5])
    for solver in ("exact", "reference", "scipy"):
        theta, err, status = solve_nnk(K, g, solver=solver)
        assert np.isfinite(theta).all() and np.isfinite(err)
    theta, err, _ = solve_nnk(K, g, solver="exact", tau=0.0)
    # the optimum is unique in (theta_0 + theta_1, theta_2); compare with the de-duplicated problem
    reduced = nnls_oracle(K[1:, 1:], g[1:])
    np.testing.assert_allclose([theta[0] + theta[1], theta[2]], reduced, atol=1e-12)
    assert kkt_violation(K, g, theta) <= 1e-10


def test_candidates_below_tau_get_no_weight_and_empty_nodes_are_flagged():
    K = np.eye(3)
    g = np.array([1e-9, 0.5, 1e-7])
    theta, err, status = solve_nnk(K, g, tau=1e-6)
    np.testing.assert_array_equal(theta, [0.0, 0.5, 0.0])
    theta, err, status = solve_nnk(K, np.full(3, 1e-8), tau=1e-6)
    assert (theta == 0).all() and err == 1.0 and status == 1


def test_threshold_zeroes_small_weights():
    # the second candidate gets a tiny positive optimal weight
    K = np.array([[1.0, 0.5], [0.5, 1.0]])
    g = np.array([0.8, 0.4 + 1e-8])
    exact = np.linalg.solve(K, g)
    assert 0 < exact[1] < 1e-6
    theta, _, _ = solve_nnk(K, g, tau=1e-6)
    assert theta[1] == 0.0 and theta[0] == pytest.approx(exact[0] + 0.5 * exact[1], abs=1e-7)


def test_solver_is_deterministic(random_problems):
    K, g = random_problems
    a = solve_nnk(K, g)
    b = solve_nnk(K, g)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ---- property-based -------------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 25), d=st.integers(1, 8), rank=st.integers(1, 8),
       kernel=st.sampled_from(["gaussian", "cosine"]), scale=st.floats(0.2, 3.0))
def test_property_exact_is_optimal(seed, n, d, rank, kernel, scale):
    """Random point clouds (full or low rank, any kernel width): exact = KKT point, never beaten by an oracle."""
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, min(rank, d))) @ r.normal(size=(min(rank, d), d)) + r.normal(size=d)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    sigma = scale * np.median(D[np.triu_indices(n, 1)])
    Kfull = dense_kernel(X, kernel, sigma)
    K, g = Kfull[1:, 1:], Kfull[0, 1:]
    theta, err, status = solve_nnk(K, g, tau=0.0)
    assert np.isfinite(theta).all() and (theta >= 0).all()
    assert 0.0 <= err <= 1.0 + 1e-12
    assert kkt_violation(K, g, theta) <= 1e-9
    ref, _, _ = solve_nnk(K, g, solver="reference", tau=1e-10)
    assert objective(K, g, theta) <= objective(K, g, ref) + 1e-12
    lam = np.linalg.eigvalsh(K).min()
    if lam > 1e-8:  # the Cholesky-based oracle needs a well-posed matrix
        oracle = nnls_oracle(K, g)
        assert objective(K, g, theta) <= objective(K, g, oracle) + 1e-12
        # strong convexity: |d theta|^2 <= 2 (objective gap) / lambda_min, the gap being rounding (<= 1e-14)
        np.testing.assert_allclose(theta, oracle, rtol=0, atol=np.sqrt(2e-14 / lam))


@settings(max_examples=100, deadline=None)
@given(X=arrays(np.float64, st.tuples(st.integers(3, 10), st.integers(1, 3)),
                elements=st.sampled_from([-1.0, 0.0, 1.0, 2.0])),
       sigma=st.floats(0.2, 5.0))
def test_property_degenerate_inputs_never_give_nan(X, sigma):
    """Lattice points with many exact duplicates: every solver returns finite, non-negative weights."""
    Kfull = dense_kernel(X, "gaussian", sigma)
    K, g = Kfull[1:, 1:], Kfull[0, 1:]
    for solver in ("exact", "reference", "scipy"):
        theta, err, status = solve_nnk(K, g, solver=solver)
        assert np.isfinite(theta).all() and (theta >= 0).all() and np.isfinite(err) and err >= 0
    theta, err, _ = solve_nnk(K, g, tau=0.0)
    assert kkt_violation(K, g, theta) <= 1e-9


@pytest.fixture(scope="module")
def dense_support_problems():
    # high intrinsic dimension + the k-th-neighbour bandwidth: a nearly diagonal kernel, NNK keeps most candidates,
    # so the exact solver takes its block-pivoting path (support >= BPP_SWITCH)
    r = np.random.default_rng(11)
    return _problems(r.normal(size=(400, 60)), 40, "gaussian")


def test_block_pivoting_path_is_exact(dense_support_problems):
    from nnkscope.engine.solvers import BPP_SWITCH

    K, g = dense_support_problems
    theta, errors, status = solve_nnk(K, g, tau=0.0)
    assert (theta > 0).sum(1).min() > BPP_SWITCH  # the path under test is really taken
    assert max(kkt_violation(K[i], g[i], theta[i]) for i in range(len(g))) <= 1e-10
    oracle = np.array([nnls_oracle(K[i], g[i]) for i in range(len(g))])
    np.testing.assert_allclose(theta, oracle, rtol=0, atol=1e-8)
    assert (status == 0).all()


def test_block_pivoting_falls_back_on_duplicate_candidates(dense_support_problems):
    K, g = dense_support_problems
    # duplicate candidate 0 into slot 1 for every node: singular K, large support
    K2, g2 = K.copy(), g.copy()
    K2[:, 1, :] = K2[:, 0, :]
    K2[:, :, 1] = K2[:, :, 0]
    K2[:, 1, 1] = 1.0
    g2[:, 1] = g2[:, 0]
    theta, errors, status = solve_nnk(K2, g2, tau=0.0)
    assert np.isfinite(theta).all() and (theta >= 0).all()
    assert max(kkt_violation(K2[i], g2[i], theta[i]) for i in range(len(g2))) <= 1e-10
    # same fit as the de-duplicated problem
    keep = np.r_[0, np.arange(2, K.shape[1])]
    ref, ref_err, _ = solve_nnk(K2[:, keep][:, :, keep], g2[:, keep], tau=0.0)
    np.testing.assert_allclose(errors, ref_err, atol=1e-10)
