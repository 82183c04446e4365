"""Exact kNN equals a float64 brute force for every input the range check admits: offsets and scales float32
cannot hold, float32 overflow, multi-scale data that only float64 resolves, in knn and in the graph pipeline."""

import numpy as np
import pytest
from helpers import brute_knn, clustered
from hypothesis import given, settings
from hypothesis import strategies as st

from nnkscope import build_graph, knn, nnk_graph
from nnkscope.engine import neighbors as nbm
from nnkscope.errors import DuplicatePointsError

BASE = np.random.default_rng(0).normal(size=(300, 8))
TWO_SCALES = np.vstack([BASE[:150], BASE[150:] + 1e8])  # unit clusters 1e8 apart: float32 cannot see inside one
HARD = {  # the measured failures (300/300 rows wrong before), and float32 overflow (a false "too few" error)
    "scaled 1e-25": (BASE * 1e-25, "euclidean"),
    "offset 1e8": (BASE + 1e8, "euclidean"),
    "cosine offset 1e4": (BASE + 1e4, "cosine"),
    "scaled 1e18": (BASE * 1e18, "euclidean"),
    "scaled 1e20": (BASE * 1e20, "euclidean"),
    "scaled 1e149": (BASE * 1e149, "euclidean"),
    "scaled 1e-149": (BASE * 1e-149, "euclidean"),
    "cosine scaled 1e30": (BASE * 1e30, "cosine"),
    "two scales": (TWO_SCALES, "euclidean"),
    "cosine two scales": (np.vstack([BASE[:150], BASE[150:] * 1e-3 + np.arange(1, 9)]), "cosine"),
}


def assert_brute_force(nb, X, k, metric):
    idx, dist = brute_knn(X, k, metric)
    np.testing.assert_array_equal(nb.indices, idx)
    if metric == "cosine":  # 1 - cos is rounded absolutely: ~1e-16 whatever its size
        np.testing.assert_allclose(nb.distances, dist, rtol=0, atol=8 * (X.shape[1] + 8) * 2.0**-53)
    else:
        np.testing.assert_allclose(nb.distances, dist, rtol=1e-12, atol=0)


@pytest.fixture
def scanned(monkeypatch):
    """Counts the rows the float64 fallback scans."""
    seen = []
    scan = nbm._scan_rows

    def counting(space, queries, in_sample, rows, *args):
        seen.append(rows.size)
        return scan(space, queries, in_sample, rows, *args)

    monkeypatch.setattr(nbm, "_scan_rows", counting)
    return seen


@pytest.mark.parametrize("case", sorted(HARD))
def test_hard_inputs_equal_brute_force(case):
    X, metric = HARD[case]
    assert_brute_force(knn(X, 10, metric=metric, duplicates="error"), X, 10, metric)


@pytest.mark.parametrize("case", ["scaled 1e-25", "offset 1e8", "cosine offset 1e4", "scaled 1e20"])
def test_centring_and_scaling_settle_in_float32(case, scanned):
    # these need no float64 fallback: the centred, scaled float32 copy resolves them
    X, metric = HARD[case]
    knn(X, 10, metric=metric)
    assert sum(scanned) == 0


def test_rows_float32_cannot_resolve_are_scanned_in_float64(scanned):
    assert_brute_force(knn(TWO_SCALES, 10), TWO_SCALES, 10, "euclidean")
    assert 150 <= sum(scanned) < 300  # the cluster at 1e8 (its spread is below float32's resolution there)


def test_ordinary_data_needs_no_fallback(scanned):
    for metric in ("euclidean", "cosine"):
        X = clustered(3000, 32, seed=7)
        assert_brute_force(knn(X, 20, metric=metric), X, 20, metric)
    assert sum(scanned) == 0


def test_queries_far_outside_the_database(scanned):
    X = BASE[:100]
    Q = np.vstack([BASE[100:110] * 1e25, BASE[110:120] + 3.0])  # the first ten overflow float32 once centred
    nb = knn(X, 7, queries=Q)
    D = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), D.shape), D), axis=1)[:, :7]
    np.testing.assert_array_equal(nb.indices, order)
    assert sum(scanned) >= 10


def test_float32_overflow_no_longer_reads_as_missing_neighbours():
    # faiss reports overflowed (inf) squared distances as "no result": every row used to lack neighbours
    X = BASE * 1e19
    nb = knn(X, 10, duplicates="error")
    assert nb.n_with_duplicate == 0
    assert_brute_force(nb, X, 10, "euclidean")


@pytest.mark.parametrize("scale, offset", [(1e-25, 0.0), (1.0, 1e8), (1e20, 0.0), (1e-3, 1e6)])
def test_real_duplicates_are_still_detected(scale, offset):
    X = BASE[:60] * scale + offset
    X[7] = X[3]
    X[50] = X[3]
    with pytest.raises(DuplicatePointsError, match="row 3"):
        knn(X, 5, duplicates="error")
    kept = knn(X, 5, duplicates="keep")
    assert kept.n_with_duplicate == 3
    assert kept.indices[3, :2].tolist() == [7, 50] and kept.indices[7, :2].tolist() == [3, 50]
    dropped = knn(X, 5, duplicates="drop")
    assert not np.isin(dropped.indices[[3, 7, 50]], [3, 7, 50]).any()
    assert (dropped.distances > 0).all()


