"""Similarity registry: identities, declared invariances (and their absence), independent oracles, bad input.

Every oracle here is written from the published formula with dense numpy/scipy and shares no code with
nnkscope.similarity.
"""

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist
from scipy.stats import ortho_group, spearmanr

from nnkscope.errors import InputShapeError, InvalidParameterError
from nnkscope.io import RowSource
from nnkscope.measures.compare import compare_graphs
from nnkscope.similarity import (
    INVARIANCES,
    MEASURES,
    CKAStream,
    cknna,
    debiased_cka,
    linear_cka,
    mutual_knn,
    nnk_edge_agreement,
    nnk_graph_of,
    nnk_jaccard,
    procrustes,
    pwcca,
    rbf_cka,
    rsa,
    similarity,
    similarity_matrix,
    streaming_cka,
    svcca,
)

N = 240


@pytest.fixture(scope="module")
def reps():
    """Two related representations of the same N inputs: a linear one with a decaying spectrum, a non-linear one."""
    r = np.random.default_rng(7)
    Z = r.normal(size=(N, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    A = Z @ r.normal(size=(4, 8)) + 0.05 * r.normal(size=(N, 8)) + 1.0
    B = np.tanh(Z @ r.normal(size=(4, 6)) / 2) + 0.2 * r.normal(size=(N, 6)) - 2.0
    return A, B


def transform(X, kind, seed=3):
    r = np.random.default_rng(seed)
    d = X.shape[1]
    if kind == "translation":
        return X + 5.0 * r.normal(size=d)
    if kind == "isotropic_scaling":
        return 3.7 * X
    if kind == "orthogonal":
        return X @ ortho_group.rvs(d, random_state=seed)
    M = r.normal(size=(d, d)) + np.diag(np.linspace(0.5, 4.0, d))  # invertible, far from orthogonal
    assert np.linalg.cond(M) < 1e3
    return X @ M


# -- the registry contract -----------------------------------------------------------------------------------------


def test_registry_names_and_attributes():
    wanted = {"linear_cka", "debiased_cka", "rbf_cka", "svcca", "pwcca", "procrustes", "rsa", "mutual_knn", "cknna",
              "nnk_jaccard", "nnk_edge_agreement"}
    assert wanted <= set(MEASURES)
    for name, m in MEASURES.items():
        assert m.name == name and isinstance(m.higher_is_similar, bool) and isinstance(m.same_points, bool)
        assert isinstance(m.invariances, frozenset) and m.invariances <= INVARIANCES
        lo, hi = m.range
        assert lo < hi and lo <= m.identity <= hi
        best = hi if m.higher_is_similar else lo
        # (X, X) is the best possible value -- except for CKNNA, whose three alignments use different k-NN masks
        # and which can exceed 1 when k is a large fraction of N: its range is declared unbounded
        assert m.identity == best or (name == "cknna" and np.isinf(best))
        assert callable(m) and callable(m.compute)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_identity_and_range(reps, name):
    A, B = reps
    m = MEASURES[name]
    assert m(A, A) == pytest.approx(m.identity, abs=1e-10)
    assert m.compute(B, B) == pytest.approx(m.identity, abs=1e-10)
    lo, hi = m.range
    for X, Y in ((A, B), (B, A), (A, np.random.default_rng(0).normal(size=B.shape))):
        v = m(X, Y)
        assert lo - 1e-12 <= v <= hi + 1e-12
        assert (v < m.identity) if m.higher_is_similar else (v > m.identity)


@pytest.mark.parametrize("name, kind", [(n, k) for n in sorted(MEASURES) for k in sorted(MEASURES[n].invariances)])
def test_declared_invariances_hold(reps, name, kind):
    A, B = reps
    m = MEASURES[name]
    base = m(A, B)
    assert m(transform(A, kind), B) == pytest.approx(base, abs=1e-8)
    assert m(A, transform(B, kind, seed=4)) == pytest.approx(base, abs=1e-8)


@pytest.mark.parametrize("name, kind", [(n, k) for n in sorted(MEASURES)
                                        for k in sorted(INVARIANCES - MEASURES[n].invariances)])
def test_undeclared_invariances_do_not_hold(reps, name, kind):
    A, B = reps
    m = MEASURES[name]
    base = m(A, B)
    change = max(abs(m(transform(A, kind), B) - base), abs(m(A, transform(B, kind, seed=4)) - base))
    assert change > 1e-6, f"{name} is unchanged by {kind} (beyond rounding): declare the invariance"


def test_similarity_and_matrix(reps):
    A, B = reps
    assert similarity(A, B, "rsa") == rsa(A, B)
    assert similarity(A, B, MEASURES["pwcca"]) == pwcca(A, B)
    layers = {"a": A, "b": B, "a2": 2 * A}
    t = similarity_matrix(layers, {"x": B, "y": A}, "debiased_cka")
    assert list(t.index) == ["a", "b", "a2"] and list(t.columns) == ["x", "y"]
    for ka, X in layers.items():
        for kb, Y in {"x": B, "y": A}.items():
            assert t.loc[ka, kb] == debiased_cka(X, Y)
    # the NNK measures build each layer's graph once and give the pairwise values
    square = similarity_matrix(layers, None, "nnk_jaccard", k=10)
    assert square.shape == (3, 3) and square.loc["a", "a2"] == 1.0
    assert square.loc["a", "b"] == pytest.approx(nnk_jaccard(A, B, k=10), abs=1e-15)
    with pytest.raises(InvalidParameterError, match="unknown similarity measure"):
        similarity(A, B, "cka")


# -- independent oracles -------------------------------------------------------------------------------------------


def hsic1(K, L):
    """Song et al. (2012), eq. 5: unbiased HSIC from N x N Gram matrices."""
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    # tr(K L) = sum_ij K_ij L_ji and 1'K L 1 = (1'K)(L 1), written so that no N^3 product is formed
    return (np.sum(K * L.T) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ K) @ (L @ one)) / (n * (n - 3))


def debiased_cka_oracle(X, Y):
    # HSIC_1 is translation invariant; evaluating the Gram formula on centred rows keeps the oracle itself accurate
    # (with an offset of 1e4 its own cancellation would cost it 8 digits)
    X, Y = X - X.mean(0), Y - Y.mean(0)
    K, L = X @ X.T, Y @ Y.T
    return hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L))


