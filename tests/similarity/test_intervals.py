"""similarity_ci: coordinate measures are bootstrap_ci / permutation_test on the measure; neighbourhood measures
reweight per-point terms of fixed graphs, and a permutation is an exact relabelling of B's graph."""

import numpy as np
import pytest

from nnkscope.errors import InvalidParameterError
from nnkscope.measures.compare import neighbourhood_jaccard
from nnkscope.measures.uncertainty import bootstrap_ci, bootstrap_weights, permutation_test
from nnkscope.similarity import mutual_knn, nnk_edge_agreement, nnk_jaccard, similarity, similarity_ci
from nnkscope.similarity.intervals import _relabel
from nnkscope.similarity.neighbours import nnk_graph_of


@pytest.fixture
def pair():
    r = np.random.default_rng(0)
    A = r.normal(size=(120, 6))
    return A, A @ r.normal(size=(6, 4)) + 0.8 * r.normal(size=(120, 4))


def test_coordinate_measures_use_the_documented_resamples(pair):
    A, B = pair
    for name in ("linear_cka", "procrustes"):
        out = similarity_ci(A, B, name, n_boot=60, n_perm=39, seed=3)
        stat = lambda a, b, name=name: similarity(a, b, name)  # noqa: E731
        assert out["value"] == similarity(A, B, name)
        assert (out["ci_low"], out["ci_high"]) == bootstrap_ci(stat, A, B, n_boot=60, seed=3)
        alt = "greater" if name == "linear_cka" else "less"  # Procrustes is a distance: small = similar
        assert out["p_value"] == permutation_test(stat, A, B, 39, seed=3, alternative=alt)
        assert out["ci_low"] <= out["value"] <= out["ci_high"]
    assert np.isnan(similarity_ci(A, B, n_boot=0)["ci_low"]) and np.isnan(similarity_ci(A, B, n_boot=5)["p_value"])


def test_relabelled_graph_is_the_graph_of_the_permuted_rows(pair):
    _, B = pair
    perm = np.random.default_rng(1).permutation(len(B))
    G, Gp = nnk_graph_of(B, k=8), nnk_graph_of(B[perm], k=8)
    R = _relabel(G, perm)
    assert np.array_equal(R.candidates, Gp.candidates)
    np.testing.assert_allclose(R.theta, Gp.theta, atol=1e-12)


def test_neighbourhood_measures_reweight_fixed_graphs(pair):
    A, B = pair
    for name, fn, opts in (("nnk_jaccard", nnk_jaccard, {"k": 8}), ("nnk_edge_agreement", nnk_edge_agreement,
                                                                    {"k": 8}), ("mutual_knn", mutual_knn, {"k": 6})):
        out = similarity_ci(A, B, name, n_boot=50, n_perm=19, seed=2, **opts)
        assert out["value"] == pytest.approx(fn(A, B, **opts), rel=1e-12)
        assert out["ci_low"] <= out["value"] <= out["ci_high"]
        assert out == similarity_ci(A, B, name, n_boot=50, n_perm=19, seed=2, **opts)  # seeded
        same = similarity_ci(A, 3 * A, name, n_boot=10, n_perm=19, seed=2, **opts)
        assert same["value"] == pytest.approx(1.0) and same["p_value"] == 1 / 20
    # the Jaccard interval by hand: the weighted means of the per-node overlaps of the two fixed graphs
    Ga, Gb = nnk_graph_of(A, k=8), nnk_graph_of(B, k=8)
    per_node = neighbourhood_jaccard(Ga, Gb)
    reps = np.concatenate([W @ per_node / W.sum(1) for W in bootstrap_weights(len(A), 50, 2)])
    out = similarity_ci(Ga, Gb, "nnk_jaccard", n_boot=50, seed=2)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), rel=1e-12)


def test_permutation_p_values_are_valid_under_the_null():
    # independent representations: P(p <= 0.1) <= 0.1; 60 pairs, so at most ~14 such p-values (P < 1e-3)
    ps = [similarity_ci(*np.random.default_rng(s).normal(size=(2, 60, 3)), "nnk_jaccard", n_boot=0, n_perm=19,
                        seed=s, k=6)["p_value"] for s in range(60)]
    assert sum(p <= 0.1 for p in ps) <= 14


def test_refusals(pair):
    A, B = pair
    with pytest.raises(InvalidParameterError, match="no bootstrap interval for cknna"):
        similarity_ci(A, B, "cknna", n_boot=10)
    assert 0 < similarity_ci(A, B, "cknna", n_boot=0, n_perm=9)["p_value"] <= 1
    with pytest.raises(InvalidParameterError, match="n_boot"):
        similarity_ci(A, B, n_boot=-1)
    with pytest.raises(InvalidParameterError, match="arrays"):
        similarity_ci(nnk_graph_of(A, k=8), nnk_graph_of(B, k=8), "linear_cka")