def test_cosine_duplicates_at_extreme_scales():
    X = BASE[:40] * 1e30
    X[9] = 3 * X[2]  # same direction
    with pytest.raises(DuplicatePointsError, match="row 2"):
        knn(X, 5, metric="cosine", duplicates="error")
    assert knn(X, 5, metric="cosine").n_with_duplicate == 2


@pytest.mark.parametrize("case", ["scaled 1e-25", "offset 1e8", "cosine offset 1e4", "scaled 1e20", "two scales"])
def test_graph_pipeline_on_hard_inputs(case, tmp_path):
    X, metric = HARD[case]
    kernel = "cosine" if metric == "cosine" else "gaussian"
    idx, _ = brute_knn(X, 10, metric)
    G = nnk_graph(X, 10, kernel=kernel)
    np.testing.assert_array_equal(G.candidates, idx)
    np.save(tmp_path / "x.npy", X)
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 10, kernel=kernel, block_size=70, shard_size=128)
    assert parts.params["blocked"]["shards"] == 3
    np.testing.assert_array_equal(parts.to_graph().candidates, idx)
    np.testing.assert_array_equal(parts.to_graph().theta, G.theta)


@pytest.mark.parametrize("case", ["offset 1e8", "cosine offset 1e4", "scaled 1e20", "two scales"])
def test_torch_windows_on_hard_inputs(case):
    pytest.importorskip("torch")
    from nnkscope.engine.gpu import TorchSearch

    X, metric = HARD[case]
    nb = knn(X, 10, metric=metric, method=TorchSearch("cpu", block_size=64, db_chunk=100))
    assert_brute_force(nb, X, 10, metric)


# --------------------------------------------------------------------------------------------------------------
# property: any scale, offset and structure


def full_scan(X, k, metric):
    """The float64 fallback applied to every row: the answer the float32 windows must reproduce bit for bit."""
    n = len(X)
    space = nbm._Space.build(X, metric)
    idx, dist, dup = np.empty((n, k), np.int64), np.empty((n, k)), np.zeros(n, bool)
    nbm._scan_rows(space, space, True, np.arange(n, dtype=np.int64), k, False, idx, dist, dup)
    return idx, dist


def float64_tolerance(X, bd, metric):
    """How far two float64 evaluations of one distance (different summation orders) can differ, per row."""
    d = X.shape[1]
    if metric == "cosine":
        return np.full(len(X), 8 * (d + 8) * 2.0**-53)
    return 4 * (d + 8) * 2.0**-53 * bd[:, -1] + 1e-300


