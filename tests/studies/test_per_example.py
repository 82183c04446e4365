"""Per-example geometry study kinds (label propagation, reliability, robustness, redundancy): building blocks
against known answers and the quick configs' results."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")
pytest.importorskip("yaml")

from helpers import brute_knn  # noqa: E402

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.studies.base import load_yaml  # noqa: E402
from nnkscope.studies.propagation import labelled_split, propagation_error, propagation_graphs  # noqa: E402
from nnkscope.studies.registry import resolve_config, run_study  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "studies"


def quick(kind: str, tmp_path, **overrides):
    cfg = resolve_config(kind, {**load_yaml(EXAMPLES / f"{kind}-quick.yaml"), **overrides})
    store, table = run_study(kind, cfg, tmp_path / kind)
    write_report(tmp_path / kind)
    return store, table, (tmp_path / kind / "report.html").read_text()


# ---------------------------------------------------------------------------------------------------------------
# label propagation (R2)


def test_labelled_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [10, 20, 30, 3])
    m = labelled_split(y, 0.1, seed=3)
    assert [int(m[y == c].sum()) for c in range(4)] == [1, 2, 3, 1]
    assert (labelled_split(y, 0.1, seed=3) == m).all() and not (labelled_split(y, 0.1, seed=4) == m).all()
    with pytest.raises(InvalidParameterError, match=r"\(0, 1\)"):
        labelled_split(y, 1.0, seed=0)


def test_propagation_graphs_share_candidates(rng):
    X = rng.normal(size=(120, 5))
    gs = propagation_graphs(X, 10, ["knn", "nnk-max", "nnk-reference", "nnk-min"])
    # the kNN graph is the union of the brute-force 10-NN lists
    idx, _ = brute_knn(X, 10)
    brute = sp.csr_array((np.ones(idx.size), (np.repeat(np.arange(120), 10), idx.ravel())), shape=(120, 120))
    brute = brute.maximum(brute.T)
    A, edges = gs["knn"]
    assert edges == brute.nnz and ((A > 0).astype(int) != (brute > 0).astype(int)).nnz == 0
    for A, _ in gs.values():
        assert abs(A - A.T).max() == 0 and A.min() >= 0 and A.diagonal().max() == 0
        # every NNK edge joins two points that are kNN candidates of one another's lists
        assert ((A > 0).astype(int) - (A > 0).astype(int).multiply(brute > 0)).nnz == 0
    assert gs["knn"][1] > gs["nnk-max"][1] > gs["nnk-min"][1]
    with pytest.raises(InvalidParameterError, match="unknown graph"):
        propagation_graphs(X, 5, ["nnk-sideways"])


def test_propagation_error_counts_unreachable_nodes():
    # nodes 0-1 labelled/unlabelled pair; nodes 2-3 a component without any label
    A = sp.csr_array(np.array([[0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 0, 1.0, 0]]))
    r = propagation_error(A, np.array([0, 0, 1, 1]), np.array([True, False, False, False]))
    assert r == {"error": 2 / 3, "unreachable": 2, "isolated_nodes": 0}


def test_label_propagation_quick(tmp_path):
    store, t, page = quick("label-propagation", tmp_path)
    assert list(t.columns[:4]) == ["graph", "k", "split", "error"]
    assert len(t) == 3 * 2 * 2 and t.error.between(0, 1).all()
    e = t.groupby(["graph", "k"]).edges.first()
    # NNK keeps a subset of the kNN edges; the reference rule fewer still
    assert (e["knn"] > e["nnk-max"]).all() and (e["nnk-max"] > e["nnk-reference"]).all()
    assert "Label propagation" in page and "best NNK graph" in page


# ---------------------------------------------------------------------------------------------------------------
# reliability: AUROC, label noise, OOD


@pytest.mark.parametrize("seed", range(6))
def test_auroc_matches_sklearn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    from nnkscope.measures.reliability import auroc

    r = np.random.default_rng(seed)
    n = int(r.integers(5, 300))
    y = r.random(n) < r.uniform(0.1, 0.9)
    y[:2] = [True, False]
    # integer scores: many ties, the case where averaging ranks matters
    s = r.integers(0, 4, n) + y * r.integers(0, 2, n) if seed % 2 else r.normal(size=n) + y
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc(-s, y) == pytest.approx(1 - roc_auc_score(y, s), abs=1e-12)


def test_auroc_and_precision_edge_cases():
    from nnkscope.measures.reliability import auroc, precision_at_n

    assert auroc(np.ones(6), [1, 0, 1, 0, 0, 1]) == 0.5
    assert auroc([0.0, 1.0, 2.0], [0, 0, 1]) == 1.0
    with pytest.raises(InvalidParameterError, match="both positives and negatives"):
        auroc([0.1, 0.2], [True, True])
    with pytest.raises(InvalidParameterError, match="0/1"):
        auroc([0.1, 0.2], [2, 0])
    with pytest.raises(InvalidParameterError, match="finite"):
        auroc([np.nan, 0.2], [1, 0])
    assert precision_at_n([3.0, 2.0, 1.0, 0.0], [1, 0, 1, 0]) == 0.5
    assert precision_at_n([3.0, 2.0, 1.0, 0.0], [1, 0, 1, 0], n=1) == 1.0


def test_flip_labels():
    from nnkscope.measures.reliability import flip_labels

    y = np.repeat(np.array(["a", "b", "c", "d"]), 250)
    noisy, flipped = flip_labels(y, 0.1, seed=7)
    assert flipped.sum() == 100 and (noisy[flipped] != y[flipped]).all() and (noisy[~flipped] == y[~flipped]).all()
    # the new label is any of the other classes
    assert set(noisy[flipped & (y == "a")]) == {"b", "c", "d"}
    again, f2 = flip_labels(y, 0.1, seed=7)
    assert (again == noisy).all() and (f2 == flipped).all()
    with pytest.raises(InvalidParameterError, match=r"\(0, 1\)"):
        flip_labels(y, 0.0)


def test_label_noise_scores_against_brute_force(digits, digits_labels):
    from helpers import dense_kernel, nnls_oracle

    from nnkscope.measures.reliability import flip_labels, label_noise_scores

    X, y = digits[:150], digits_labels[:150]
    noisy, _ = flip_labels(y, 0.1, seed=0)
    k = 8
    s = label_noise_scores(X, noisy, k)
    idx, _ = brute_knn(X, k, "cosine")
    K = dense_kernel(X, "cosine")
    for i in range(len(X)):
        same = noisy[idx[i]] == noisy[i]
        assert s["knn"][i] == pytest.approx(1 - same.mean(), abs=1e-12)
        g = K[idx[i], i]
        assert s["wknn"][i] == pytest.approx(1 - g[same].sum() / g.sum(), abs=1e-12)
        theta = nnls_oracle(K[np.ix_(idx[i], idx[i])], g, 1e-10)
        assert s["nnk"][i] == pytest.approx(1 - theta[same].sum() / theta.sum(), abs=1e-6)


def test_ood_scores_components(digits, digits_labels):
    from nnkscope.errors import InputShapeError
    from nnkscope.measures.reliability import ood_scores

    inside = digits_labels < 8
    Xtr, Q = digits[inside][:400], digits[:60]
    s = ood_scores(Xtr, Q, k=10, n_atoms=20)
    U = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
    brute = np.sort(1 - U(Q) @ U(Xtr).T, axis=1)[:, 9]
    np.testing.assert_allclose(s["knn_distance"], brute, atol=1e-9)
    assert ((s["interpolation_error"] >= 0) & (s["interpolation_error"] <= 1)).all()
    np.testing.assert_allclose(s["score"], (s["interpolation_error"] + s["nnk_means_error"]) / 2)
    with pytest.raises(InputShapeError, match="features"):
        ood_scores(Xtr, Q[:, :5])


def test_reliability_quick_beats_chance(tmp_path):
    store, t, page = quick("reliability", tmp_path)
    ln, ood = store.read("label_noise").iloc[0], store.read("ood").iloc[0]
    # margins over chance (0.5) stated: label noise >= 0.4 above chance, OOD >= 0.25 above chance
    # (observed on this config: 0.994 and 0.921)
    assert ln.auroc >= 0.9 and ln.baseline_auroc >= 0.9
    assert ood.auroc >= 0.75 and ood.auroc_interpolation_error >= 0.75
    assert ln.n_flipped == 50 and ood.n_out > 0 and ood.n_in + ood.n_out == 200
    assert set(t.task) == {"label noise", "OOD"} and {"auroc", "baseline_auroc"} <= set(t.columns)
    assert "kNN distance" in page
    with pytest.raises(InvalidParameterError, match="held_out"):
        quick("reliability", tmp_path / "bad", held_out=[[42]])
    with pytest.raises(InvalidParameterError, match="held_out must be"):
        resolve_config("reliability", {"held_out": [8, 9]})


# ---------------------------------------------------------------------------------------------------------------
# robustness


def test_support_jaccard_against_sets(rng):
    from nnkscope.studies.robustness import support_jaccard

    ca, cb = rng.integers(0, 30, (50, 8)), rng.integers(0, 30, (50, 8))
    ta, tb = rng.random((50, 8)) * (rng.random((50, 8)) < 0.5), rng.random((50, 8)) * (rng.random((50, 8)) < 0.5)
    got = support_jaccard(ca, ta, cb, tb)
    for i in range(50):
        a, b = set(ca[i][ta[i] > 0]), set(cb[i][tb[i] > 0])
        assert got[i] == (len(a & b) / len(a | b) if a | b else 1.0)


def test_overlap_is_one_at_zero_perturbation_and_falls_with_strength(digits, digits_labels):
    from nnkscope.studies.robustness import layer_robustness

    ref, ref_y = digits[:600], digits_labels[:600]
    F, y = digits[1000:1150], digits_labels[1000:1150]
    r = np.random.default_rng(0)
    noise = r.normal(size=F.shape)
    rows = [layer_robustness(ref, ref, ref_y, F, F + s * noise, y, k=10) for s in (0.0, 1.0, 3.0, 6.0)]
    assert rows[0]["overlap"] == 1.0 and rows[0]["diameter_change"] == 0.0 and rows[0]["degree_change"] == 0.0
    overlaps = [row["overlap"] for row in rows]
    assert all(a > b for a, b in zip(overlaps, overlaps[1:], strict=False)), overlaps
    assert rows[-1]["nnk_error"] > rows[0]["nnk_error"]
    # dead (all-zero) rows are counted and cannot agree
    dead = F.copy()
    dead[:5] = 0
    d = layer_robustness(ref, ref, ref_y, F, dead, y, k=10)
    assert d["dead_rows"] == 5 and d["overlap"] == pytest.approx(145 / 150)


def test_robustness_quick(tmp_path):
    store, t, page = quick("robustness", tmp_path)
    assert list(t.columns[:8]) == ["model", "layer", "perturbation", "strength", "overlap", "diameter", "loo_error",
                                   "accuracy"]
    clean = t[t.strength == 0]
    assert (clean.overlap == 1.0).all() and clean.accuracy.nunique() == 1 and clean.loo_error.nunique() == 2
    strong = t[t.strength > 0]
    assert (strong.overlap < 0.9).all() and (strong.groupby("perturbation").accuracy.first()
                                             < clean.accuracy.iloc[0]).all()
    d = store.read("adversarial_detector").set_index("score")
    # the NNK detector beats chance by at least 0.1 on this config (observed: interpolation error 0.83, score 0.79)
    assert d.loc["interpolation_error", "auroc"] >= 0.6 and d.loc["score", "auroc"] >= 0.6
    assert 0 < d.attack_success.iloc[0] <= 1
    assert "Detector" in page and "NNK-neighbour overlap" in page
    with pytest.raises(InvalidParameterError, match="perturbations"):
        resolve_config("robustness", {"perturbations": {"gaussian": [-0.1]}})
    with pytest.raises(InvalidParameterError, match="unknown key"):
        resolve_config("robustness", {"perturbations": {"pgd_l3": [0.1]}})


# ---------------------------------------------------------------------------------------------------------------
# channel redundancy (R5)


def test_identical_channels_overlap_fully(rng):
    from nnkscope.studies.redundancy import channel_overlap, channel_supports, layer_redundancy

    M = np.abs(rng.normal(size=(150, 6))) + 0.1
    # the same map three times (one rescaled: the cosine kernel ignores scale): every pair agrees everywhere
    r = layer_redundancy([M, 2.0 * M, M], k=8)
    assert r["overlap"] == 1.0 and r["redundancy"] == pytest.approx(1 - 1 / 3)
    assert r["overlap_baseline"] < 0.2 and r["overlap_ratio"] > 5 and r["active_fraction"] == 1.0
    # independent channels agree about as often as the permutation baseline
    ind = layer_redundancy([np.abs(rng.normal(size=(150, 6))) + 0.1 for _ in range(3)], k=8, seed=1)
    assert ind["overlap_ratio"] < 2.0 and ind["overlap"] < 0.2
    # support matrices hold exactly the NNK neighbours of each channel's graph
    from nnkscope import nnk_graph

    S, active = channel_supports([M], k=8)
    G = nnk_graph(M, 8, kernel="cosine", duplicates="drop")
    for i in (0, 17, 149):
        assert sorted(S[0][[i]].indices) == sorted(G.candidates[i][G.theta[i] > 0])
    assert channel_overlap(S * 2, np.ones((2, 150), bool))["overlap"] == 1.0


def test_dead_channel_entries_are_left_out(rng):
    from nnkscope.studies.redundancy import channel_supports, layer_redundancy, permute_supports

    M = np.abs(rng.normal(size=(120, 5))) + 0.1
    D = M.copy()
    D[:30] = 0.0  # channel 2 is dead on the first 30 points
    S, active = channel_supports([M, D], k=6)
    assert active[1, :30].sum() == 0 and active[1, 30:].all() and active[0].all()
    assert np.diff(S[1].indptr)[:30].sum() == 0
    # no live point has a dead one as an NNK neighbour in the dead channel's graph
    assert not np.isin(S[1].tocoo().col, np.arange(30)).any()
    r = layer_redundancy([M, D], k=6)
    assert r["active_fraction"] == pytest.approx(210 / 240)
    # the permutation keeps each channel's number of neighbours and of active points
    P, Pa = permute_supports(S, active, seed=0)
    assert [p.nnz for p in P] == [s.nnz for s in S] and (Pa.sum(1) == active.sum(1)).all()
    dead = layer_redundancy([M, np.zeros_like(M)], k=6)
    assert dead["dead_channels"] == 1 and np.isnan(dead["overlap"])


def test_redundancy_quick(tmp_path):
    pytest.importorskip("mnist1d")
    store, t, page = quick("redundancy", tmp_path)
    assert list(t.layer.unique()) == ["trunk.1", "trunk.3", "trunk.6", "channels"]
    assert len(t) == 2 * 4 and t.overlap.between(0, 1).all()
    # R5's check: in the trunk layers channels overlap far above chance (>= 3x the permutation baseline)
    trunk = t[t.layer != "channels"]
    assert (trunk.overlap_ratio >= 3).all(), trunk[["layer", "overlap", "overlap_baseline"]]
    pr = store.read("channel_pruning")
    assert len(pr) == 2 * (3 * 4 + 3) and pr.accuracy_drop.between(-1, 1).all()
    assert "Channel redundancy" in page and "Spearman" in page
    from nnkscope.studies.kinds.redundancy import correlations

    c = correlations(store)
    assert list(c.layer) == ["trunk.1", "trunk.3", "trunk.6", "channels"]
