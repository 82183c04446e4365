"""Out-of-core NNK graphs and metrics: row blocks as tasks on any executor (in process, a pool, a Dask cluster).

Data flow of :func:`build_graph` (every arrow is one task per block of ``block_size`` query rows; tasks read their
rows from the ``.npy``/zarr source and write one Parquet part atomically, so no task holds all the data)::

    source --knn (per block: stream the database in shards of shard_size rows, exact or HNSW top-k per shard,
             merge by (distance, index))--> knn/part-*.parquet  + k-th distances --driver--> sigma
           --solve (per block: gather the candidate rows, solve_candidates)--> nnk/part-*.parquet
    GraphParts.to_graph() --> NNKGraph (identical to nnk_graph on the same data)

:func:`graph_metrics` adds the per-point metrics of :func:`nnkscope.metrics.point_metrics` in three passes
(node-local metrics -> tangent bases -> curvature, the last needing the neighbours' tangents).

Parts are named by block and written by rename, and a task whose part exists returns without recomputing: a task
re-run after a worker dies (Dask does that by itself) or an interrupted run started again writes each part once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import __version__
from ._runtime import progress_bar, thread_limit
from ._validate import as_points, check_choice, check_k, check_positive, check_positive_int
from .errors import FileFormatError, InputShapeError, InvalidParameterError, TooFewPointsError
from .executor import as_executor
from .io import atomic_path
from .kernels import Kernel, make_kernel, sigma_from_kth_distance
from .neighbors import (
    APPROXIMATE,
    COSINE_DUP_EPS,
    _resolve_method,
    _settle,
    _Space,
    duplicate_error,
)
from .solvers import DEFAULT_TOL, SOLVERS, solve_candidates

__all__ = ["RowSource", "GraphParts", "build_graph", "graph_metrics"]

_FORMAT = "nnkscope.blocked/1"


# --------------------------------------------------------------------------------------------------------------
# reading rows


@lru_cache(maxsize=8)
def _open(path: str, key: str | None):
    """The array behind a source, opened lazily once per process (memory-mapped .npy or a zarr array)."""
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: no such file or directory; check the path")
    try:
        if p.suffix.lower() == ".npy":
            return np.load(p, mmap_mode="r", allow_pickle=False)
        import zarr

        node = zarr.open(str(p), mode="r")
        if isinstance(node, zarr.Array):
            return node
        arrays = dict(node.arrays())
        if key is None and len(arrays) == 1:
            return next(iter(arrays.values()))
        if key not in arrays:
            raise FileFormatError(f"{p} holds arrays {sorted(arrays)}; choose one with key=... (CLI: --key)")
        return arrays[key]
    except FileFormatError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{p}: could not open it as .npy or zarr ({type(exc).__name__}: {exc}); the file may "
                              "be truncated or corrupt. Re-export it (np.save or zarr)") from exc


@dataclass(frozen=True)
class RowSource:
    """An (N, d) array on disk read by row ranges: a ``.npy`` file (memory-mapped) or a zarr array (row chunks).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"; np.save(p, np.arange(12.0).reshape(4, 3))
    >>> src = RowSource(str(p)); src.shape, src.read(1, 3)[:, 0].tolist()
    ((4, 3), [3.0, 6.0])
    """

    path: str
    key: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        arr = _open(self.path, self.key)
        if len(arr.shape) != 2:
            raise InputShapeError(f"{self.path} holds an array of shape {tuple(arr.shape)}; embeddings must be 2-D")
        return int(arr.shape[0]), int(arr.shape[1])

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi``, validated (finite, real, in range) like any in-memory input."""
        return as_points(np.asarray(_open(self.path, self.key)[lo:hi]), f"rows {lo}..{hi - 1} of {self.path}")

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given (sorted, unique) rows."""
        arr = _open(self.path, self.key)
        block = arr[rows] if isinstance(arr, np.ndarray) else arr.get_orthogonal_selection((rows, slice(None)))
        return as_points(np.asarray(block), f"gathered rows of {self.path}")


# --------------------------------------------------------------------------------------------------------------
# Parquet parts: one row per node, (k,)-lists for the per-candidate arrays


def _write_part(path: Path, columns: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, a in columns.items():
        a = np.ascontiguousarray(a)
        arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1]) if a.ndim == 2 else a
    with atomic_path(path) as tmp:  # dictionary encoding of float lists costs 4x the time for no size gain
        pq.write_table(pa.table(arrays), tmp, compression="zstd", use_dictionary=False)


def _read_part(path: Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FileFormatError(f"{path}: unreadable part ({exc}); delete it and run again to recompute it") from exc
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


# --------------------------------------------------------------------------------------------------------------
# the plan every task receives (small, picklable)


@dataclass(frozen=True)
class _Plan:
    source: RowSource
    out: str
    n: int
    d: int
    k: int
    kernel: str
    metric: str
    method: object  # ExactSearch, HNSWSearch, IVFSearch or TorchSearch
    duplicates: str
    solver: str
    tau: float
    tol: float
    block_size: int
    shard_size: int
    threads: int

    def ranges(self, size: int) -> list[tuple[int, int]]:
        return [(lo, min(self.n, lo + size)) for lo in range(0, self.n, size)]

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return self.ranges(self.block_size)

    @property
    def shards(self) -> list[tuple[int, int]]:
        return self.ranges(self.shard_size)

    def part(self, stage: str, b: int) -> Path:
        return Path(self.out) / stage / f"part-{b:06d}.parquet"

    def index_path(self, s: int) -> Path:
        return Path(self.out) / "index" / f"shard-{s:06d}.faiss"

    def settings(self) -> dict:
        d = asdict(self)
        d.pop("out")
        d.pop("threads")  # results do not depend on it
        d["method"] = {"name": self.method.name, **asdict(self.method)}
        return d


# --------------------------------------------------------------------------------------------------------------
# task bodies (module-level so that any executor can pickle them)


def _index_task(plan: _Plan, s: int) -> int:
    """Build and save the approximate (HNSW or IVF) index of database shard ``s``."""
    import faiss

    path = plan.index_path(s)
    if path.exists():
        return s
    lo, hi = plan.shards[s]
    with thread_limit(plan.threads):
        index = plan.method.searcher(_Space.build(plan.source.read(lo, hi), plan.metric))
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return s


@lru_cache(maxsize=2)
def _load_index(path: str):
    import faiss

    return faiss.read_index(path)


def _search_rows(plan: _Plan, Q: np.ndarray, nodes: np.ndarray, exact: bool = False):
    """Top-k of the query rows over every shard, merged: (indices, distances, has_duplicate).

    Each shard contributes its first k valid candidates by (exact distance, index) -- valid = not the query itself
    and, under ``duplicates="drop"``, not identical to it -- so the merged top-k equals a search of the whole set.
    """
    k, nq = plan.k, len(Q)
    eps = COSINE_DUP_EPS if plan.metric == "cosine" else 0.0
    drop = plan.duplicates == "drop"
    all_idx, all_dist = [], []
    has_dup = np.zeros(nq, bool)
    for s, (lo, hi) in enumerate(plan.shards):
        space = _Space.build(plan.source.read(lo, hi), plan.metric)
        qspace = space.like(Q)
        searcher = None
        if isinstance(plan.method, APPROXIMATE) and not exact:
            searcher = _load_index(str(plan.index_path(s)))  # built once per shard by _index_task
        elif not exact:
            searcher = plan.method.searcher(space)  # None for ExactSearch; device rows for TorchSearch
        kk = min(k + 1, hi - lo)
        while True:
            idx = np.empty((nq, kk), np.int64)
            dist = np.empty((nq, kk))
            _settle(space, qspace, False, searcher, np.arange(nq, dtype=np.int64), kk, kk + plan.method.margin,
                    False, idx, dist, np.zeros(nq, bool))
            idx += lo
            other = idx != nodes[:, None]
            has_dup |= (other & (dist <= eps)).any(axis=1)
            valid = other & ~(drop & (dist <= eps))
            if kk == hi - lo or valid.sum(axis=1).min() >= k:
                break
            kk = min(2 * kk, hi - lo)  # many duplicates in this shard: look further
        all_idx.append(np.where(valid, idx, np.iinfo(np.int64).max))
        all_dist.append(np.where(valid, dist, np.inf))
    idx = np.concatenate(all_idx, axis=1)
    dist = np.concatenate(all_dist, axis=1)
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    idx = np.take_along_axis(idx, order, 1)
    dist = np.take_along_axis(dist, order, 1)
    if not np.isfinite(dist).all():
        short = int((~np.isfinite(dist)).any(axis=1).sum())
        raise TooFewPointsError(f"{short} point(s) have fewer than k={k} distinct neighbours after dropping "
                                "duplicates; lower k, deduplicate the data, or use duplicates='keep'")
    return idx, dist, has_dup


def _knn_task(plan: _Plan, b: int) -> dict:
    path = plan.part("knn", b)
    if path.exists():  # resumed or retried: the finished part answers
        part = _read_part(path)
    else:
        lo, hi = plan.blocks[b]
        with thread_limit(plan.threads):
            idx, dist, dup = _search_rows(plan, plan.source.read(lo, hi), np.arange(lo, hi))
        part = {"node": np.arange(lo, hi), "candidates": idx, "distances": dist, "has_duplicate": dup}
        _write_part(path, part)
    dup = np.flatnonzero(part["has_duplicate"])
    first = (int(part["node"][dup[0]]), int(part["candidates"][dup[0], 0])) if dup.size else None
    return {"block": b, "kth": part["distances"][:, -1].copy(), "n_dup": int(dup.size), "first_dup": first}


def _recall_task(plan: _Plan, rows: np.ndarray) -> float:
    """Mean recall@k of the stored (HNSW) candidates of ``rows`` against exact search."""
    with thread_limit(plan.threads):
        exact, _, _ = _search_rows(plan, plan.source.take(rows), rows, exact=True)
    hits = 0
    for b, (lo, hi) in enumerate(plan.blocks):
        sel = (rows >= lo) & (rows < hi)
        if sel.any():
            cand = _read_part(plan.part("knn", b))["candidates"][rows[sel] - lo]
            hits += sum(np.intersect1d(a, e).size for a, e in zip(cand, exact[sel], strict=True))
    return hits / (len(rows) * plan.k)


def _rows_of_blocks(plan: _Plan, rows: np.ndarray, read) -> dict[str, np.ndarray]:
    """Rows (sorted global indices) of per-block arrays, each owning block read once: ``read(b)`` gives block b's
    ``{name: (block rows, ...) array}`` (tangents of other blocks, NNK rows of other nodes)."""
    owner = rows // plan.block_size
    out: dict[str, np.ndarray] = {}
    for p in np.unique(owner) if len(rows) else [0]:  # no rows: block 0 only gives the shapes
        sel = owner == p
        for name, a in read(int(p)).items():
            if name not in out:
                out[name] = np.empty((len(rows),) + a.shape[1:], a.dtype)
            out[name][sel] = a[rows[sel] - p * plan.block_size]
    return out


def _gather(plan: _Plan, block_rows: np.ndarray, cand: np.ndarray):
    """Block rows followed by the rows of its candidates; candidates re-indexed into that local array."""
    uniq = np.unique(cand)
    Z = np.concatenate([block_rows, plan.source.take(uniq)])
    return Z, len(block_rows) + np.searchsorted(uniq, cand)


def _solve_task(plan: _Plan, b: int, sigma: float | None) -> int:
    path = plan.part("nnk", b)
    if not path.exists():
        knn_part = _read_part(plan.part("knn", b))
        lo, hi = plan.blocks[b]
        Q = plan.source.read(lo, hi)
        Z, local = _gather(plan, Q, knn_part["candidates"])
        theta, errors, status = solve_candidates(Q, Z, Kernel(plan.kernel, sigma), local, solver=plan.solver,
                                                 tau=plan.tau, tol=plan.tol, n_jobs=plan.threads, progress=False)
        _write_part(path, {**knn_part, "theta": theta, "error": errors, "status": status})
    return b


# --------------------------------------------------------------------------------------------------------------
# driver


def _run(executor, fn, args_list, desc: str, progress) -> list:
    """Submit every task, wait with a progress bar, return the results in submission order (first error raised)."""
    futures: list[Future] = [executor.submit(fn, *args) for args in args_list]
    with progress_bar(len(futures), desc, progress, unit="blocks") as bar:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            bar.update(len(done))
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()
    return [f.result() for f in futures]


def _manifest(out: Path, settings: dict) -> None:
    """Record the settings; refuse to mix parts of a run made with other settings."""
    path = out / "manifest.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{path}: unreadable manifest ({exc}); delete {out} to start over") from exc
        if old.get("format") != _FORMAT:
            raise FileFormatError(f"{out} is not an nnkscope blocked-graph folder; choose an empty folder")
        if old["settings"] != json.loads(json.dumps(settings)):
            raise InvalidParameterError(f"{out} holds parts built with other settings ({old['settings']}); use a new "
                                        "folder or delete it to rebuild")
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": _FORMAT, "settings": settings, "nnkscope_version": __version__},
                                  indent=1))


@dataclass
class GraphParts:
    """A blocked NNK graph on disk: ``nnk/part-*.parquet`` (node, candidates, distances, theta, error, status)."""

    out: Path
    plan: _Plan
    params: dict = field(default_factory=dict)

    @property
    def parts(self) -> list[Path]:
        return [self.plan.part("nnk", b) for b in range(len(self.plan.blocks))]

    def to_graph(self):
        """Assemble the whole graph in memory as an :class:`~nnkscope.graph.NNKGraph`."""
        from .graph import NNKGraph

        cols = [_read_part(p) for p in self.parts]
        cat = {name: np.concatenate([c[name] for c in cols]) for name in cols[0]}
        return NNKGraph(cat["candidates"], cat["theta"], cat["error"], cat["status"], cat["distances"],
                        dict(self.params))


def build_graph(source, out_dir, k: int = 30, *, kernel: str = "gaussian", sigma: float | None = None,
                solver: str = "exact", tau: float = 1e-6, tol: float = DEFAULT_TOL, knn="exact",
                duplicates: str = "error", symmetrize: str = "max", block_size: int = 8192,
                shard_size: int = 65536, executor=None, threads_per_task: int = 1,
                progress: bool | None = None) -> GraphParts:
    """Build the NNK graph of an on-disk embedding block by block on ``executor``, writing Parquet parts.

    Parameters
    ----------
    source : path of a ``.npy`` file or zarr array (or a :class:`RowSource`), readable by every worker.
    out_dir : folder for the parts (shared storage on a cluster); a finished or interrupted run there resumes.
    k, kernel, sigma, solver, tau, tol, duplicates, symmetrize : as in :func:`~nnkscope.nnk_graph`.
    knn : "exact", "hnsw" or "ivf" (or an :class:`ExactSearch` / :class:`HNSWSearch` / :class:`IVFSearch` /
        :class:`~nnkscope.gpu.TorchSearch`): the approximate ones build one index per shard, saved for the tasks.
    block_size : query rows per task; shard_size : database rows searched at a time.  A task holds about
        ``(block_size + shard_size) * d * 12`` bytes of rows (the read rows and faiss's float32 copy), up to
        ``min(N, block_size * k) * d * 8`` for the solve's gathered candidate rows, and ``block_size * k * 60``
        for windows and results (``docs/scaling.md``).
    executor : None (in this process), a ``concurrent.futures.Executor`` or a Dask ``distributed.Client``.
    threads_per_task : faiss/numba/BLAS threads inside each task.

    Returns
    -------
    GraphParts ; ``.to_graph()`` equals ``nnk_graph`` on the same data (same candidates, same weights).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); X = np.random.default_rng(0).normal(size=(300, 4))
    >>> np.save(d / "x.npy", X)
    >>> parts = build_graph(d / "x.npy", d / "g", k=8, block_size=100, shard_size=128)
    >>> from nnkscope import nnk_graph
    >>> bool((parts.to_graph().theta == nnk_graph(X, k=8).theta).all())
    True
    """
    from .graph import RULES

    src = source if isinstance(source, RowSource) else RowSource(str(source))
    n, d = src.shape
    k = check_k(k, n, extra=1)
    kern = make_kernel(kernel, sigma)
    check_choice(solver, "solver", SOLVERS)
    check_choice(symmetrize, "symmetrize", RULES)
    check_choice(duplicates, "duplicates", ("error", "keep", "drop"))
    for name, v in (("block_size", block_size), ("shard_size", shard_size), ("threads_per_task", threads_per_task)):
        check_positive_int(v, name)
    if shard_size <= k:
        raise InvalidParameterError(f"shard_size={shard_size} must exceed k={k}")
    method = _resolve_method(knn)
    out = Path(out_dir)
    plan = _Plan(src, str(out), n, d, k, kern.name, {"gaussian": "euclidean", "cosine": "cosine"}[kern.name],
                 method, duplicates, solver, check_positive(tau, "tau", allow_zero=True), check_positive(tol, "tol"),
                 block_size, shard_size, threads_per_task)
    settings = {**plan.settings(), "sigma": kern.sigma}
    _manifest(out, settings)
    ex = as_executor(executor)
    nb, t0 = len(plan.blocks), time.perf_counter()
    recall = None
    if isinstance(method, APPROXIMATE):
        _run(ex, _index_task, [(plan, s) for s in range(len(plan.shards))], "HNSW shards", progress)
    found = _run(ex, _knn_task, [(plan, b) for b in range(nb)], "kNN blocks", progress)
    n_dup = sum(r["n_dup"] for r in found)
    if duplicates == "error" and n_dup:
        first = next(r["first_dup"] for r in found if r["n_dup"])
        raise duplicate_error(n_dup, *first)
    if isinstance(method, APPROXIMATE):
        rng = np.random.default_rng(method.seed)
        sample = np.sort(rng.choice(n, size=min(method.recall_sample, n), replace=False)).astype(np.int64)
        recall = _run(ex, _recall_task, [(plan, sample)], "recall check", progress)[0]
    if kern.name == "gaussian" and kern.sigma is None:
        kern = Kernel("gaussian", sigma_from_kth_distance(np.concatenate([r["kth"] for r in found])))
    t1 = time.perf_counter()
    _run(ex, _solve_task, [(plan, b, kern.sigma) for b in range(nb)], "NNK blocks", progress)
    t2 = time.perf_counter()
    params = {"k": k, "kernel": kern.name, "sigma": kern.sigma, "solver": solver, "symmetrize": symmetrize,
              "tau": plan.tau, "tol": plan.tol,
              "knn": {"k": k, "metric": plan.metric, "method": method.name, "duplicates": duplicates,
                      "points_with_duplicate": n_dup, "recall": recall, "method_settings": asdict(method)},
              "n_features": d, "dtype": str(src.read(0, 1).dtype), "nnkscope_version": __version__,
              "blocked": {"block_size": block_size, "shard_size": shard_size, "blocks": nb,
                          "shards": len(plan.shards), "parts": str(out / "nnk")},
              "timings": {"knn_s": t1 - t0, "solve_s": t2 - t1}}
    return GraphParts(out, plan, params)


# --------------------------------------------------------------------------------------------------------------
# blocked per-point metrics


def _metrics_task(plan: _Plan, b: int, opts: dict) -> np.ndarray:
    """Node-local metrics of block ``b`` (everything but curvature); returns its local dimensions."""
    from .labels import class_homogeneity
    from .manifold import local_dimension, polytope_diameter
    from .metrics import loo_columns

    path = plan.part("metrics_local", b)
    if not path.exists():
        g = _read_part(plan.part("nnk", b))
        lo, hi = plan.blocks[b]
        Z, cand = _gather(plan, plan.source.read(lo, hi), g["candidates"])
        norm, theta = opts["normalize"], g["theta"]
        ids, ratio = local_dimension(Z, cand, theta, energy=opts["energy"], normalize=norm, n_jobs=plan.threads)
        cols = {"node": g["node"], "nnk_degree": np.count_nonzero(theta, axis=1), "interpolation_error": g["error"],
                "diameter": polytope_diameter(Z, cand, theta, normalize=norm, n_jobs=plan.threads),
                "local_id": ids, "first_pc_ratio": ratio, "solver_status": g["status"]}
        if opts["labels"] is not None:
            codes = np.load(opts["labels"], mmap_mode="r")
            own, nbr = np.asarray(codes[lo:hi]), np.asarray(codes[g["candidates"]])
            cols["homogeneity"] = class_homogeneity(np.arange(nbr.size).reshape(nbr.shape), theta, nbr.ravel(), own)
            cols["homogeneity_unweighted"] = class_homogeneity(np.arange(nbr.size).reshape(nbr.shape), theta,
                                                               nbr.ravel(), own, weighted=False)
            loo, _ = loo_columns(theta, g["distances"], Kernel(plan.kernel, opts["sigma"]), own, nbr,
                                 opts["n_classes"])
            cols.update(loo)
        _write_part(path, cols)
    return _read_part(path)["local_id"]


def _tangent_path(plan: _Plan, b: int) -> Path:
    return Path(plan.out) / "tangents" / f"part-{b:06d}.npy"


def _tangent_task(plan: _Plan, b: int, dim: int, normalize: bool) -> int:
    from .manifold import tangent_spaces

    path = _tangent_path(plan, b)
    if not path.exists():
        g = _read_part(plan.part("nnk", b))
        lo, hi = plan.blocks[b]
        Z, cand = _gather(plan, plan.source.read(lo, hi), g["candidates"])
        U = tangent_spaces(Z, cand, dim, normalize=normalize, n_jobs=plan.threads)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, U)
    return b


def _curvature_task(plan: _Plan, b: int) -> int:
    from .manifold import _curv

    path = plan.part("metrics", b)
    if not path.exists():
        g = _read_part(plan.part("nnk", b))
        uniq = np.unique(g["candidates"])
        U_nbr = _rows_of_blocks(plan, uniq, lambda p: {"U": np.load(_tangent_path(plan, p), mmap_mode="r")})["U"]
        U = np.concatenate([np.load(_tangent_path(plan, b)), U_nbr])
        cand = len(g["node"]) + np.searchsorted(uniq, g["candidates"])
        curv = np.empty(len(cand))
        with thread_limit(plan.threads):
            _curv(np.ascontiguousarray(U), cand, g["theta"], curv)
        _write_part(path, {**_read_part(plan.part("metrics_local", b)), "curvature": curv})
    return b


def _metrics_manifest(plan: _Plan, settings: dict) -> None:
    """Metric parts are reused on resume only for the same labels and settings."""
    path = Path(plan.out) / "metrics_manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            raise InvalidParameterError(
                f"{plan.out} holds metric parts computed with other labels or settings ({old}); delete "
                f"{plan.out}/metrics*, {plan.out}/metrics_manifest.json to recompute, or build into a new folder")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings))


def _edge_task(plan: _Plan, b: int, labels: str | None) -> dict:
    """Block b's share of the max-symmetrised adjacency: each undirected pair {i, j} is counted once, by the
    directed edge i -> j with i in this block when j -> i is absent or i < j; its weight is max(W_ij, W_ji)."""
    g = _read_part(plan.part("nnk", b))
    lo = plan.blocks[b][0]
    r, s = np.nonzero(g["theta"] > 0)
    i, j, w_ij = lo + r, g["candidates"][r, s], g["theta"][r, s]
    targets = np.unique(j)
    rows_j = _rows_of_blocks(plan, targets, lambda p: _read_part(plan.part("nnk", p), ["candidates", "theta"]))
    pos = np.searchsorted(targets, j)
    w_ji = np.where(rows_j["candidates"][pos] == i[:, None], rows_j["theta"][pos], 0.0).sum(axis=1)  # distinct
    own = (w_ji == 0) | (i < j)
    a = np.maximum(w_ij, w_ji)[own]
    out = {"pairs": int(own.sum()), "weight": float(a.sum()), "touched": np.union1d(i, targets), "cross": np.nan}
    if labels is not None:
        codes = np.load(labels, mmap_mode="r")
        out["cross"] = float(a[np.asarray(codes[i[own]]) != np.asarray(codes[j[own]])].sum())
    return out


def _graph_summary(ex, plan: _Plan, labels: str | None, progress) -> dict:
    """Dataset-level numbers of the max-symmetrised graph from per-block edge sums (no N x N matrix anywhere)."""
    parts = _run(ex, _edge_task, [(plan, b, labels) for b in range(len(plan.blocks))], "edge blocks", progress)
    touched = np.zeros(plan.n, bool)  # nodes with an edge: an NNK neighbour, or someone's NNK neighbour
    for part in parts:
        touched[part["touched"]] = True
    weight = sum(p["weight"] for p in parts)
    out = {"rule": "max", "undirected_edges": sum(p["pairs"] for p in parts),
           "isolated_nodes": int((~touched).sum())}
    if labels is not None:
        cross = sum(p["cross"] for p in parts)
        # one-hot labels: tr(Y'LY) = 1/2 sum_ij A_ij |y_i - y_j|^2 = 2 x (cross-class weight over pairs)
        out.update(dirichlet_energy=2.0 * cross, cross_class_edge_fraction=cross / weight if weight else np.nan)
    return out


def graph_metrics(parts: GraphParts, y=None, *, energy: float = 0.9, curvature_dim: int | None = None,
                  normalize: bool | None = None, executor=None, progress: bool | None = None):
    """Per-point metrics of a blocked graph, written as ``metrics/part-*.parquet``; returns the DataFrame.

    The columns equal those of :func:`~nnkscope.metrics.point_metrics` on the same graph (``label`` and
    ``loo_prediction`` are decoded from the class codes); ``y`` (length N) is saved once in the run folder for the
    workers.  ``df.attrs["graph"]`` holds the graph-level numbers of the max-symmetrised adjacency (undirected
    edges, isolated nodes and, with labels, Dirichlet energy and cross-class edge fraction), summed per block.
    Curvature needs each neighbour's tangent basis, so tangents are written per block first
    (``8 * N * dim * d`` bytes on disk) and removed when the curvature parts are done.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); X = np.random.default_rng(0).normal(size=(200, 3))
    >>> np.save(d / "x.npy", X)
    >>> df = graph_metrics(build_graph(d / "x.npy", d / "g", k=8, block_size=64, shard_size=100))
    >>> len(df), "curvature" in df
    (200, True)
    """
    import pandas as pd

    from .interpolation import _encode_labels

    plan = parts.plan
    ex = as_executor(executor)
    nb = len(plan.blocks)
    norm = (plan.kernel == "cosine") if normalize is None else normalize
    opts = {"energy": float(energy), "normalize": norm, "labels": None, "sigma": parts.params.get("sigma"),
            "n_classes": 0}
    classes, codes = (None, None) if y is None else _encode_labels(y, plan.n)
    _metrics_manifest(plan, {"energy": float(energy), "normalize": bool(norm), "curvature_dim": curvature_dim,
                             "labels_sha1": None if codes is None else hashlib.sha1(codes.tobytes()).hexdigest()})
    if codes is not None:
        labels_path = Path(plan.out) / "labels.npy"
        with atomic_path(labels_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, codes.astype(np.int64))
        opts.update(labels=str(labels_path), n_classes=len(classes))
    ids = _run(ex, _metrics_task, [(plan, b, opts) for b in range(nb)], "metrics blocks", progress)
    dim = curvature_dim if curvature_dim is not None else max(1, int(np.median(np.concatenate(ids))))
    dim = min(dim, plan.k, plan.d)
    _run(ex, _tangent_task, [(plan, b, dim, norm) for b in range(nb)], "tangent blocks", progress)
    _run(ex, _curvature_task, [(plan, b) for b in range(nb)], "curvature blocks", progress)
    shutil.rmtree(Path(plan.out) / "tangents", ignore_errors=True)
    df = pd.concat([pd.DataFrame(_read_part(plan.part("metrics", b))) for b in range(nb)], ignore_index=True)
    if classes is not None:
        df.insert(df.columns.get_loc("homogeneity"), "label", np.asarray(y))
        df["loo_prediction"] = classes[df.pop("loo_prediction_code").to_numpy()]
    df.attrs["curvature_dim"] = dim
    df.attrs["graph"] = _graph_summary(ex, plan, opts["labels"], progress)
    return df