@st.composite
def point_sets(draw):
    n = draw(st.integers(6, 60))
    d = draw(st.integers(1, 8))
    k = draw(st.integers(1, min(n - 2, 12)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["gauss", "clusters", "lattice", "copies"]))
    if kind == "gauss":
        X = rng.normal(size=(n, d))
    elif kind == "clusters":  # two unit clusters far apart (up to 1e12 times their spread)
        X = rng.normal(size=(n, d)) + (rng.random(n) < 0.5)[:, None] * rng.normal(size=d) * draw(
            st.sampled_from([1e2, 1e5, 1e8, 1e12]))
    elif kind == "lattice":  # small integers: exact ties everywhere, also at the k-th place
        X = rng.integers(1, 5, size=(n, d)).astype(np.float64)
    else:  # exact duplicates
        X = rng.normal(size=(n, d))[rng.integers(0, max(2, n // 3), size=n)]
    X = X * 10.0 ** draw(st.integers(-30, 30))
    offset = draw(st.sampled_from([0.0, 1e2, 1e4, 1e6, 1e8, 1e10, 1e12]))
    X = X + offset * rng.normal(size=d)  # one offset for every row: scale and offset are independent
    if draw(st.booleans()) and np.abs(X).max() < 1e37:
        X = X.astype(np.float32)  # searched without a copy unless centred or scaled
    return X, k, draw(st.sampled_from(["euclidean", "cosine"]))


@settings(max_examples=150)
@given(point_sets())
def test_exact_knn_equals_float64_brute_force(case):
    X, k, metric = case
    if metric == "cosine" and (np.abs(X).sum(axis=1) == 0).any():
        return  # an all-zero row has no direction (refused with its own error)
    nb = knn(X, k, metric=metric)
    # bit for bit the float64 scan of every row (same distance arithmetic, ties to the lower index)
    ref_idx, ref_dist = full_scan(X, k, metric)
    np.testing.assert_array_equal(nb.indices, ref_idx)
    np.testing.assert_array_equal(nb.distances, ref_dist)
    # and the independent dense brute force, up to float64's own rounding where distances (nearly) tie
    idx, bd = brute_knn(X, k + 1, metric)
    tol = float64_tolerance(X, bd, metric)[:, None]
    assert not (nb.indices == np.arange(len(X))[:, None]).any()
    assert (np.abs(nb.distances - bd[:, :k]) <= tol).all()  # the same k distances, to rounding
    clear = (np.diff(bd, axis=1) > 2 * tol).all(axis=1)  # rows without near-ties up to the (k+1)-th place
    np.testing.assert_array_equal(nb.indices[clear], idx[clear, :k])


# --------------------------------------------------------------------------------------------------------------
# the symmetric self-join (in-sample exact search): tiles small enough that every boundary is crossed


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 37 query rows and 90 database rows, and a count of joins."""
    monkeypatch.setattr(nbm, "_JOIN_ROWS", 37)
    monkeypatch.setattr(nbm, "_JOIN_COLS", 90)
    joins = []
    join = nbm._self_join

    def counting(space, width):
        joins.append(len(space.X))
        yield from join(space, width)

    monkeypatch.setattr(nbm, "_self_join", counting)
    return joins


@pytest.mark.parametrize("case", sorted(HARD))
def test_self_join_tiles_equal_brute_force(case, small_tiles):
    X, metric = HARD[case]
    assert_brute_force(knn(X, 10, metric=metric, duplicates="error"), X, 10, metric)
    assert small_tiles == [len(X)]


def test_self_join_windows_are_the_exact_float32_top(small_tiles):
    # small integers: every float32 product is exact, so the windows must be the brute-force top by (distance,
    # index), ties everywhere included
    X = np.random.default_rng(3).integers(-3, 4, size=(300, 6)).astype(np.float64)
    space = nbm._Space.build(X, "euclidean")
    assert space.centre is None and space.scale == 1.0
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    ref = np.lexsort((np.broadcast_to(np.arange(300), D.shape), D), axis=1)[:, :19]
    rows = []
    for lo, hi, dist, idx in nbm._self_join(space, 19):
        rows.append((lo, hi))
        np.testing.assert_array_equal(idx, ref[lo:hi])
        np.testing.assert_array_equal(dist, np.take_along_axis(D, ref, 1)[lo:hi])
    assert rows == [(lo, min(300, lo + 37)) for lo in range(0, 300, 37)]  # in order, each once


def test_self_join_at_full_tile_size_crosses_column_blocks():
    # default tiles: the column pass splits a 4,096 x 8,192 tile into blocks of _COL_BLOCK columns, the first
    # beginning past the diagonal; small integers keep float32 exact, so the windows are the brute-force top
    n = nbm._JOIN_ROWS + nbm._COL_BLOCK + 1500
    assert n <= nbm._JOIN_COLS  # one column tile: the diagonal block, then a full column block and part of one
    X = np.random.default_rng(4).integers(-1, 2, size=(n, 3)).astype(np.float64)  # 27 points: ties everywhere
    space = nbm._Space.build(X, "euclidean")
    sq = (X ** 2).sum(1)
    for lo, hi, dist, idx in nbm._self_join(space, 9):
        D = sq[lo:hi, None] + sq[None, :] - 2 * X[lo:hi] @ X.T  # exact: small integers
        ref = np.lexsort((np.broadcast_to(np.arange(n), D.shape), D), axis=1)[:, :9]
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_array_equal(dist, np.take_along_axis(D, ref, 1))


def test_self_join_equals_faiss_windows_and_the_pipeline_uses_it(monkeypatch, small_tiles):
    X = clustered(700, 16, seed=5)
    X[11] = X[400]  # a duplicate pair across tiles
    for metric, dup in (("euclidean", "keep"), ("cosine", "drop")):
        joined = knn(X, 12, metric=metric, duplicates=dup)
        with monkeypatch.context() as m:
            m.setattr(nbm, "SELF_JOIN", False)
            plain = knn(X, 12, metric=metric, duplicates=dup)
        np.testing.assert_array_equal(joined.indices, plain.indices)
        np.testing.assert_array_equal(joined.distances, plain.distances)
        assert joined.n_with_duplicate == plain.n_with_duplicate == 2
    G = nnk_graph(X, 12, kernel="cosine", duplicates="keep")
    assert small_tiles == [700, 700, 700]
    np.testing.assert_array_equal(G.candidates, knn(X, 12, metric="cosine").indices)


@settings(max_examples=60, deadline=None)
@given(point_sets())
def test_self_join_tiles_property(case):
    X, k, metric = case
    if metric == "cosine" and (np.abs(X).sum(axis=1) == 0).any():
        return
    ref_idx, ref_dist = full_scan(X, k, metric)
    saved = nbm._JOIN_ROWS, nbm._JOIN_COLS
    nbm._JOIN_ROWS, nbm._JOIN_COLS = 5, 9  # hypothesis and function-scoped fixtures do not mix
    try:
        nb = knn(X, k, metric=metric)
    finally:
        nbm._JOIN_ROWS, nbm._JOIN_COLS = saved
    np.testing.assert_array_equal(nb.indices, ref_idx)
    np.testing.assert_array_equal(nb.distances, ref_dist)
