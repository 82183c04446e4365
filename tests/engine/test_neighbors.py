"""Candidate search: exactness, ties, self-exclusion, duplicates, streaming, approximate recall."""

import numpy as np
import pytest
from helpers import brute_knn, clustered

from nnkscope import ExactSearch, HNSWSearch, IVFSearch, knn
from nnkscope.errors import DuplicatePointsError, TooFewPointsError


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_search_equals_brute_force(metric, dtype):
    X = clustered(1500, 24, seed=1).astype(dtype)
    nb = knn(X, 20, metric=metric)
    idx, dist = brute_knn(X, 20, metric)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12, atol=1e-12)


def test_ties_go_to_the_lower_index_on_integer_data(digits):
    # digits are small integers: many exactly tied distances, also at the k-th position
    nb = knn(digits, 15)
    idx, dist = brute_knn(digits, 15)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_array_equal(nb.distances, dist)


def test_lattice_with_ties_wider_than_the_window():
    # every point of a 1-D lattice has two neighbours at each distance; k = 7 ends inside a tie
    X = np.arange(40, dtype=np.float64)[:, None]
    nb = knn(X, 7, method=ExactSearch(margin=0, block_size=7))
    idx, _ = brute_knn(X, 7)
    np.testing.assert_array_equal(nb.indices, idx)


def test_self_is_excluded_even_among_many_duplicates():
    X = np.repeat(np.arange(6, dtype=np.float64)[:, None], 25, axis=0)  # 25 copies of each value
    nb = knn(X, 30, duplicates="keep", method=ExactSearch(margin=1))
    assert not (nb.indices == np.arange(len(X))[:, None]).any()
    idx, _ = brute_knn(X, 30)
    np.testing.assert_array_equal(nb.indices, idx)
    assert nb.n_with_duplicate == len(X)


def test_drop_duplicates_removes_identical_points():
    X = np.repeat(np.arange(6, dtype=np.float64)[:, None], 25, axis=0)
    nb = knn(X, 30, duplicates="drop")
    assert (nb.distances > 0).all()
    # the closest distinct points are the 25 copies of each adjacent value
    assert (nb.distances[:, 0] == 1.0).all()
    with pytest.raises(TooFewPointsError, match="distinct neighbours"):
        knn(X[:30], 10, duplicates="drop")  # two values x 15 copies: only 15 distinct neighbours each


def test_duplicates_error_names_the_fix():
    X = np.vstack([np.eye(4), np.eye(4)[:1]])
    with pytest.raises(DuplicatePointsError, match="duplicates='drop'"):
        knn(X, 2, duplicates="error")


def test_cosine_duplicates_are_same_direction():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    nb = knn(X, 2, metric="cosine", duplicates="drop")
    assert 1 not in nb.indices[0] and 0 not in nb.indices[1]


def test_block_streaming_and_threads_do_not_change_the_result():
    X = clustered(2000, 16, seed=2)
    a = knn(X, 10, n_jobs=1)
    b = knn(X, 10, method=ExactSearch(block_size=97), n_jobs=2)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_hnsw_recall_is_reported_and_correct():
    X = clustered(3000, 32, seed=3)
    exact = knn(X, 15)
    approx = knn(X, 15, method=HNSWSearch(M=16, ef_search=64, recall_sample=3000, seed=0))
    true_recall = np.mean([np.intersect1d(a, b).size for a, b in zip(approx.indices, exact.indices, strict=True)])
    true_recall /= 15
    assert approx.recall == pytest.approx(true_recall, abs=1e-12)  # sample = every row: must be exact
    assert approx.recall > 0.95
    # sampled estimate on a subset stays close to the truth
    sub = knn(X, 15, method=HNSWSearch(M=16, ef_search=64, recall_sample=500, seed=1))
    assert abs(sub.recall - true_recall) < 0.02
    # candidates are still sorted by exact distance with self excluded
    assert (np.diff(approx.distances, axis=1) >= 0).all()
    assert not (approx.indices == np.arange(len(X))[:, None]).any()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_ivf_recall_is_measured_and_grows_with_nprobe(metric):
    X = clustered(3000, 32, seed=3)
    exact = knn(X, 15, metric=metric)
    recalls = []
    for nprobe in (1, 4, 64):
        approx = knn(X, 15, metric=metric, method=IVFSearch(nlist=64, nprobe=nprobe, recall_sample=3000))
        true = np.mean([np.intersect1d(a, b).size for a, b in zip(approx.indices, exact.indices, strict=True)]) / 15
        assert approx.recall == pytest.approx(true, abs=1e-12)  # sample = every row
        assert (np.diff(approx.distances, axis=1) >= 0).all() and (approx.indices >= 0).all()
        recalls.append(true)
    assert recalls[0] < recalls[1] < recalls[2] == 1.0  # all 64 cells probed: exhaustive


