"""k-nearest-neighbour candidates for NNK graphs.

faiss finds a window of ``k + 1 + margin`` candidates per query in float32; every candidate is then re-ranked by
its exact float64 distance computed from the caller's array, ties broken by the lower index.  The query itself is
removed wherever it appears (with exact duplicates it need not come first).  Queries are processed in blocks, so
memory beyond the data and the float32 copy is O(N k).

Exact search equals a float64 brute force for every input the range check admits.  faiss searches a float32 copy
that is centred (when that shrinks it; cosine rows are made unit first, and ``1 - cos`` is half the squared
distance of unit rows) and scaled by a power of two, so offsets and magnitudes float32 cannot hold do not reach
it.  A window is kept only when a rounding-error bound proves that no point outside it can come within the k-th
candidate's float64 distance; otherwise the window is doubled, and rows float32 cannot resolve at all
(multi-scale data, queries far outside the database) are scanned in float64.  Rows with fewer than ``k`` valid
candidates after dropping duplicates are widened until the window holds every row.

Exact search (default) of a set among its own rows (every graph) proposes the float32 windows by a symmetric
self-join (:func:`_self_join`: each pair's inner product computed once, half of faiss's brute-force arithmetic);
queries that are not the database's own rows, and windows that must widen, use faiss's brute-force ``knn``.
Either way the windows are exact in their own float32 arithmetic, so the same certificate applies.  The
approximate path builds a faiss HNSW (or IVF) index (IVF windows computed as one product per probed cell,
:func:`_ivf_search`) with exposed ``M`` / ``ef_construction`` / ``ef_search`` and reports recall@k on a seeded
random sample of queries against exact search; its windows are widened where the k-th distance ties the
window's last one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numba as nb
import numpy as np

from .._runtime import matmul_t, progress_bar, run_split, split_products, thread_limit
from .._validate import as_points, check_choice, check_k, check_no_zero_rows, check_positive_int
from ..errors import DuplicatePointsError, InputShapeError, InvalidParameterError, TooFewPointsError

__all__ = ["ExactSearch", "HNSWSearch", "IVFSearch", "Neighbors", "knn", "METRICS", "APPROXIMATE", "DUPLICATES",
           "SEARCHES", "resolve_search", "duplicate_error"]

METRICS = ("euclidean", "cosine")
DUPLICATES = ("error", "keep", "drop")
SEARCHES = ("exact", "hnsw", "ivf", "gpu")
COSINE_DUP_EPS = 1e-12  # cosine distance below which two rows point in the same direction (rounding of 1 - cos)


@dataclass(frozen=True)
class ExactSearch:
    """Exact brute-force search (faiss), streamed over blocks of ``block_size`` queries."""

    block_size: int = 16384
    margin: int = 8

    name = "exact"

    def searcher(self, space):
        return None  # faiss.knn on each block: no index


@dataclass(frozen=True)
class HNSWSearch:
    """Approximate search with a faiss HNSW index.

    ``M`` (graph degree), ``ef_construction`` (build effort) and ``ef_search`` (query effort, raised to at least
    the search window) trade time for recall; ``recall_sample`` queries (seeded) are checked against exact search.
    Note: faiss inserts points in parallel, so with ``n_jobs > 1`` the index (and rarely a candidate) can differ
    between runs; use ``n_jobs=1`` or exact search where bitwise reproducibility matters.
    """

    M: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    recall_sample: int = 1000
    seed: int = 0
    block_size: int = 16384
    margin: int = 8

    name = "hnsw"

    def searcher(self, space):
        return _build_hnsw(space, self)


@dataclass(frozen=True)
class IVFSearch:
    """Approximate search with a faiss inverted-file index (``IndexIVFFlat``).

    ``nlist`` k-means cells (capped at N / 39, faiss's minimum of training points per cell) are trained on a seeded
    sample of ``train_size`` rows; each query searches its ``nprobe`` nearest cells.  A row whose probed cells hold
    fewer points than its window falls back to exact search, so every row gets k valid candidates.  ``recall`` is
    measured on ``recall_sample`` seeded queries against exact search, as for HNSW.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    >>> nb_ = knn(X, 10, method=IVFSearch(nlist=32, nprobe=32))   # every cell probed: exhaustive
    >>> nb_.recall
    1.0
    """

    nlist: int = 1024
    nprobe: int = 16
    train_size: int = 65536
    recall_sample: int = 1000
    seed: int = 0
    block_size: int = 16384
    margin: int = 8

    name = "ivf"

    def searcher(self, space):
        return _build_ivf(space, self)


@dataclass
class Neighbors:
    """Result of :func:`knn`: candidate indices sorted by (exact distance, index), self excluded.

    ``distances`` are Euclidean distances for ``metric="euclidean"`` and ``1 - cos`` for ``metric="cosine"``,
    both computed in float64 from the input rows.
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    method: str
    duplicates: str
    n_with_duplicate: int
    recall: float | None = None
    params: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def summary(self) -> dict:
        return {"k": self.k, "metric": self.metric, "method": self.method, "duplicates": self.duplicates,
                "points_with_duplicate": self.n_with_duplicate, "recall": self.recall, **self.params}


def resolve_search(method, name: str = "knn"):
    """The search object for a name ("exact", "hnsw", "ivf", "gpu") or an ExactSearch/HNSWSearch/IVFSearch/TorchSearch
    (``name`` is the parameter's name in error messages)."""
    if isinstance(method, (ExactSearch, HNSWSearch)):
        return method
    if method == "exact":
        return ExactSearch()
    if method == "hnsw":
        return HNSWSearch()
    if isinstance(method, IVFSearch):
        return method
    if method == "ivf":
        return IVFSearch()
    from .gpu import TorchSearch

    if method == "gpu":
        return TorchSearch("cuda")
    if isinstance(method, TorchSearch):
        return method
    raise InvalidParameterError(f"{name} must be 'exact', 'hnsw', 'ivf', 'gpu', ExactSearch(...), HNSWSearch(...), "
                                f"IVFSearch(...) or nnkscope.engine.gpu.TorchSearch(...); got {method!r}")


@nb.njit(cache=True)
def _exact_distance(Q, q_inv, qi, X, inv_norms, cosine, j):
    d = X.shape[1]
    s = 0.0
    if cosine:
        for t in range(d):
            s += np.float64(Q[qi, t]) * np.float64(X[j, t])
        return max(0.0, 1.0 - s * q_inv[qi] * inv_norms[j])
    for t in range(d):
        diff = np.float64(Q[qi, t]) - np.float64(X[j, t])
        s += diff * diff
    return np.sqrt(s)


@nb.njit(parallel=True, cache=True)
def _refine(Q, q_inv, X, inv_norms, cosine, rows, self_idx, window_idx, k, drop_dup, dup_eps, out_idx, out_dist,
            n_valid, tie, has_dup):
    """Exact re-ranking of one block's windows (query ``Q[rows[r]]``, candidates rows of ``X``).

    ``self_idx[r]`` is the database index to exclude (the query itself in a graph) or -1.  Writes the first ``k``
    valid candidates, how many valid ones the window held (``n_valid``) and whether the k-th distance ties the
    window's last distance (``tie``: tied points may lie outside the window).
    """
    B, W = window_idx.shape
    for r in nb.prange(B):
        qi = rows[r]
        cand = np.empty(W, np.int64)
        dist = np.empty(W)
        m = 0
        for c in range(W):
            j = window_idx[r, c]
            if j < 0 or j == self_idx[r]:
                continue
            dj = _exact_distance(Q, q_inv, qi, X, inv_norms, cosine, j)
            # insertion into the sorted prefix; faiss's order is nearly right so this is ~linear
            pos = m
            while pos > 0 and (dist[pos - 1] > dj or (dist[pos - 1] == dj and cand[pos - 1] > j)):
                dist[pos] = dist[pos - 1]
                cand[pos] = cand[pos - 1]
                pos -= 1
            dist[pos] = dj
            cand[pos] = j
            m += 1
        has_dup[r] = m > 0 and dist[0] <= dup_eps
        q = 0
        for c in range(m):
            if drop_dup and dist[c] <= dup_eps:
                continue
            if q == k:
                break
            out_idx[r, q] = cand[c]
            out_dist[r, q] = dist[c]
            q += 1
        n_valid[r] = q
        tie[r] = q == k and dist[m - 1] <= out_dist[r, k - 1]


_U32 = 2.0**-24  # unit roundoff of float32 (faiss's arithmetic)
_U64 = 2.0**-53  # unit roundoff of float64 (the re-ranking's arithmetic)
_TINY32 = 2.0**-149  # smallest float32 subnormal: absolute error of a float32 operation that underflows
_TINY64 = 2.0**-1074
_SAFE32 = 1e18  # |q| + |x| below this in the searched copy: faiss's float32 squared distances cannot overflow
_FIT_ELEMENTS = 1 << 21  # values per chunk when building the searched copy (16 MB float64 temporaries)


def _row_sq_norms(A: np.ndarray) -> np.ndarray:
    """float64 squared row norms, in row chunks (no float64 copy of a float32 array)."""
    out = np.empty(len(A))
    step = max(1, _FIT_ELEMENTS // max(1, A.shape[1]))
    for lo in range(0, len(A), step):
        a = A[lo:lo + step]
        out[lo:lo + len(a)] = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    return out


@dataclass
class _Space:
    """Rows in float64-exact form and the float32 copy faiss searches.

    The searched copy is ``(rows - centre) * scale`` in float32 (rows made unit for cosine, whose distance
    ``1 - cos = |u - v|^2 / 2`` is then a Euclidean one), searched with L2.  Centring removes a common offset
    (float32 keeps 24 bits of each coordinate, so a +1e8 offset would erase unit-sized differences) and the
    power-of-two ``scale`` keeps squared distances inside float32's range; both leave the ranking unchanged.
    ``norms`` (float64 norms of the searched rows) and ``rmax`` (the largest database norm) bound faiss's
    rounding error, which decides whether a float32 window can be trusted (:func:`_trusted`).
    """

    X: np.ndarray
    Xs: np.ndarray
    inv_norms: np.ndarray  # float64 inverse row norms (cosine) or a 1-element dummy (euclidean)
    cosine: bool
    scale: float = 1.0
    centre: np.ndarray | None = None  # float64 (d,) subtracted before scaling; None: not centred
    norms: np.ndarray | None = None
    rmax: float = 0.0
    min_sq_norm: float = np.inf  # cosine: smallest squared row norm (float64 underflow in the normalisation)

    @classmethod
    def build(cls, X: np.ndarray, metric: str, scale: float | None = None,
              centre: np.ndarray | None = None) -> _Space:
        """The space of database rows ``X`` (``scale=None``: choose centre and scale from ``X``), or of query rows
        transformed with a given ``scale`` and ``centre``."""
        cosine = metric == "cosine"
        if cosine:
            norms = check_no_zero_rows(X)
            inv, min_sq = 1.0 / norms, float(np.min(norms, initial=np.inf)) ** 2
        else:
            inv, min_sq = np.ones(1), np.inf
        if scale is None:
            centre, scale = _fit(X, inv if cosine else None)
        Xs = _searched_copy(X, inv if cosine else None, centre, scale)
        nrm = np.sqrt(_row_sq_norms(Xs))
        return cls(X, Xs, inv, cosine, scale, centre, nrm, float(nrm.max()) if len(nrm) else 0.0, min_sq)

    def slice(self, lo: int, hi: int) -> _Space:
        """Rows ``lo:hi`` as a space of their own (views, no copy); ``rmax`` stays an upper bound."""
        inv = self.inv_norms[lo:hi] if self.cosine else self.inv_norms
        return _Space(self.X[lo:hi], self.Xs[lo:hi], inv, self.cosine, self.scale, self.centre, self.norms[lo:hi],
                      self.rmax, self.min_sq_norm)

    def like(self, Q: np.ndarray) -> _Space:
        """The same transformation applied to query rows."""
        return _Space.build(Q, "cosine" if self.cosine else "euclidean", scale=self.scale, centre=self.centre)

    @property
    def faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_L2  # cosine too: its searched rows are centred unit rows

    @property
    def dup_eps(self) -> float:
        return COSINE_DUP_EPS if self.cosine else 0.0

    def window(self, searcher, queries: _Space, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate window of the query rows: (squared distances in the searched copy, database indices, -1
        padded), from the self-join (:class:`_JoinWindows`, at its own width), faiss or an index."""
        import faiss

        width = min(width, len(self.Xs))
        if isinstance(searcher, _JoinWindows):
            if width == searcher.width:
                return searcher.distances[rows - searcher.first], searcher.indices[rows - searcher.first]
            searcher = None  # a widened window: faiss brute force
        if searcher is None:
            dist, idx = faiss.knn(queries.Xs[rows], self.Xs, width, metric=faiss.METRIC_L2)
        else:
            if hasattr(searcher, "hnsw"):
                searcher.hnsw.efSearch = max(searcher.hnsw.efSearch, width)
            if hasattr(searcher, "invlists"):
                dist, idx = _ivf_search(searcher, self, queries.Xs[rows], width)
            else:
                dist, idx = searcher.search(queries.Xs[rows], width)
            short = (idx < 0).any(axis=1) & (width < len(self.Xs))  # IVF: the probed cells ran out of points
            if short.any():
                dist[short], idx[short] = faiss.knn(queries.Xs[rows[short]], self.Xs, width, metric=faiss.METRIC_L2)
        return dist, np.ascontiguousarray(idx, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# the symmetric self-join: every in-sample pair's product computed once

_JOIN_ROWS = 4096  # query rows per tile of the self-join
_JOIN_COLS = 8192  # database rows per product (a 128 MB float32 tile; 50,000 x 768: 26.6 s vs 29.4 s at 2048 rows)
_NO_INDEX = np.iinfo(np.int64).max  # an empty heap slot: every candidate ranks before it
SELF_JOIN = True  # in-sample exact search by the self-join (False: faiss brute force per block; tests compare)


@dataclass
class _JoinWindows:
    """Windows of query rows ``first ..`` from :func:`_self_join`: the best ``width`` by (float32-search
    distance, index), best first; a wider window than ``width`` falls back to faiss."""

    distances: np.ndarray
    indices: np.ndarray
    first: int = 0
    exact = True  # exact in its own float32 arithmetic: the window check of :func:`_trusted` applies

    @property
    def width(self) -> int:
        return self.indices.shape[1]


@nb.njit(cache=True, inline="always")
def _heap_replace(hd, hi, v, j):
    """Put candidate (v, j) in place of the root of a max-heap on (distance, index) and sift it down."""
    w = hd.size
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= w:
            break
        if child + 1 < w and (hd[child + 1] > hd[child] or (hd[child + 1] == hd[child] and hi[child + 1] > hi[child])):
            child += 1
        if hd[child] > v or (hd[child] == v and hi[child] > j):
            hd[pos] = hd[child]
            hi[pos] = hi[child]
            pos = child
        else:
            break
    hd[pos] = v
    hi[pos] = j


@nb.njit(cache=True, inline="always")
def _offer_row(S, r, a, g, sq_cols, cols, hd, hi):
    """Offer row ``r`` of the product tile ``S`` to the heap of query row ``g`` (squared norm ``a``) as candidates
    ``cols`` (float64 squared distance ``a + sq_cols[c] - 2 S[r, c]``)."""
    top, top_i = hd[g, 0], hi[g, 0]
    for c in range(S.shape[1]):
        v = (a + sq_cols[c]) - 2.0 * np.float64(S[r, c])
        if v <= top:
            j = cols[c]
            if v < top or j < top_i:
                _heap_replace(hd[g], hi[g], v, j)
                top, top_i = hd[g, 0], hi[g, 0]


@nb.njit(parallel=True, cache=True)
def _offer_rows(S, sq_rows, sq_cols, rows, cols, hd, hi):
    """Offer entry ``(r, c)`` of the product tile ``S`` to the heap of query row ``rows[r]`` as candidate
    ``cols[c]`` (``rows`` distinct), the rows in parallel."""
    for r in nb.prange(S.shape[0]):
        _offer_row(S, r, sq_rows[r], rows[r], sq_cols, cols, hd, hi)


@nb.njit(nogil=True, cache=True)
def _offer_rows_serial(S, sq_rows, sq_cols, rows, cols, hd, hi):
    """:func:`_offer_rows` in the calling thread (for callers that split the query rows over threads)."""
    for r in range(S.shape[0]):
        _offer_row(S, r, sq_rows[r], rows[r], sq_cols, cols, hd, hi)


_COL_BLOCK = 2048  # the column pass streams each row's entries of 2,048 columns (8 KB) against their heaps' worst


@nb.njit(parallel=True, cache=True)
def _join_cols(S, sq_rows, sq_cols, row_lo, col_lo, col_from, hd, hi):
    """Offer the entries of columns ``col_from ..`` of ``S`` to their column's heap: the same values as the row
    pass (``sq_i + sq_j`` is one float64 sum either way).  Walking a column of a row-major tile is strided (and
    its rows, 32 KB apart, compete for the same cache sets), so each thread takes a block of
    :data:`_COL_BLOCK` columns and streams it row by row, comparing each entry with its column's current worst
    (kept in a small array); the heaps' contents do not depend on the order of the offers, since (distance, index)
    orders the candidates totally."""
    n_rows, n_cols = S.shape
    for t in nb.prange((n_cols - col_from + _COL_BLOCK - 1) // _COL_BLOCK):
        c0 = col_from + _COL_BLOCK * t
        c1 = min(n_cols, c0 + _COL_BLOCK)
        top = np.empty(c1 - c0)
        for c in range(c0, c1):
            top[c - c0] = hd[col_lo + c, 0]
        for r in range(n_rows):
            a = sq_rows[r]
            for c in range(c0, c1):
                v = (a + sq_cols[c]) - 2.0 * np.float64(S[r, c])
                if v <= top[c - c0]:
                    g = col_lo + c
                    if v < top[c - c0] or row_lo + r < hi[g, 0]:
                        _heap_replace(hd[g], hi[g], v, row_lo + r)
                        top[c - c0] = hd[g, 0]


def _self_join(space: _Space, width: int):
    """Exact float32 windows of every row of ``space`` among its own rows, each pair's product computed once.

    faiss's brute force computes the whole ``N x N`` product; here tile ``(I, J)`` with ``J >= I`` is computed
    once (``Xs[I] @ Xs[J].T``, one float32 matrix product) and offered both to the rows of ``I`` and to those of
    ``J``: half the arithmetic.  Each row keeps the ``width`` smallest (squared distance, index) in a heap, the
    distance ``|q|^2 + |x|^2 - 2 q.x`` from the float32 product and the float64 squared norms of the searched rows
    (within the float32 error bound :func:`_trusted` assumes, whatever the product's summation order), so a
    window is the exact top ``width`` of its own float32 arithmetic, as faiss's is.  Yields ``(lo, hi, distances,
    indices)`` for rows ``lo:hi`` as soon as they are final (tiles in order: rows of ``I`` have then met every
    column), memory ``O(N width)`` plus one ``_JOIN_ROWS x _JOIN_COLS`` tile.
    """
    Xs = space.Xs
    N = len(Xs)
    w = min(width, N)
    sq = _row_sq_norms(Xs)  # float64 sums of the float32 rows' squares (not space.norms squared: one rounding)
    hd = np.full((N, w), np.inf)
    hi = np.full((N, w), _NO_INDEX, np.int64)
    tile = np.empty(min(N, _JOIN_ROWS) * min(N, _JOIN_COLS), np.float32)  # every product reuses it (matmul_t)
    for lo in range(0, N, _JOIN_ROWS):
        top = min(N, lo + _JOIN_ROWS)
        A = Xs[lo:top]
        rows = np.arange(lo, top, dtype=np.int64)
        for c_lo in range(lo, N, _JOIN_COLS):
            c_hi = min(N, c_lo + _JOIN_COLS)
            with split_products():
                S = matmul_t(A, Xs[c_lo:c_hi], buffer=tile)
            _offer_rows(S, sq[lo:top], sq[c_lo:c_hi], rows, np.arange(c_lo, c_hi, dtype=np.int64), hd, hi)
            # columns inside I were offered by the row pass already (the diagonal tile holds both orders)
            _join_cols(S, sq[lo:top], sq[c_lo:c_hi], lo, c_lo, max(0, top - c_lo), hd, hi)
        yield lo, top, *_sorted_heaps(hd[lo:top], hi[lo:top])


def _sorted_heaps(hd: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows from per-row heaps: (distances, indices) best first by (distance, index), empty slots -1."""
    order = np.lexsort((hi, hd), axis=1)
    d, i = np.take_along_axis(hd, order, 1), np.take_along_axis(hi, order, 1)
    i[i == _NO_INDEX] = -1
    return d, i


def _ivf_search(index, space: _Space, Q: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """What ``index.search(Q, width)`` returns for a faiss ``IndexIVFFlat`` over ``space``'s searched rows (the
    best ``width`` rows of each query's ``nprobe`` nearest cells, -1 padded), computed as matrix products.

    faiss scans each query's cells one vector at a time; here the query rows are split over threads, and in each
    part the (query, probed cell) pairs are grouped by cell, so that a cell's rows meet all its queries in one
    single-threaded float32 product ``Q[queries] @ Xs[cell].T``, offered to per-query heaps on (squared distance,
    index): the same probes and cells; 16,384 of 50,000 x 768 rows with 16 of 256 cells probed took 1.8 s against
    faiss's 8.2 s on 2 cores.  A window may differ from faiss's only where float32 rounding reorders near-ties at
    its end; the candidates are re-ranked in float64 either way.
    """
    import faiss

    B, w = len(Q), min(width, len(space.Xs))
    _, probes = index.quantizer.search(Q, index.nprobe)  # the cells faiss would probe, nearest first
    lists = index.invlists
    cells = np.unique(probes[probes >= 0])
    members = {}  # probed cell -> (its database rows, their searched copy, squared norms)
    for c in cells.tolist():
        n = lists.list_size(c)
        if n:
            ids = faiss.rev_swig_ptr(lists.get_ids(c), n).astype(np.int64)
            rows = space.Xs[ids]
            members[c] = (ids, rows, _row_sq_norms(rows))
    sq_q = _row_sq_norms(Q)
    hd = np.full((B, w), np.inf)
    hi = np.full((B, w), _NO_INDEX, np.int64)

    def part(lo: int, top: int) -> None:
        p = probes[lo:top].ravel()
        pairs = np.flatnonzero(p >= 0)
        order = np.argsort(p[pairs], kind="stable")
        by_cell, queries = p[pairs][order], lo + pairs[order] // probes.shape[1]
        bounds = np.flatnonzero(np.r_[True, by_cell[1:] != by_cell[:-1], True]) if by_cell.size else []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            cell = members.get(int(by_cell[a]))
            if cell is not None:
                ids, rows, sq = cell
                q = queries[a:b]
                _offer_rows_serial(Q[q] @ rows.T, sq_q[q], sq, q, ids, hd, hi)

    with split_products():
        run_split(part, B)
    d, i = _sorted_heaps(hd, hi)
    return d.astype(np.float32), i


def _query_tiles(space: _Space, nq: int, block_size: int, width: int, *, join: bool, searcher=None,
                 local: bool = False):
    """``(lo, hi, searcher)`` for each tile of the ``nq`` query rows: with ``join`` (the queries are the rows of
    ``space`` itself, searched exactly on the CPU) the self-join's tiles and their windows (indexed from row 0 of
    the tile when ``local``, else by query row), otherwise blocks of ``block_size`` rows and ``searcher``."""
    if join and SELF_JOIN:
        for lo, hi, d, i in _self_join(space, width):
            yield lo, hi, _JoinWindows(d, i, 0 if local else lo)
    else:
        for lo in range(0, nq, block_size):
            yield lo, min(nq, lo + block_size), searcher


def _fit(X: np.ndarray, inv: np.ndarray | None) -> tuple[np.ndarray | None, float]:
    """Centre (or None) and power-of-two scale of the searched copy of the database rows ``X`` (unit rows when
    ``inv`` is given).

    The centre is the mean row, used when it at least halves the largest row norm (otherwise a float32 input is
    searched without a copy); the scale brings the largest norm to about 1 when it lies outside 2^-30..2^30.
    """
    n = len(X)
    total, sq = np.zeros(X.shape[1]), np.empty(n)
    for lo, a in _float64_chunks(X, inv):
        total += a.sum(axis=0)
        sq[lo:lo + len(a)] = np.einsum("ij,ij->i", a, a)
    mean = total / n
    big = float(np.sqrt(sq.max()))
    # largest |x - mean|^2 = |x|^2 - 2 x.mean + |mean|^2; its rounding only affects the choice, not the result
    centred = 0.0
    for lo, a in _float64_chunks(X, inv):
        centred = max(centred, float(np.max(sq[lo:lo + len(a)] - 2 * (a @ mean))) + float(mean @ mean))
    centred = float(np.sqrt(max(centred, 0.0)))
    centre = None
    if centred < 0.5 * big:
        centre, big = mean, centred
    scale = 1.0
    if big > 0 and not 2.0**-30 <= big <= 2.0**30:
        scale = 2.0 ** -int(np.round(np.log2(big)))  # exact in float64: only the exponent changes
    return centre, scale


def _float64_chunks(X: np.ndarray, inv: np.ndarray | None):
    """(first row, float64 rows) in chunks of about ``_FIT_ELEMENTS`` values; unit rows when ``inv`` is given."""
    step = max(1, _FIT_ELEMENTS // max(1, X.shape[1]))
    for lo in range(0, len(X), step):
        a = np.asarray(X[lo:lo + step], dtype=np.float64)
        yield lo, (a * inv[lo:lo + step, None] if inv is not None else a)


def _searched_copy(X, inv, centre, scale) -> np.ndarray:
    if inv is None and centre is None and scale == 1.0 and X.dtype == np.float32:
        return np.ascontiguousarray(X)  # nothing to change: faiss searches the caller's float32 rows
    Xs = np.empty(X.shape, np.float32)
    with np.errstate(over="ignore"):  # query rows far outside the database: inf here, searched in float64 later
        for lo, a in _float64_chunks(X, inv):
            if centre is not None:
                a = a - centre
            Xs[lo:lo + len(a)] = a * scale if scale != 1.0 else a
    return Xs


def _trusted(space: _Space, queries: _Space, rows, wd, wi, dk) -> tuple[np.ndarray, np.ndarray]:
    """Which rows' float32 windows provably hold their exact top k, and which cannot be resolved in float32.

    ``wd``/``wi`` are the window (float32 squared distances and indices, best first, from a search that is exact
    in its own float32 arithmetic: faiss brute force or the torch path) and ``dk`` the float64 k-th distance
    after re-ranking.  In the searched (centred, scaled) copy, faiss's squared distance of a point ``x`` to a
    query ``q`` errs by at most ``c (|q| + |x|)^2`` with ``c = gamma_{d+10}`` in float32 units (the dot product,
    the norms, the final sum and the rounding of the rows to float32; any summation order).  A point outside the
    window has a float32 distance at least the window's last one ``L``, so its true squared distance is at least
    ``L - c (|q| + r)^2`` if ``|x| <= r``, and at least ``(|x| - |q|)^2`` otherwise; with ``r = |q| + sqrt(t)``
    both exceed the threshold ``t`` (the k-th distance in searched units, widened by the float64 re-ranking's own
    rounding) when ``L - c (|q| + min(r, rmax))^2 > t``.  Then every outside point is strictly farther than the
    k-th candidate in float64 too, and the window's exact ranking is the brute-force one.

    Returns ``(trusted, hopeless)``; ``hopeless`` rows have a window float32 cannot tell from the query (its last
    distance is within twice the error bound), so a wider float32 window would hardly help and they go to the
    float64 scan.
    """
    d = space.X.shape[1]
    g = (d + 10) * _U32
    if g >= 0.5:  # absurdly many features for float32 accumulation: nothing can be certified
        none = np.zeros(len(rows), bool)
        return none, ~none
    c = g / (1 - g)
    s2 = space.scale**2
    if space.cosine:
        # 1 - cos in float64 errs by ~(2d + 12) u64 absolutely (normalisation, dot product); the rows as
        # normalised in float64 are off the true directions by as much again.  Both sides of the comparison.
        e64 = 4 * (d + 8) * _U64 + 8 * (d + 4) * _TINY64 / min(space.min_sq_norm, queries.min_sq_norm)
        t = 2 * s2 * (dk + e64)
    else:
        # squared float64 distances err by (d + 3) u64 relatively (and underflow absolutely); the sqrt must
        # also not round two different values together
        t = (space.scale * dk) ** 2 + s2 * (d + 2) * _TINY64
    t = t * (1 + (2 * d + 40) * _U64)
    q = queries.norms[rows]
    r = np.minimum((q + np.sqrt(t) * (1 + 2.0**-20)) * (1 + 4 * _U32) + (d + 1) * _TINY32, space.rmax)
    reach = (q + r) ** 2
    err = c * reach + (4 * d + 16) * _TINY32 * (1 + reach)
    last = wd[:, -1].astype(np.float64)
    ok = (wi >= 0).all(axis=1) & np.isfinite(last) & (q + space.rmax <= _SAFE32) & np.isfinite(t)
    with np.errstate(invalid="ignore"):
        trusted = ok & (last - err > t)
    # the whole window is one float32 blur around a non-zero k-th distance (a zero one means exact copies, which
    # a wider window gets past)
    return trusted, ~trusted & (~ok | ((last <= 2 * err) & (dk > 0)))


_SCAN_CHUNK = 2048  # database rows per pass of the float64 scan (one transposed float64 copy serves all queries)


@nb.njit(parallel=True, cache=True)
def _scan(Q, q_inv, X, inv_norms, cosine, rows, self_idx, k, drop_dup, dup_eps, out_idx, out_dist, n_valid,
          has_dup):
    """Exact float64 kNN of ``Q[rows]`` over every row of ``X`` (the fallback where float32 cannot decide).

    Database rows stream in chunks, transposed once per chunk so that each query's loop over the chunk's rows is
    vectorisable; every distance still sums its features in order, so it is bitwise :func:`_exact_distance`.
    Each query keeps its best ``k`` valid candidates by (distance, index): memory O(rows * k + chunk * d).
    Same conventions as :func:`_refine`.
    """
    B = rows.size
    N, d = X.shape
    for r in range(B):
        n_valid[r] = 0
        has_dup[r] = False
    XT = np.empty((d, _SCAN_CHUNK))
    for lo in range(0, N, _SCAN_CHUNK):
        w = min(N, lo + _SCAN_CHUNK) - lo
        for t in range(d):
            for c in range(w):
                XT[t, c] = np.float64(X[lo + c, t])
        for r in nb.prange(B):
            qi = rows[r]
            acc = np.zeros(w)
            if cosine:
                for t in range(d):
                    qt = np.float64(Q[qi, t])
                    for c in range(w):
                        acc[c] += qt * XT[t, c]
            else:
                for t in range(d):
                    qt = np.float64(Q[qi, t])
                    for c in range(w):
                        diff = qt - XT[t, c]
                        acc[c] += diff * diff
            m = n_valid[r]
            for c in range(w):
                j = lo + c
                if j == self_idx[r]:
                    continue
                dj = max(0.0, 1.0 - acc[c] * q_inv[qi] * inv_norms[j]) if cosine else np.sqrt(acc[c])
                if dj <= dup_eps:
                    has_dup[r] = True
                    if drop_dup:
                        continue
                # j ascends, so an equal distance already held has the lower index and stays ahead
                if m == k and dj >= out_dist[r, k - 1]:
                    continue
                pos = m if m < k else k - 1
                while pos > 0 and out_dist[r, pos - 1] > dj:
                    out_dist[r, pos] = out_dist[r, pos - 1]
                    out_idx[r, pos] = out_idx[r, pos - 1]
                    pos -= 1
                out_dist[r, pos] = dj
                out_idx[r, pos] = j
                if m < k:
                    m += 1
            n_valid[r] = m


def _too_few(n: int, k: int) -> TooFewPointsError:
    return TooFewPointsError(f"{n} point(s) have fewer than k={k} distinct neighbours after dropping duplicates; "
                             "lower k, deduplicate the data, or use duplicates='keep'")


def _scan_rows(space: _Space, queries: _Space, in_sample: bool, rows, k, drop_dup, out_idx, out_dist, has_dup):
    """The float64 scan of ``rows`` into the outputs (rows whose float32 window cannot be trusted)."""
    bi = np.empty((rows.size, k), np.int64)
    bd = np.empty((rows.size, k))
    n_valid = np.empty(rows.size, np.int64)
    bdup = np.empty(rows.size, np.bool_)
    self_idx = rows if in_sample else np.full(rows.size, -1, np.int64)
    _scan(queries.X, queries.inv_norms, space.X, space.inv_norms, space.cosine, rows, self_idx, k, drop_dup,
          space.dup_eps, bi, bd, n_valid, bdup)
    if (n_valid < k).any():
        raise _too_few(int((n_valid < k).sum()), k)
    out_idx[rows], out_dist[rows], has_dup[rows] = bi, bd, bdup


_MAX_DOUBLINGS = 3  # an untrusted window is widened this often before the row is scanned in float64


def _settle(space: _Space, queries: _Space, in_sample: bool, searcher, rows, k, width, drop_dup, out_idx, out_dist,
            has_dup):
    """Search + refine ``rows`` into the outputs.

    Exact searches (faiss brute force, or a searcher with ``exact = True``) keep a row's window only when
    :func:`_trusted` proves it holds the exact top k; otherwise the window is doubled, and rows that float32
    cannot resolve (or that stay undecided after ``_MAX_DOUBLINGS`` doublings) are scanned in float64.
    Approximate searches double the window of rows whose k-th distance ties the window's last one.  Rows with
    fewer than ``k`` valid candidates (dropped duplicates) are widened until the window holds every row.
    """
    N = len(space.X)
    exact = searcher is None or getattr(searcher, "exact", False)
    w0 = width
    if exact and rows.size:
        far = ~(queries.norms[rows] + space.rmax <= _SAFE32)  # float32 would overflow (also inf / nan norms)
        if far.any():
            _scan_rows(space, queries, in_sample, rows[far], k, drop_dup, out_idx, out_dist, has_dup)
            rows = rows[~far]
    while rows.size:
        wd, wi = space.window(searcher, queries, rows, width)
        bi = np.empty((rows.size, k), np.int64)
        bd = np.empty((rows.size, k))
        n_valid = np.empty(rows.size, np.int64)
        tie = np.empty(rows.size, np.bool_)
        bdup = np.empty(rows.size, np.bool_)
        self_idx = rows if in_sample else np.full(rows.size, -1, np.int64)
        _refine(queries.X, queries.inv_norms, space.X, space.inv_norms, space.cosine, rows, self_idx, wi, k, drop_dup,
                space.dup_eps, bi, bd, n_valid, tie, bdup)
        has_dup[rows] = bdup
        full = min(width, N) >= N
        if full and (n_valid < k).any():
            raise _too_few(int((n_valid < k).sum()), k)
        short = n_valid < k
        scan = np.zeros(rows.size, np.bool_)
        if full:
            need = short  # every row is in the window: nothing lies outside it
        elif exact:
            trusted, hopeless = _trusted(space, queries, rows, wd, wi, np.where(short, 0.0, bd[:, k - 1]))
            undecided = ~short & ~trusted
            scan = undecided & (hopeless | (width >= w0 << _MAX_DOUBLINGS))
            need = short | (undecided & ~scan)
        else:
            need = short | tie
        done = ~need & ~scan
        out_idx[rows[done]] = bi[done]
        out_dist[rows[done]] = bd[done]
        if scan.any():
            _scan_rows(space, queries, in_sample, rows[scan], k, drop_dup, out_idx, out_dist, has_dup)
        rows = rows[need]
        width *= 2


def knn(X, k: int, *, queries=None, metric: str = "euclidean", method="exact", duplicates: str = "keep",
        n_jobs: int | None = None, progress: bool | None = None) -> Neighbors:
    """k nearest neighbours of every row of ``X`` among the other rows, or of each row of ``queries`` in ``X``.

    Parameters
    ----------
    X : (N, d) array (float32 is searched without a copy of a different precision).
    k : number of neighbours (self excluded); needs ``N >= k + 1`` (``N >= k`` with ``queries``).
    queries : optional (Q, d) array searched against ``X`` (no self-exclusion: they are not rows of ``X``).
    metric : "euclidean" or "cosine" (ranking by ``1 - cos``; all-zero rows are rejected).
    method : "exact" (default), "hnsw", "gpu", or an :class:`ExactSearch` / :class:`HNSWSearch` /
        :class:`nnkscope.engine.gpu.TorchSearch` with settings (the last proposes windows on a torch device; results
        equal exact search).
    duplicates : "keep" (identical points are ordinary neighbours; ties go to the lower index), "drop" (a point
        identical to the query is never its candidate) or "error" (raise :class:`DuplicatePointsError`).
    n_jobs : threads for faiss and numba (default: all CPUs available to this process).
    progress : show a progress bar (default: when stderr is a terminal).

    Returns
    -------
    Neighbors

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [3.0], [6.0]])
    >>> nb_ = knn(X, 2)
    >>> nb_.indices.tolist()
    [[1, 2], [0, 2], [1, 0], [2, 1]]
    """
    X = as_points(X)
    N = len(X)
    in_sample = queries is None
    k = check_k(k, N, extra=1 if in_sample else 0)
    if not in_sample:
        queries = as_points(queries, "queries")
        if queries.shape[1] != X.shape[1]:
            raise InputShapeError(f"queries have {queries.shape[1]} features but X has {X.shape[1]}; "
                                  "embed both with the same model and layer")
    check_choice(metric, "metric", METRICS)
    check_choice(duplicates, "duplicates", DUPLICATES)
    spec = resolve_search(method, "method")
    nq = N if in_sample else len(queries)
    idx = np.empty((nq, k), np.int64)
    dist = np.empty((nq, k))
    has_dup = np.zeros(nq, np.bool_)
    params: dict = {"method_settings": asdict(spec)}
    recall = None
    drop = duplicates == "drop"
    with thread_limit(n_jobs):
        space = _Space.build(X, metric)
        qspace = space if in_sample else space.like(queries)
        searcher = spec.searcher(space)
        width = k + 1 + spec.margin
        tiles = _query_tiles(space, nq, spec.block_size, width, join=in_sample and searcher is None,
                             searcher=searcher)
        with progress_bar(nq, "kNN search", progress) as bar:
            for lo, hi, tile_searcher in tiles:
                rows = np.arange(lo, hi, dtype=np.int64)
                _settle(space, qspace, in_sample, tile_searcher, rows, k, width, drop, idx, dist, has_dup)
                bar.update(rows.size)
        if isinstance(spec, APPROXIMATE):
            recall = _sampled_recall(space, qspace, in_sample, idx, k, spec, drop)
            params["recall_sample"] = min(spec.recall_sample, nq)
    n_dup = int(has_dup.sum())
    if duplicates == "error" and n_dup:
        first = int(np.flatnonzero(has_dup)[0])
        raise duplicate_error(n_dup, first, int(idx[first, 0]))
    return Neighbors(idx, dist, metric, spec.name, duplicates, n_dup, recall, params)


def duplicate_error(n_dup: int, first: int, twin: int) -> DuplicatePointsError:
    """The error for ``duplicates="error"``, naming the first duplicated row and the ways out."""
    return DuplicatePointsError(
        f"{n_dup} point(s) have an exact duplicate (first: row {first}, identical to row {twin}). Pass "
        "duplicates='drop' to exclude identical points from each other's candidates, duplicates='keep' to keep "
        "them (the lowest-index copy then reconstructs its twin alone), or deduplicate with np.unique(X, axis=0)"
    )


def _build_hnsw(space: _Space, spec: HNSWSearch):
    import faiss

    for name in ("M", "ef_construction", "ef_search", "recall_sample", "block_size"):
        check_positive_int(getattr(spec, name), f"HNSWSearch.{name}")
    index = faiss.IndexHNSWFlat(space.Xs.shape[1], spec.M, space.faiss_metric)
    index.hnsw.efConstruction = spec.ef_construction
    index.hnsw.efSearch = spec.ef_search
    index.add(space.Xs)
    return index


def _build_ivf(space: _Space, spec: IVFSearch):
    import faiss

    for name in ("nlist", "nprobe", "train_size", "recall_sample", "block_size"):
        check_positive_int(getattr(spec, name), f"IVFSearch.{name}")
    n, d = space.Xs.shape
    nlist = max(1, min(spec.nlist, n // 39))
    quantizer = faiss.IndexFlatL2(d)  # cosine too: its searched rows are centred unit rows
    index = faiss.IndexIVFFlat(quantizer, d, nlist, space.faiss_metric)
    rng = np.random.default_rng(spec.seed)
    train = space.Xs[np.sort(rng.choice(n, size=min(n, max(spec.train_size, 39 * nlist)), replace=False))]
    index.cp.seed = spec.seed
    index.train(np.ascontiguousarray(train))
    index.add(space.Xs)
    index.nprobe = min(spec.nprobe, nlist)
    return index


def _sampled_recall(space: _Space, qspace: _Space, in_sample: bool, approx_idx, k, spec, drop_dup) -> float:
    """Mean |approx ∩ exact| / k over a seeded sample of queries."""
    N = len(qspace.X)
    rng = np.random.default_rng(spec.seed)
    rows = np.sort(rng.choice(N, size=min(spec.recall_sample, N), replace=False)).astype(np.int64)
    ex_idx = np.empty((N, k), np.int64)
    ex_dist = np.empty((N, k))
    has_dup = np.zeros(N, np.bool_)
    _settle(space, qspace, in_sample, None, rows, k, k + 1 + spec.margin, drop_dup, ex_idx, ex_dist, has_dup)
    hits = [np.intersect1d(approx_idx[r], ex_idx[r], assume_unique=True).size for r in rows]
    return float(np.mean(hits)) / k


APPROXIMATE = (HNSWSearch, IVFSearch)  # searches with an index whose recall is measured, not guaranteed
