"""Representation comparison: CKA against the HSIC formula, neighbourhood overlap against hand-made graphs."""

import numpy as np
import pytest
from helpers import clustered

from nnkscope import NNKGraph, nnk_graph
from nnkscope.errors import InputShapeError, InvalidParameterError
from nnkscope.measures.compare import compare_graphs, graph_agreement, linear_cka, neighbourhood_jaccard, shuffled


def _hsic_cka(X, Y):
    n = len(X)
    H = np.eye(n) - 1.0 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def test_cka_equals_the_hsic_formula_and_its_invariances(rng):
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(60, 9))
    Y[:, :5] += 2 * X  # related, different dimension
    assert abs(linear_cka(X, Y) - _hsic_cka(X, Y)) < 1e-12
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert abs(linear_cka(X, 7.0 * X @ Q + 3.0) - 1.0) < 1e-12
    assert linear_cka(X, X * np.array([1, 1, 1, 1, 50.0])) < 0.9  # not invariant to anisotropic scaling
    with pytest.raises(InputShapeError, match="same points"):
        linear_cka(X, Y[:-1])
    with pytest.raises(InvalidParameterError, match="constant"):
        linear_cka(X, np.ones((60, 2)))


def _graph(rows, n):
    k = max(map(len, rows))
    cand = np.array([list(r) + [i for i in range(n) if i not in r][: k - len(r)] for r in rows])
    theta = np.array([[1.0] * len(r) + [0.0] * (k - len(r)) for r in rows])
    return NNKGraph(cand, theta, np.zeros(n), np.zeros(n, np.uint8))


def test_jaccard_and_agreement_by_hand():
    a = _graph([[1, 2], [0], [0]], 3)
    b = _graph([[2], [2], [0, 1]], 3)
    # node 0: {1,2} vs {2} -> 1/2; node 1: {0} vs {2} -> 0; node 2: {0} vs {0,1} -> 1/2
    assert neighbourhood_jaccard(a, b).tolist() == [0.5, 0.0, 0.5]
    # max-symmetrised unit weights: a has edges {01, 02}, b has {02, 12}: min-sum 2, max-sum 6
    assert graph_agreement(a, b) == pytest.approx(2 / 6, abs=1e-15)
    with pytest.raises(InputShapeError, match="same points"):
        neighbourhood_jaccard(a, _graph([[1], [0]], 2))


def test_graphs_across_dimensions():
    X = clustered(300, 8, seed=2)
    padded = np.hstack([X, np.zeros((300, 5))])  # the same geometry in 13 dimensions
    G, H = nnk_graph(X, 12), nnk_graph(padded, 12)
    res = compare_graphs(G, H)
    assert res["jaccard"] == 1.0 and res["edge_agreement"] == 1.0 and res["degree_spearman"] == pytest.approx(1)
    assert res["jaccard_shuffled"] < 0.05 and res["jaccard_ratio"] > 20
    noisy = nnk_graph(X + 0.3 * np.random.default_rng(0).normal(size=X.shape), 12)
    part = compare_graphs(G, noisy)
    assert res["jaccard_shuffled"] < part["jaccard"] < 1.0


def test_shuffled_is_an_isomorphic_relabelling():
    G = nnk_graph(clustered(120, 4, seed=1), 8)
    S = shuffled(G, seed=3)
    perm = np.random.default_rng(3).permutation(G.n_nodes)
    P = np.eye(G.n_nodes)[perm].T  # P @ e_i = e_perm[i]
    A, B = G.adjacency().toarray(), S.adjacency().toarray()
    assert np.array_equal(B, P @ A @ P.T)
    assert np.array_equal(np.sort(S.n_neighbors), np.sort(G.n_neighbors))