def test_debiased_cka_equals_the_gram_formula(reps):
    A, B = reps
    # large offsets: the raw-moment sums would cancel catastrophically without the shift
    for X, Y in ((A, B), (A + 1e4, 50 * B - 3e3), (A[:9], B[:9]), (A[:, :1], B)):
        assert debiased_cka(X, Y) == pytest.approx(debiased_cka_oracle(X, Y), abs=1e-10)
    wide = np.random.default_rng(1).normal(size=(30, 200))  # d > N: compressed to N columns first
    assert debiased_cka(wide, B[:30]) == pytest.approx(debiased_cka_oracle(wide, B[:30]), abs=1e-10)
    assert linear_cka(wide, B[:30]) == pytest.approx(
        np.linalg.norm((wide - wide.mean(0)).T @ (B[:30] - B[:30].mean(0))) ** 2
        / np.linalg.norm((wide - wide.mean(0)).T @ (wide - wide.mean(0)))
        / np.linalg.norm((B[:30] - B[:30].mean(0)).T @ (B[:30] - B[:30].mean(0))), rel=1e-10)


def test_streaming_cka_equals_the_dense_formulas(tmp_path):
    r = np.random.default_rng(2)
    n = 1500
    X = r.normal(size=(n, 12)) * np.linspace(0.2, 3, 12) + 40.0
    Y = np.c_[X[:, :5] @ r.normal(size=(5, 5)), r.normal(size=(n, 4))] - 7.0
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    np.save(tmp_path / "y32.npy", Y.astype(np.float32))
    want = debiased_cka_oracle(X, Y)
    for a, b in ((tmp_path / "x.npy", str(tmp_path / "y.npy")), (RowSource(str(tmp_path / "x.npy")), Y),
                 (np.load(tmp_path / "x.npy", mmap_mode="r"), tmp_path / "y.npy")):
        assert streaming_cka(a, b, block_rows=333) == pytest.approx(want, abs=1e-10)
    assert similarity(tmp_path / "x.npy", tmp_path / "y.npy", "debiased_cka", block_rows=1000) == pytest.approx(
        want, abs=1e-10)
    Y32 = Y.astype(np.float32).astype(np.float64)
    assert streaming_cka(tmp_path / "x.npy", tmp_path / "y32.npy", block_rows=777) == pytest.approx(
        debiased_cka_oracle(X, Y32), abs=1e-10)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    lin = np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert streaming_cka(tmp_path / "x.npy", tmp_path / "y.npy", debiased=False, block_rows=7) == pytest.approx(
        lin, abs=1e-12)
    assert linear_cka(tmp_path / "x.npy", tmp_path / "y.npy") == pytest.approx(lin, abs=1e-12)
    s = CKAStream()
    for lo in range(0, n, 100):
        s.update(X[lo:lo + 100], Y[lo:lo + 100])
    kl, kk, ll = s.hsic()
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    assert kl == pytest.approx(hsic1(Xc @ Xc.T, Yc @ Yc.T), rel=1e-10)
    assert kk == pytest.approx(hsic1(Xc @ Xc.T, Xc @ Xc.T), rel=1e-10)


