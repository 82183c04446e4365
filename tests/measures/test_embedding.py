"""Laplacian eigenmaps of NNK graphs: clusters separate, a ring maps to a circle, scikit-learn agrees on connected
graphs (both solver paths), and the documented layout of disconnected graphs and isolated nodes."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from nnkscope import nnk_graph
from nnkscope.errors import InputShapeError, InvalidParameterError, TooFewPointsError
from nnkscope.measures import embedding
from nnkscope.measures.embedding import spectral_embedding


def _sklearn(A, n_components):
    from sklearn.manifold import SpectralEmbedding

    A = sp.csr_matrix(A)
    A.indices, A.indptr = A.indices.astype(np.int32), A.indptr.astype(np.int32)  # sklearn wants 32-bit indices
    return SpectralEmbedding(n_components, affinity="precomputed", random_state=0,
                             eigen_solver="arpack").fit_transform(A)


def _connected_graph(n, seed):
    """A connected random geometric graph: kNN-style edges plus a path through all nodes."""
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 3))
    G = nnk_graph(X, 10)
    order = np.argsort(X[:, 0])
    chain = sp.coo_array((np.full(n - 1, 0.05), (order[:-1], order[1:])), shape=(n, n))  # one component for sure
    return sp.csr_array(G.adjacency().maximum(chain).maximum(chain.T))


@pytest.mark.parametrize("n", [300, 1500])  # dense eigh path, sparse shift-invert path
def test_agrees_with_sklearn_on_connected_graphs(n):
    A = _connected_graph(n, seed=n)
    Y = spectral_embedding(A, 3)
    S = _sklearn(A, 3)
    for c in range(3):
        sign = np.sign(Y[:, c] @ S[:, c])
        np.testing.assert_allclose(Y[:, c], sign * S[:, c], atol=1e-7 * np.abs(S[:, c]).max())


def test_two_clusters_separate_on_the_first_coordinate():
    r = np.random.default_rng(0)
    a, b = r.normal(size=(150, 4)), r.normal(size=(150, 4)) + 12.0
    G = nnk_graph(np.vstack([a, b]), 10)  # far apart: two components
    Y = spectral_embedding(G)
    assert Y[:150, 0].max() < Y[150:, 0].min() or Y[150:, 0].max() < Y[:150, 0].min()
    # joined by one bridge the graph is connected: the Fiedler coordinate separates them by sign
    A = G.adjacency().tolil()
    A[0, 150] = A[150, 0] = 1e-3
    Y = spectral_embedding(sp.csr_array(A))
    assert (np.sign(Y[:150, 0]) == np.sign(Y[0, 0])).all() and (np.sign(Y[150:, 0]) == -np.sign(Y[0, 0])).all()


@pytest.mark.parametrize("n", [400, 1500])
def test_a_ring_maps_to_a_circle(n):
    # evenly spaced with jitter: NNK links every point to both sides, so the graph is one cycle (uniform random
    # samples leave gaps that NNK does not bridge, which would split the ring)
    t = (np.arange(n) + np.random.default_rng(n).uniform(-0.3, 0.3, n)) * 2 * np.pi / n
    X = np.c_[np.cos(t), np.sin(t), 0.3 * np.cos(3 * t)]  # a bent closed curve in R^3
    G = nnk_graph(X, 8)
    assert connected_components(G.adjacency())[0] == 1
    Y = spectral_embedding(G)
    angle = np.arctan2(Y[:, 1], Y[:, 0])
    step = np.angle(np.exp(1j * (np.roll(angle, -1) - angle)))
    assert (step > 0).all() or (step < 0).all()  # angles monotone along the ring, once around
    assert abs(abs(step.sum()) - 2 * np.pi) < 1e-9
    radius = np.hypot(Y[:, 0], Y[:, 1])
    assert radius.std() < 0.02 * radius.mean()
    assert spectral_embedding(G, seed=0).tolist() == Y.tolist()  # deterministic


def test_disconnected_layout_and_isolated_nodes():
    def path(m):
        return sp.diags_array([np.ones(m - 1), np.ones(m - 1)], offsets=[1, -1])

    # components: a 6-path (nodes 3..8), a 4-path (nodes 9..12); isolated: 0, 1, 2; a self-loop on 2 is ignored
    A = sp.block_diag([sp.csr_array((3, 3)), path(6), path(4)]).tolil()
    A[2, 2] = 5.0
    Y = spectral_embedding(sp.csr_array(A), 2)
    big, small = Y[3:9], Y[9:13]
    assert np.allclose(np.abs(big - [0, 0]).max(axis=0), 1.0) and np.allclose(np.abs(small - [3, 0]).max(axis=0), 1.0)
    np.testing.assert_array_equal(Y[:3], [[6.0, 0.0]] * 3)
    # each component is its own eigenmap: the 6-path's coordinates are its Fiedler vector etc., scaled
    alone = spectral_embedding(path(6), 2)
    np.testing.assert_allclose(big, alone / np.abs(alone).max(axis=0), atol=1e-12)
    # a component with fewer coordinates than asked: a 2-node component has one, the rest are 0
    Y = spectral_embedding(sp.block_diag([path(5), path(2)]), 3)
    np.testing.assert_allclose(Y[5:, 1:], 0.0)


def test_bad_input():
    A = sp.random_array((20, 20), density=0.3, rng=0)
    with pytest.raises(InvalidParameterError, match="symmetric"):
        spectral_embedding(A)
    S = (A + A.T).toarray()
    with pytest.raises(InvalidParameterError, match="negative"):
        spectral_embedding(-S)
    bad = S.copy()
    bad[1, 2] = bad[2, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="NaN"):
        spectral_embedding(bad)
    with pytest.raises(InputShapeError, match="square"):
        spectral_embedding(S[:, :5])
    with pytest.raises(InvalidParameterError, match="n_components"):
        spectral_embedding(S, 0)
    with pytest.raises(TooFewPointsError):
        spectral_embedding(S[:3, :3], 3)
    with pytest.raises(InvalidParameterError, match="rule"):
        spectral_embedding(S, rule="max")
    assert embedding.DENSE_MAX < 1500  # the sparse path above is exercised
