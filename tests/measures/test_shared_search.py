"""Sharing one neighbour search between the metrics of a layer changes no number."""

import numpy as np

from nnkscope import GraphSettings, build_graph
from nnkscope.measures.labels import label_variation
from nnkscope.measures.manifold import curvature, local_dimension, tangent_spaces


def test_label_variation_from_the_graph_candidates_equals_its_own_search(digits, digits_labels):
    X, y = digits[:600], digits_labels[:600]  # integer pixels: many exact distance ties
    parts = build_graph(X, None, settings=GraphSettings(k=20, kernel="cosine", duplicates="keep"))
    g = parts.read(0, ["candidates", "distances"])
    for k in (1, 5, 10, 20):
        assert label_variation(X, y, k) == label_variation(X, y, k, neighbors=(g["candidates"], g["distances"]))


def test_small_gram_loops_match_dense_linear_algebra():
    r = np.random.default_rng(3)
    X = r.normal(size=(80, 30))
    cand = np.stack([r.choice(np.delete(np.arange(80), i), 8, replace=False) for i in range(80)])
    theta = r.uniform(size=cand.shape) * (r.uniform(size=cand.shape) > 0.3)
    U = tangent_spaces(X, cand, 3)
    for i in (0, 17, 79):  # oracle: SVD of the centred point + candidates
        B = X[np.r_[i, cand[i]]]
        B = B - B.mean(0)
        Vt = np.linalg.svd(B, full_matrices=False)[2][:3]
        assert np.allclose(np.abs(U[i] @ Vt.T), np.eye(3), atol=1e-8)
    curv = curvature(X, cand, theta, dim=3, tangents=U)
    for i in (0, 40):
        nb = cand[i][theta[i] > 0]
        want = np.mean([1 - np.linalg.norm(U[i] @ U[j].T) ** 2 / 3 for j in nb])
        assert abs(curv[i] - want) < 1e-12
    ids, ratio = local_dimension(X, cand, theta, energy=0.9)
    i = 5
    sel = theta[i] > 0
    w = theta[i][sel] / theta[i][sel].sum()
    D = (X[cand[i][sel]] - X[i]) * np.sqrt(w)[:, None]
    lam = np.sort(np.linalg.eigvalsh(D.T @ D))[::-1]
    assert ids[i] == int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.9 - 1e-15) + 1)
    assert abs(ratio[i] - lam[0] / lam.sum()) < 1e-12