@pytest.mark.parametrize("nprobe", [1, 3, 16])
def test_ivf_windows_are_the_probed_cells_best(nprobe):
    """The IVF windows, computed as one product per probed cell, are each query's best ``width`` points among the
    members of its ``nprobe`` nearest cells (a float64 oracle of IndexIVFFlat's definition), and equal faiss's
    own ``index.search`` wherever float32 rounding cannot reorder the window's boundary."""
    from nnkscope.engine.neighbors import _ivf_search, _Space

    X = clustered(2500, 16, seed=5)
    space = _Space.build(X, "euclidean")
    index = IVFSearch(nlist=24, nprobe=nprobe, train_size=2500).searcher(space)
    Q, width = space.Xs[::7], 12
    got_d, got_i = _ivf_search(index, space, Q, width)
    cells = index.quantizer.search(space.Xs, 1)[1][:, 0]  # each database row's cell, as faiss assigned it
    probes = index.quantizer.search(Q, nprobe)[1]
    Xs64 = space.Xs.astype(np.float64)
    for r, q in enumerate(Q.astype(np.float64)):
        members = np.flatnonzero(np.isin(cells, probes[r]))
        d2 = ((Xs64[members] - q) ** 2).sum(axis=1)
        order = np.lexsort((members, d2))[:width]
        n = order.size
        assert (got_i[r, n:] == -1).all()  # probed cells with fewer points than the window: padded
        blur = 1e-5 * (np.linalg.norm(q) + space.rmax) ** 2  # float32's error in |q|^2 + |x|^2 - 2 q.x, widely
        gap = np.sort(d2)[n] - d2[order[-1]] if members.size > n else np.inf
        if gap > blur:  # a boundary float32 cannot blur: the same window
            assert set(got_i[r, :n]) == set(members[order])
        np.testing.assert_allclose(np.sort(got_d[r, :n]), np.sort(d2[order]), rtol=0, atol=blur)
    ref_d, ref_i = index.search(Q, width)
    same = [set(a[a >= 0]) == set(b[b >= 0]) for a, b in zip(got_i, ref_i, strict=True)]
    assert np.mean(same) > 0.99


def test_ivf_rows_whose_cells_run_out_fall_back_to_exact():
    # 10 tight clusters of 40 points, one cell each: a query probing its own cell finds 39 others, fewer than k=45
    r = np.random.default_rng(0)
    X = np.repeat(r.normal(scale=50, size=(10, 8)), 40, axis=0) + r.normal(size=(400, 8))
    got = knn(X, 45, method=IVFSearch(nlist=10, nprobe=1, train_size=400, recall_sample=400))
    assert (got.indices >= 0).all() and (np.diff(got.distances, axis=1) >= 0).all()
    assert not (got.indices == np.arange(400)[:, None]).any()
    exact = knn(X, 45)
    true = np.mean([np.intersect1d(a, b).size for a, b in zip(got.indices, exact.indices, strict=True)]) / 45
    assert got.recall == pytest.approx(true, abs=1e-12) and true > 0.9


def test_hnsw_effort_raises_recall_on_hard_data():
    X = np.random.default_rng(4).normal(size=(4000, 64)).astype(np.float32)  # isotropic: hard for HNSW
    low = knn(X, 20, method=HNSWSearch(M=4, ef_construction=16, ef_search=20, recall_sample=500))
    high = knn(X, 20, method=HNSWSearch(M=32, ef_construction=200, ef_search=256, recall_sample=500))
    assert low.recall < high.recall
    assert high.recall > 0.9
