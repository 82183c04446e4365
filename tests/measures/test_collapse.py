"""Neural collapse and separation fuzziness against closed forms and a direct-formula oracle."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from nnkscope.errors import InputShapeError, InvalidParameterError, NonFiniteError
from nnkscope.measures.collapse import (
    ClassScatter,
    equi_separation_fit,
    held_out_nc4,
    hyperspherical_uniformity,
    layerwise_separation,
    neural_collapse,
    ood_orthogonality,
    scatter_in_blocks,
    separation_fuzziness,
)


def direct_scatters(H, y, K):
    """Textbook formulas, written independently of nnkscope.measures.collapse."""
    H = np.asarray(H, dtype=np.float64)
    n, d = H.shape
    mu = np.array([H[y == k].mean(0) for k in range(K)])
    nk = np.array([(y == k).sum() for k in range(K)])
    Sw = sum((H[y == k] - mu[k]).T @ (H[y == k] - mu[k]) for k in range(K)) / n
    Sw_bal = sum(np.cov(H[y == k].T, bias=True).reshape(d, d) for k in range(K)) / K
    mbar = mu.mean(0)
    Sb = sum(np.outer(mu[k] - mbar, mu[k] - mbar) for k in range(K)) / K
    mg = H.mean(0)
    Sb_w = sum(nk[k] * np.outer(mu[k] - mg, mu[k] - mg) for k in range(K)) / n
    return mu, Sw, Sw_bal, Sb, Sb_w


def truncated_pinv(B, rank):
    """Pseudo-inverse from the full d x d eigendecomposition, keeping the top `rank` eigenvalues."""
    lam, V = np.linalg.eigh(B)
    idx = np.argsort(lam)[::-1][:rank]
    idx = idx[lam[idx] > 1e-8 * lam[idx[0]]]
    return (V[:, idx] / lam[idx]) @ V[:, idx].T


def simplex_etf(K, d, scale=3.0, seed=0):
    """K unit-ish vectors of a simplex ETF embedded in R^d by a random orthogonal map."""
    E = (np.eye(K) - np.ones((K, K)) / K) * scale
    Q = ortho_group.rvs(d, random_state=seed)[:, :K] if d > 1 else np.ones((1, 1))
    return E @ Q.T


@pytest.fixture(scope="module")
def noisy():
    r = np.random.default_rng(3)
    K, d = 5, 40
    y = np.repeat(np.arange(K), [30, 50, 70, 40, 60])  # imbalanced
    H = simplex_etf(K, d, seed=1)[y] * 2 + r.normal(size=(len(y), d)) @ r.normal(size=(d, d)) * 0.3
    return H + 7.0, y, K  # a large common offset: the accumulators must not lose the small scatter


def test_collapsed_simplex_etf_gives_zero(noisy):
    K, d = 6, 20
    M = simplex_etf(K, d)
    y = np.repeat(np.arange(K), 10)
    m = neural_collapse(M[y] + 5.0, y, W=M, b=-M @ np.full(d, 5.0))
    for key in ("nc1", "nc2_means_equinorm", "nc2_means_equiangular_std", "nc2_means_max_angle",
                "nc2_means_etf_distance", "nc2_classifier_etf_distance", "nc3", "nc3_etf", "cdnv", "trace_ratio"):
        assert abs(m[key]) < 1e-12, key
    assert m["nc4"] == 0.0


def test_analytic_two_class_values():
    # class means +-m e1; samples mu_c +- s e_j for each axis j: S_k = 2 s^2 I exactly
    d, m, s = 4, 3.0, 0.5
    I = np.eye(d)
    H, y = [], []
    for c, sign in enumerate((1.0, -1.0)):
        for j in range(d):
            for pm in (1.0, -1.0):
                H.append(sign * m * I[0] + pm * s * I[j])
                y.append(c)
    H, y = np.array(H), np.array(y)
    res = neural_collapse(H, y)
    assert res["nc1"] == pytest.approx((s**2 / d) / m**2 / 2, rel=1e-12)
    assert res["cdnv"] == pytest.approx(s**2 / (4 * m**2), rel=1e-12)
    assert res["trace_ratio"] == pytest.approx((s**2) / m**2, rel=1e-12)
    assert separation_fuzziness(H, y) == pytest.approx(2 * res["nc1"], rel=1e-12)  # D = K NC1 when balanced


def test_matches_direct_formulas(noisy):
    H, y, K = noisy
    mu, Sw, Sw_bal, Sb, Sb_w = direct_scatters(H, y, K)
    res = neural_collapse(H, y)
    assert res["nc1"] == pytest.approx(np.trace(Sw @ truncated_pinv(Sb, K - 1)) / K, rel=1e-10)
    assert separation_fuzziness(H, y, weighting="balanced") == pytest.approx(
        np.trace(Sw_bal @ truncated_pinv(Sb, K - 1)), rel=1e-10)
    assert separation_fuzziness(H, y, weighting="imbalanced") == pytest.approx(
        np.trace(Sw @ truncated_pinv(Sb_w, K - 1)), rel=1e-10)
    stats = ClassScatter(K).update(H, y)
    np.testing.assert_allclose(stats.within(), Sw, atol=1e-12)
    np.testing.assert_allclose(stats.between(), Sb, atol=1e-12)
    np.testing.assert_allclose(stats.between(weighted=True), Sb_w, atol=1e-12)


def test_default_pinv_cutoff_would_explode_but_truncation_does_not():
    # d >> K: rounding leaves tiny eigenvalues in Sigma_B that numpy's default pinv inverts (research notes 17.1)
    r = np.random.default_rng(5)
    K, d = 4, 300
    y = np.repeat(np.arange(K), 100)
    H = (r.normal(size=(K, d)) * 5)[y] + r.normal(size=(len(y), d)) * 1e3 + 1e4
    _, Sw, _, Sb, _ = direct_scatters(H, y, K)
    good = np.trace(Sw @ truncated_pinv(Sb, K - 1)) / K
    assert neural_collapse(H, y)["nc1"] == pytest.approx(good, rel=1e-8)


def test_streaming_equals_in_memory(noisy):
    H, y, K = noisy
    whole = ClassScatter(K).update(H, y)
    r = np.random.default_rng(0)
    order = r.permutation(len(y))
    cuts = np.sort(r.choice(np.arange(1, len(y)), size=7, replace=False))
    stream = ClassScatter(K)
    for part in np.split(order, cuts):
        stream.update(H[part], y[part])
    halves = ClassScatter(K).update(H[order[:100]], y[order[:100]]).merge(
        ClassScatter(K).update(H[order[100:]], y[order[100:]]))
    for s in (stream, halves):
        np.testing.assert_allclose(s.means, whole.means, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s.scatter, whole.scatter, rtol=1e-10, atol=1e-10)
        a, b = neural_collapse(s), neural_collapse(whole)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-12), key


def test_invariance_to_rotation_and_zero_variance_dimensions(noisy):
    H, y, K = noisy
    r = np.random.default_rng(9)
    W = r.normal(size=(K, H.shape[1]))
    b = r.normal(size=K)
    base = neural_collapse(H, y, W=W, b=b)
    Q = ortho_group.rvs(H.shape[1], random_state=2)
    rotated = neural_collapse(H @ Q, y, W=W @ Q, b=b)
    padded = neural_collapse(np.hstack([H, np.full((len(y), 7), 4.0)]), y, W=np.hstack([W, np.zeros((K, 7))]), b=b)
    for other in (rotated, padded):
        for key, val in base.items():
            assert other[key] == pytest.approx(val, rel=1e-9, abs=1e-12), key
    D = separation_fuzziness(H, y)
    assert separation_fuzziness(H @ Q, y) == pytest.approx(D, rel=1e-10)
    assert separation_fuzziness(np.hstack([H, np.zeros((len(y), 3))]), y) == pytest.approx(D, rel=1e-10)


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.8])
def test_synthetic_layers_recover_the_decay_ratio(noisy, rho):
    H, y, K = noisy
    mu = np.array([H[y == k].mean(0) for k in range(K)])
    layers = {f"layer{l}": mu[y] + np.sqrt(rho**l) * (H - mu[y]) for l in range(6)}
    table, fits = layerwise_separation(layers, y, input_layer="layer0")
    assert fits["all"].rho == pytest.approx(rho, rel=1e-10)
    assert fits["all"].r == pytest.approx(-1.0, abs=1e-12)
    assert fits["without_input"].rho == pytest.approx(rho, rel=1e-10)
    np.testing.assert_allclose(table["D"] / table["D"][0], rho ** np.arange(6), rtol=1e-10)


def test_equi_separation_fit_ols():
    x = np.arange(6)
    logD = 2.0 - 0.7 * x + np.array([0.1, -0.1, 0.05, 0.0, -0.05, 0.02])
    f = equi_separation_fit(np.exp(logD))
    slope, intercept = np.polyfit(x, logD, 1)
    assert f.slope == pytest.approx(slope, rel=1e-12) and f.intercept == pytest.approx(intercept, rel=1e-12)
    assert f.r == pytest.approx(np.corrcoef(x, logD)[0, 1], rel=1e-12)
    assert f.rho == pytest.approx(np.exp(slope))


def test_bad_input():
    r = np.random.default_rng(0)
    H = r.normal(size=(30, 5))
    with pytest.raises(InvalidParameterError, match="single class"):
        neural_collapse(H, np.zeros(30, int))
    with pytest.raises(InvalidParameterError, match=r"class\(es\) \[1\] have no samples"):
        neural_collapse(ClassScatter(3).update(H, np.repeat([0, 2], 15)))
    with pytest.raises(InvalidParameterError, match="K-1=6 feature dimensions"):
        neural_collapse(r.normal(size=(70, 3)), np.repeat(np.arange(7), 10))
    bad = H.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteError):
        neural_collapse(bad, np.repeat([0, 1], 15))
    with pytest.raises(InvalidParameterError, match="NaN"):
        neural_collapse(H, np.r_[np.zeros(15), np.ones(14), np.nan])
    with pytest.raises(InputShapeError, match="one entry per feature row"):
        neural_collapse(H, np.repeat([0, 1], 10))
    with pytest.raises(InputShapeError, match="W must have shape"):
        neural_collapse(H, np.repeat([0, 1], 15), W=np.ones((3, 5)))
    with pytest.raises(InvalidParameterError, match="integer class indices"):
        neural_collapse(H, np.repeat([0.5, 1.5], 15))
    with pytest.raises(InvalidParameterError, match="at least 3 layers"):
        equi_separation_fit([1.0, 0.5])
    with pytest.raises(InvalidParameterError, match="between-class scatter is zero"):
        separation_fuzziness(np.ones((10, 3)), np.repeat([0, 1], 5))


def test_cli_collapse_and_separation(tmp_path, capsys, noisy):
    import json

    from nnkscope.cli import main

    H, y, K = noisy
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    W = np.random.default_rng(1).normal(size=(K, H.shape[1]))
    np.save(tmp_path / "w.npy", W)
    rc = main(["collapse", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--classifier",
               str(tmp_path / "w.npy"), "--batch-size", "37", "-o", str(tmp_path / "m.json")])
    assert rc == 0
    got = json.loads((tmp_path / "m.json").read_text())
    want = neural_collapse(H, y, W=W)
    for key, val in want.items():
        assert got[key] == pytest.approx(val, rel=1e-10, abs=1e-12), key
    capsys.readouterr()
    mu = np.array([H[y == k].mean(0) for k in range(K)])
    np.savez(tmp_path / "layers.npz", **{f"l{i}": mu[y] + 0.5**i * (H - mu[y]) for i in range(5)})
    rc = main(["separation", str(tmp_path / "layers.npz"), "--labels", str(tmp_path / "y.npy"), "--first-is-input",
               "-o", str(tmp_path / "d.csv")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "rho = 0.2500" in out and "Pearson r = -1.0000" in out  # variance halves in std: D falls by 1/4
    assert (tmp_path / "d.csv").read_text().count("\n") == 6
    assert main(["collapse", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "w.npy")]) == 2
    assert "labels must be 1-D" in capsys.readouterr().err


# -- class geometry at scale: one pooled d x d accumulator, a second pass for the balanced form ------------------


def dense_oracle(H, y, K, W, b):
    """NC metrics from the textbook formulas on the whole array (loops over classes and pairs)."""
    mu, Sw, _, Sb, _ = direct_scatters(H, y, K)
    var = np.array([np.mean(np.sum((H[y == k] - mu[k]) ** 2, axis=1)) for k in range(K)])
    pairs = [(k, l) for k in range(K) for l in range(k + 1, K)]
    cdnv = np.mean([(var[k] + var[l]) / (2 * np.sum((mu[k] - mu[l]) ** 2)) for k, l in pairs])
    M = mu - mu.mean(0)
    U = M / np.linalg.norm(M, axis=1, keepdims=True)
    logk = np.array([np.log(1 / np.linalg.norm(U[k] - U[l])) for k, l in pairs])
    dist = np.array([[np.sum((h - m) ** 2) for m in mu] for h in H])
    return {"nc1": np.trace(Sw @ truncated_pinv(Sb, K - 1)) / K, "cdnv": cdnv,
            "trace_ratio": np.trace(Sw) / np.trace(Sb), "gnc2_log_energy": logk.mean(),
            "gnc2_log_energy_var": logk.var(), "nc4": np.mean(np.argmax(H @ W.T + b, 1) != np.argmin(dist, 1))}


def test_pooled_two_pass_path_matches_a_dense_oracle():
    r = np.random.default_rng(11)
    K, d = 12, 30
    y = r.permutation(np.repeat(np.arange(K), r.integers(5, 25, K)))
    H = (r.normal(size=(K, d)) * 2)[y] + r.normal(size=(len(y), d)) @ r.normal(size=(d, d)) * 0.4 + 20.0
    W, b = r.normal(size=(K, d)), r.normal(size=K)
    stats = scatter_in_blocks(H, y, K, batch_size=17)
    assert stats.scatter is None  # the scale path: pooled scatter only
    want = dense_oracle(H, y, K, W, b)
    batches = [(H[lo:lo + 23], y[lo:lo + 23]) for lo in range(0, len(y), 23)]
    got = neural_collapse(stats, W=W, b=b, batches=batches)
    for key, val in want.items():
        assert got[key] == pytest.approx(val, rel=1e-10, abs=1e-14), key
    mu, Sw, Sw_bal, Sb, Sb_w = direct_scatters(H, y, K)
    assert separation_fuzziness(stats) == pytest.approx(np.trace(Sw_bal @ truncated_pinv(Sb, K - 1)), rel=1e-10)
    assert separation_fuzziness(stats, weighting="imbalanced") == pytest.approx(
        np.trace(Sw @ truncated_pinv(Sb_w, K - 1)), rel=1e-10)


def test_pooled_and_per_class_routes_agree(noisy):
    H, y, K = noisy
    r = np.random.default_rng(1)
    small = ClassScatter(K, per_class=True).update(H, y)
    big = ClassScatter(K, per_class=False)
    for part in np.array_split(r.permutation(len(y)), 5):
        big.update(H[part], y[part])
    for part in np.array_split(r.permutation(len(y)), 3):  # second pass: other batches, other order
        big.update_balanced(H[part], y[part])
    np.testing.assert_allclose(big.pooled, small.scatter.sum(0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(big.sq, np.trace(small.scatter, axis1=1, axis2=2), rtol=1e-12)
    np.testing.assert_allclose(big.within(balanced=True), small.within(balanced=True), rtol=1e-10, atol=1e-12)
    assert separation_fuzziness(big) == pytest.approx(separation_fuzziness(small), rel=1e-10)
    a, c = neural_collapse(big), neural_collapse(small)
    for key in a:
        assert a[key] == pytest.approx(c[key], rel=1e-10, abs=1e-14), key
    merged = ClassScatter(K, per_class=False).update(H[:90], y[:90]).merge(
        ClassScatter(K, per_class=False).update(H[90:], y[90:]))
    np.testing.assert_allclose(merged.pooled, big.pooled, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(merged.sq, big.sq, rtol=1e-12)


def test_many_classes_keep_no_per_class_matrices():
    # K d^2 = 400 * 400^2 * 8 bytes = 512 MB: the default keeps one pooled d x d matrix instead
    from scipy.spatial.distance import pdist

    K, d = 400, 400
    stats = ClassScatter(K)
    r = np.random.default_rng(2)
    y = np.arange(3 * K) % K
    H = (r.normal(size=(K, d)) * 3)[y] + r.normal(size=(len(y), d))
    stats.update(H, y)
    assert stats.scatter is None and stats.pooled.shape == (d, d)
    with pytest.raises(InvalidParameterError, match="second pass"):
        stats.within(balanced=True)
    stats.update_balanced(H, y)
    assert np.isfinite(separation_fuzziness(stats))
    m = neural_collapse(stats)
    mu = np.array([H[y == k].mean(0) for k in range(K)])
    var = np.array([np.mean(np.sum((H[y == k] - mu[k]) ** 2, axis=1)) for k in range(K)])
    iu = np.triu_indices(K, 1)  # pdist's pair order
    assert m["cdnv"] == pytest.approx(np.mean((var[iu[0]] + var[iu[1]]) / (2 * pdist(mu, "sqeuclidean"))), rel=1e-10)
    with pytest.raises(InvalidParameterError, match="per_class=False"):
        ClassScatter(K, 1700, per_class=True)


def test_simplex_etf_hyperspherical_uniformity_and_nc5():
    K, d = 7, 12
    M = simplex_etf(K, d)
    y = np.repeat(np.arange(K), 4)
    m = neural_collapse(M[y] + 2.0, y)
    assert m["gnc2_log_energy"] == pytest.approx(-0.5 * np.log(2 * K / (K - 1)), rel=1e-12)
    assert m["gnc2_log_energy_var"] < 1e-24 and m["nc1"] < 1e-24 and m["cdnv"] < 1e-24
    energy, _ = hyperspherical_uniformity(M)
    assert energy == pytest.approx(m["gnc2_log_energy"], rel=1e-12)
    # any other K points on the sphere have a higher log energy (the simplex minimises it for K <= d + 1)
    rand = np.random.default_rng(0).normal(size=(K, d))
    assert hyperspherical_uniformity(rand)[0] > energy
    stats = ClassScatter(K).update(M[y] + 2.0, y)
    normal = np.random.default_rng(5).normal(size=d)
    normal -= M.T @ np.linalg.lstsq(M.T, normal, rcond=None)[0]  # project out the span of the ETF
    assert ood_orthogonality(stats, 2.0 + 3.0 * normal[None, :].repeat(5, 0)) == pytest.approx(0.0, abs=1e-12)
    # OOD data that looks like class 0: |cos| is 1 for class 0 and 1/(K-1) for the others -> 2/K
    assert ood_orthogonality(stats, M[[0, 0]] + 2.0) == pytest.approx(2 / K, rel=1e-12)


def test_analytic_two_class_gnc2_nc5_and_held_out_nc4():
    # means (+-1, 0): the NCC rule is the sign of x; the classifier below uses the sign of y
    H = np.array([[1.0, 0.5], [1.0, -0.5], [-1.0, 0.5], [-1.0, -0.5]])
    y = np.array(["pos", "pos", "neg", "neg"])
    train = scatter_in_blocks(H, y)
    assert train.classes.tolist() == ["neg", "pos"]
    m = neural_collapse(H, y)
    assert m["gnc2_log_energy"] == pytest.approx(-np.log(2.0), rel=1e-14) and m["gnc2_log_energy_var"] == 0
    a, bb = 3.0, 4.0
    assert ood_orthogonality(train, np.array([[a, bb], [a, bb]])) == pytest.approx(a / 5.0, rel=1e-14)
    assert ood_orthogonality(train, np.array([[a - 1, bb], [a + 1, bb]]), centred=False) == pytest.approx(0.6)
    W = np.array([[0.0, -1.0], [0.0, 1.0]])  # rows in class order: "neg", "pos"
    test = np.array([[2.0, 1.0], [2.0, -1.0], [-2.0, 1.0], [-3.0, -1.0], [0.5, 2.0]])
    labels = np.array(["pos", "pos", "neg", "neg", "neg"])
    # NCC: pos pos neg neg pos; classifier: pos neg pos neg pos -> mismatches at rows 1, 2
    res = held_out_nc4(train, test, labels, W=W)
    assert res == {"nc4": 2 / 5, "ncc_accuracy": 4 / 5, "classifier_accuracy": 2 / 5, "n_samples": 5}
    streamed = held_out_nc4(train, W=W, batches=[(test[:2], labels[:2]), (test[2:], labels[2:])])
    assert streamed == res
    assert held_out_nc4(train, test, W=W)["ncc_accuracy"] is None
    with pytest.raises(InvalidParameterError, match="not among the training classes"):
        held_out_nc4(train, test, np.array(["pos", "cat", "neg", "neg", "neg"]), W=W)
    with pytest.raises(InputShapeError, match="columns"):
        held_out_nc4(train, np.ones((3, 3)), W=W)


def test_labels_of_any_hashable_type(noisy):
    H, y, K = noisy
    names = np.array([f"class-{k}" for k in range(K)], dtype=object)[y]
    W = np.random.default_rng(4).normal(size=(K, H.shape[1]))
    a, c = neural_collapse(H, y, W=W), neural_collapse(H, names, W=W)  # "class-0" < ... sorts like 0 < ...
    for key, val in a.items():
        assert c[key] == pytest.approx(val, rel=1e-12, abs=1e-15), key
    assert separation_fuzziness(H, names) == pytest.approx(separation_fuzziness(H, y), rel=1e-12)
    assert neural_collapse(H, y + 10)["nc1"] == pytest.approx(a["nc1"], rel=1e-12)  # codes need not start at 0


def test_second_pass_bad_input(noisy):
    H, y, K = noisy
    with pytest.raises(InvalidParameterError, match="second pass"):
        ClassScatter(K, per_class=False).update_balanced(H, y)
    stats = ClassScatter(K, per_class=False).update(H[:100], y[:100])
    stats.update_balanced(H[:50], y[:50])
    with pytest.raises(InvalidParameterError, match="saw 50 rows but the first saw 100"):
        stats.within(balanced=True)
    stats.update(H[100:], y[100:])  # the means moved: the partial second pass is dropped
    with pytest.raises(InvalidParameterError, match="second pass"):
        stats.within(balanced=True)
    one_class = ClassScatter(K, per_class=False).update(H[y == 0], y[y == 0])
    with pytest.raises(InvalidParameterError, match="never saw"):
        one_class.update_balanced(H, y)
