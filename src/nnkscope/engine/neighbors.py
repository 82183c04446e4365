"""k-nearest-neighbour candidates for NNK graphs.

faiss finds a window of ``k + 1 + margin`` candidates per query in float32; every candidate is then re-ranked by
its exact float64 distance computed from the caller's array, ties broken by the lower index.  The query itself is
removed wherever it appears (with exact duplicates it need not come first).  A row whose k-th distance ties the
last distance of the window (so tied points may lie outside it), or that has fewer than ``k`` valid candidates
after removing duplicates, is searched again with a doubled window until the answer is certain.  Queries are
processed in blocks, so memory beyond the data and faiss's float32 copy of it is O(N k).

Exact search (default) uses faiss's brute-force ``knn`` (L2, or inner product on unit rows for cosine); the
approximate path builds a faiss HNSW index with exposed ``M`` / ``ef_construction`` / ``ef_search`` and reports
recall@k on a seeded random sample of queries against exact search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numba as nb
import numpy as np

from .._runtime import progress_bar, thread_limit
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


@dataclass
class _Space:
    """Rows in float64-exact form and faiss's float32 copy (unit rows for cosine, rescaled if out of range)."""

    X: np.ndarray
    Xs: np.ndarray
    inv_norms: np.ndarray  # float64 inverse row norms (cosine) or a 1-element dummy (euclidean)
    cosine: bool
    scale: float = 1.0

    @classmethod
    def build(cls, X: np.ndarray, metric: str, scale: float | None = None) -> _Space:
        if metric == "cosine":
            inv = 1.0 / check_no_zero_rows(X)
            return cls(X, np.ascontiguousarray((X * inv[:, None]).astype(np.float32)), inv, True)
        if scale is None:
            big = float(np.max(np.abs(X)))
            # outside float32's comfortable range: search a rescaled copy (ranking is scale-free)
            scale = 1.0 / big if 0 < big and not 1e-30 < big < 1e30 else 1.0
        Xs = X * scale if scale != 1.0 else X
        return cls(X, np.ascontiguousarray(Xs, dtype=np.float32), np.ones(1), False, scale)

    def slice(self, lo: int, hi: int) -> _Space:
        """Rows ``lo:hi`` as a space of their own (views, no copy)."""
        inv = self.inv_norms[lo:hi] if self.cosine else self.inv_norms
        return _Space(self.X[lo:hi], self.Xs[lo:hi], inv, self.cosine, self.scale)

    def like(self, Q: np.ndarray) -> _Space:
        """The same transformation applied to query rows."""
        return _Space.build(Q, "cosine" if self.cosine else "euclidean", scale=self.scale)

    @property
    def faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_INNER_PRODUCT if self.cosine else faiss.METRIC_L2

    @property
    def dup_eps(self) -> float:
        return COSINE_DUP_EPS if self.cosine else 0.0

    def window(self, searcher, queries: _Space, rows: np.ndarray, width: int) -> np.ndarray:
        """faiss candidate window (database indices, -1 padded) of the query rows."""
        import faiss

        width = min(width, len(self.Xs))
        if searcher is None:
            _, idx = faiss.knn(queries.Xs[rows], self.Xs, width, metric=self.faiss_metric)
        else:
            if hasattr(searcher, "hnsw"):
                searcher.hnsw.efSearch = max(searcher.hnsw.efSearch, width)
            _, idx = searcher.search(queries.Xs[rows], width)
            short = (idx < 0).any(axis=1) & (width < len(self.Xs))  # IVF: the probed cells ran out of points
            if short.any():
                _, idx[short] = faiss.knn(queries.Xs[rows[short]], self.Xs, width, metric=self.faiss_metric)
        return np.ascontiguousarray(idx, dtype=np.int64)


def _settle(space: _Space, queries: _Space, in_sample: bool, searcher, rows, k, width, drop_dup, out_idx, out_dist,
            has_dup):
    """Search + refine ``rows`` into the outputs, doubling the window for rows it cannot settle."""
    N = len(space.X)
    while rows.size:
        wi = space.window(searcher, queries, rows, width)
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
            raise TooFewPointsError(
                f"{int((n_valid < k).sum())} point(s) have fewer than k={k} distinct neighbours after dropping "
                "duplicates; lower k, deduplicate the data, or use duplicates='keep'"
            )
        need = np.zeros(rows.size, np.bool_) if full else (n_valid < k) | tie
        done = ~need
        out_idx[rows[done]] = bi[done]
        out_dist[rows[done]] = bd[done]
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
        with progress_bar(nq, "kNN search", progress) as bar:
            for lo in range(0, nq, spec.block_size):
                rows = np.arange(lo, min(nq, lo + spec.block_size), dtype=np.int64)
                _settle(space, qspace, in_sample, searcher, rows, k, k + 1 + spec.margin, drop, idx, dist, has_dup)
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
    quantizer = faiss.IndexFlatIP(d) if space.cosine else faiss.IndexFlatL2(d)
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