def cca_oracle(X, Y):
    """Canonical correlations as the singular values of Sxx^-1/2 Sxy Syy^-1/2, and X's canonical weights."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)

    def inv_sqrt(S):
        lam, V = np.linalg.eigh(S)
        return (V / np.sqrt(lam)) @ V.T

    Wx, Wy = inv_sqrt(Xc.T @ Xc), inv_sqrt(Yc.T @ Yc)
    U, rho, _ = np.linalg.svd(Wx @ Xc.T @ Yc @ Wy)
    m = min(X.shape[1], Y.shape[1])
    return rho[:m], Xc @ Wx @ U[:, :m]  # canonical variates of X: unit norm


def svcca_oracle(X, Y, keep=0.99):
    def reduce(Z):
        Zc = Z - Z.mean(0)
        _, S, Vt = np.linalg.svd(Zc, full_matrices=False)
        k = next(i + 1 for i, f in enumerate(np.cumsum(S**2) / np.sum(S**2)) if f >= keep)
        return Zc @ Vt[:k].T

    return cca_oracle(reduce(X), reduce(Y))[0].mean()


def pwcca_oracle(X, Y):
    rho, H = cca_oracle(X, Y)
    alpha = np.array([np.sum(np.abs(h @ (X - X.mean(0)))) for h in H.T])
    return np.sum(alpha * rho) / np.sum(alpha)


def test_svcca_and_pwcca_against_the_covariance_formulas(reps):
    A, B = reps
    for X, Y in ((A, B), (B, A), (A[:, :3] ** 2, B)):
        assert svcca(X, Y) == pytest.approx(svcca_oracle(X, Y), abs=1e-10)
        assert svcca(X, Y, keep=3) == pytest.approx(np.mean(cca_oracle(
            (X - X.mean(0)) @ np.linalg.svd(X - X.mean(0), full_matrices=False)[2][:3].T,
            (Y - Y.mean(0)) @ np.linalg.svd(Y - Y.mean(0), full_matrices=False)[2][:3].T)[0]), abs=1e-10)
        assert pwcca(X, Y) == pytest.approx(pwcca_oracle(X, Y), abs=1e-10)
    assert svcca(A, B, keep=1.0) == pytest.approx(cca_oracle(A, B)[0].mean(), abs=1e-10)


def test_procrustes_against_scipy(reps):
    A, B = reps
    for X, Y in ((A, B), (B, A), (A, A + 0.01 * B[:, :1])):
        Xc, Yc = X - X.mean(0), Y - Y.mean(0)
        Xc, Yc = Xc / np.linalg.norm(Xc), Yc / np.linalg.norm(Yc)
        d = max(X.shape[1], Y.shape[1])
        Xp, Yp = np.pad(Xc, ((0, 0), (0, d - X.shape[1]))), np.pad(Yc, ((0, 0), (0, d - Y.shape[1])))
        R, nuclear = orthogonal_procrustes(Yp, Xp)
        theta = procrustes(X, Y)
        assert theta == pytest.approx(np.arccos(nuclear), rel=1e-7)  # arccos near 1 keeps ~half the digits
        assert theta == pytest.approx(2 * np.arcsin(np.linalg.norm(Yp @ R - Xp) / 2), rel=1e-10)
    assert procrustes(A, B) == pytest.approx(procrustes(B, A), rel=1e-12)  # a metric: symmetric


def test_rsa_rbf_and_neighbour_measures_against_dense_formulas(reps):
    A, B = reps
    assert rsa(A, B) == pytest.approx(spearmanr(pdist(A, "correlation"), pdist(B, "correlation")).statistic,
                                      abs=1e-12)

    def rbf(X, frac=0.8):
        D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
        K = np.exp(-D2 / (2 * (frac * np.median(pdist(X))) ** 2))
        H = np.eye(len(X)) - 1.0 / len(X)
        return H @ K @ H

    Ka, Kb = rbf(A), rbf(B)
    assert rbf_cka(A, B) == pytest.approx(np.sum(Ka * Kb) / np.sqrt(np.sum(Ka**2) * np.sum(Kb**2)), abs=1e-12)
    Ka, Kb = rbf(A, 0.3), rbf(B, 0.3)
    assert rbf_cka(A, B, bandwidth=0.3) == pytest.approx(
        np.sum(Ka * Kb) / np.sqrt(np.sum(Ka**2) * np.sum(Kb**2)), abs=1e-12)

    def knn_sets(X, k):
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        S = U @ U.T
        np.fill_diagonal(S, -np.inf)
        return np.argsort(-S, axis=1, kind="stable")[:, :k]

    for k in (1, 5, 12):
        na, nb = knn_sets(A, k), knn_sets(B, k)
        want = np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(N)])
        assert mutual_knn(A, B, k=k) == pytest.approx(want, abs=1e-15)

    def cknna_oracle(X, Y, k):
        def hsic1_general(K, L):  # Huh et al.'s code: tr(K L) = sum(K * L'), 1'KL1 for non-symmetric masks
            n = len(K)
            one = np.ones(n)
            return (np.sum(K * L.T) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * one @ K @ L @ one) / (
                n * (n - 3))

        Ux = X / np.linalg.norm(X, axis=1, keepdims=True)
        Uy = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        K, L = Ux @ Ux.T, Uy @ Uy.T
        mx, my = np.zeros((N, N)), np.zeros((N, N))
        np.put_along_axis(mx, knn_sets(X, k), 1.0, axis=1)
        np.put_along_axis(my, knn_sets(Y, k), 1.0, axis=1)
        return hsic1_general(mx * my * K, mx * my * L) / np.sqrt(
            hsic1_general(mx * K, mx * K) * hsic1_general(my * L, my * L))

    for k in (5, 10):
        assert cknna(A, B, k=k) == pytest.approx(cknna_oracle(A, B, k), abs=1e-12)


def test_nnk_measures_reuse_the_graph_comparison(reps):
    A, B = reps
    Ga, Gb = nnk_graph_of(A, k=15), nnk_graph_of(B, k=15)
    ref = compare_graphs(Ga, Gb)
    assert nnk_jaccard(A, B, k=15) == ref["jaccard"] == nnk_jaccard(Ga, Gb)
    assert nnk_edge_agreement(A, B, k=15) == ref["edge_agreement"] == nnk_edge_agreement(Ga, B, k=15)
    assert nnk_jaccard(A, B, k=15, kernel="gaussian") != ref["jaccard"]


# -- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_bad_input_is_refused_clearly(reps, name):
    A, B = reps
    m = MEASURES[name]
    assert m.same_points
    with pytest.raises(InputShapeError, match="same points"):
        m(A, B[:-1])
    with pytest.raises(InvalidParameterError, match="constant"):
        m(np.full_like(A, 2.5), B)
    with pytest.raises(InvalidParameterError, match="constant"):
        m(A, np.tile(B[:1], (N, 1)))


def test_cca_refuses_too_few_points():
    r = np.random.default_rng(0)
    X, Y = r.normal(size=(40, 60)), r.normal(size=(40, 5))
    for fn in (svcca, pwcca):
        with pytest.raises(InvalidParameterError, match="Reduce the dimension by PCA"):
            fn(X, Y)
    with pytest.raises(InvalidParameterError, match=r"N >= 10 d"):
        pwcca(r.normal(size=(79, 8)), r.normal(size=(79, 3)))
    assert 0 < pwcca(r.normal(size=(80, 8)), r.normal(size=(80, 3))) < 1  # exactly N = 10 d is allowed
    assert 0 < svcca(X, Y, keep=4) < 1  # the advised fix: keep N / 10 directions
    with pytest.raises(InvalidParameterError, match="keep"):
        svcca(X, Y, keep=1.5)


def test_streaming_bad_input(tmp_path):
    r = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", r.normal(size=(50, 3)))
    np.save(tmp_path / "b.npy", r.normal(size=(49, 3)))
    np.save(tmp_path / "c.npy", np.ones((50, 3)))
    np.save(tmp_path / "s.npy", np.array(["x"] * 6).reshape(3, 2))
    with pytest.raises(InputShapeError, match="same points"):
        streaming_cka(tmp_path / "a.npy", tmp_path / "b.npy")
    with pytest.raises(InvalidParameterError, match="constant"):
        streaming_cka(tmp_path / "a.npy", tmp_path / "c.npy", block_rows=7)
    with pytest.raises(InvalidParameterError, match="constant"):
        streaming_cka(tmp_path / "c.npy", tmp_path / "a.npy", debiased=False)
    with pytest.raises(OSError, match="numeric"):
        streaming_cka(tmp_path / "s.npy", tmp_path / "a.npy")
    bad = r.normal(size=(50, 3))
    bad[31, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="NaN"):
        streaming_cka(tmp_path / "a.npy", tmp_path / "nan.npy", block_rows=8)
    with pytest.raises(InvalidParameterError, match="block_rows"):
        streaming_cka(tmp_path / "a.npy", tmp_path / "a.npy", block_rows=0)
