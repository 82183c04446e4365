"""The NNK graph pipeline: row blocks as tasks, in this process or on any executor (a pool, a Dask cluster).

One pipeline serves every size.  :func:`nnk_graph` on an in-memory array is :func:`build_graph` with one block
whose parts stay in memory; :func:`build_graph` on a file (or an array with ``out_dir``) runs the same task
functions over many blocks on an executor and writes each part to disk.  Data flow (every arrow is one task per
block of ``block_size`` query rows)::

    source --knn (per block: stream the database in shards of shard_size rows, exact or approximate top-k per
             shard, merged by (distance, index))--> knn parts + k-th distances --driver--> sigma (Kernel.resolve)
           --solve (per block: gather the candidate rows, solve_candidates)--> nnk parts
    GraphParts.to_graph() --> NNKGraph;  nnkscope.measures.metrics.graph_metrics --> per-point metric parts

On disk, parts are named by block and written by rename; a task whose part exists returns without recomputing, so
a task re-run after a worker dies (Dask does that by itself) or an interrupted run writes each part once.  A
manifest holds the settings and the input's content fingerprint: a run folder is resumed only for the same
settings and the same data.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._runtime import progress_bar, resolve_n_jobs, thread_limit
from .._validate import as_points, check_k, check_positive_int
from .._version import __version__
from ..errors import FileFormatError, InputShapeError, InvalidParameterError, TooFewPointsError
from ..executor import as_executor, is_inline
from ..io import ArraySource, DiskParts, MemoryParts, RowSource, as_source, atomic_path, write_npy
from .graph import NNKGraph, rows_to_csr, symmetrize
from .kernels import Kernel
from .neighbors import APPROXIMATE, COSINE_DUP_EPS, Neighbors, _query_tiles, _settle, _Space, duplicate_error
from .settings import DEFAULT_K, GraphSettings
from .solvers import DEFAULT_TOL, solve_candidates

__all__ = ["RowSource", "GraphParts", "build_graph", "nnk_graph", "knn_graph"]

_FORMAT = "nnkscope.blocked/1"


# --------------------------------------------------------------------------------------------------------------
# the plan every task receives (small and picklable for on-disk runs)


@dataclass(frozen=True, eq=False)
class _Plan:
    source: object  # RowSource (on disk) or ArraySource (in memory)
    parts: object  # DiskParts or MemoryParts
    n: int
    d: int
    settings: GraphSettings
    block_size: int
    shard_size: int
    threads: int | None
    progress: bool | None = False  # row-level bars inside tasks: the in-memory (single-block) run only
    solve_block: int = 16384  # nodes per solver block inside a task (bounds scratch memory)

    @property
    def k(self) -> int:
        return self.settings.k

    @property
    def metric(self) -> str:
        return self.settings.metric

    @property
    def method(self):
        return self.settings.knn

    def ranges(self, size: int) -> list[tuple[int, int]]:
        return [(lo, min(self.n, lo + size)) for lo in range(0, self.n, size)]

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return self.ranges(self.block_size)

    @property
    def shards(self) -> list[tuple[int, int]]:
        return self.ranges(self.shard_size)

    def rows_of_blocks(self, rows: np.ndarray, read) -> dict[str, np.ndarray]:
        """Rows (sorted global indices) of per-block arrays, each owning block read once: ``read(b)`` gives block
        b's ``{name: (block rows, ...) array}`` (tangents of other blocks, NNK rows of other nodes)."""
        owner = rows // self.block_size
        out: dict[str, np.ndarray] = {}
        for p in np.unique(owner) if len(rows) else [0]:  # no rows: block 0 only gives the shapes
            sel = owner == p
            for name, a in read(int(p)).items():
                if name not in out:
                    out[name] = np.empty((len(rows),) + a.shape[1:], a.dtype)
                out[name][sel] = a[rows[sel] - p * self.block_size]
        return out


# --------------------------------------------------------------------------------------------------------------
# task bodies (module-level so that any executor can pickle them)


def _shard_space(plan: _Plan, s_lo: int, s_hi: int) -> _Space:
    """The searched space of database rows ``s_lo:s_hi``; an in-memory run builds it once for its index, search
    and recall check (the float32 copy of a 50,000 x 768 layer took 0.4 s each time)."""
    return plan.parts.memo(("space", s_lo, s_hi), lambda: _Space.build(plan.source.read(s_lo, s_hi), plan.metric))


def _index_task(plan: _Plan, s: int) -> int:
    """Build and keep the approximate (HNSW or IVF) index of database shard ``s``."""
    if not plan.parts.has_index(s):
        lo, hi = plan.shards[s]
        with thread_limit(plan.threads):
            plan.parts.write_index(s, plan.method.searcher(_shard_space(plan, lo, hi)))
    return s


def _search_rows(plan: _Plan, lo: int, hi: int, Q: np.ndarray, exact: bool = False, nodes=None):
    """Top-k of the query rows over every shard, merged: (indices, distances, has_duplicate).

    Each shard contributes its first k valid candidates by (exact distance, index) -- valid = not the query itself
    and, under ``duplicates="drop"``, not identical to it -- so the merged top-k equals a search of the whole set.
    Queries go in sub-blocks of the search method's ``block_size``, so extra memory stays O(block * k).
    ``nodes`` are the queries' row numbers (default ``lo:hi``), excluded from their own candidates.
    """
    k, nq = plan.k, len(Q)
    nodes = np.arange(lo, hi) if nodes is None else nodes
    shards = []
    for s, (s_lo, s_hi) in enumerate(plan.shards):
        space = _shard_space(plan, s_lo, s_hi)
        # queries that are this very shard (the in-memory graph) are searched in its own space: no second copy
        qspace = space.slice(lo - s_lo, hi - s_lo) if (s_lo, s_hi) == (lo, hi) else space.like(Q)
        if isinstance(plan.method, APPROXIMATE) and not exact:
            searcher = plan.parts.read_index(s)  # built once per shard by _index_task
        else:
            searcher = None if exact else plan.method.searcher(space)  # None: exact; device rows: TorchSearch
        shards.append((s_lo, s_hi, space, qspace, searcher))
    idx_out = np.empty((nq, k), np.int64)
    dist_out = np.empty((nq, k))
    has_dup = np.zeros(nq, bool)
    step = plan.method.block_size
    s_lo, s_hi, space, _, searcher = shards[0]
    # queries that are the whole database (the in-memory graph), searched exactly: the self-join's windows
    join = len(shards) == 1 and (s_lo, s_hi) == (lo, hi) and searcher is None
    width = min(k + 1, s_hi - s_lo) + plan.method.margin  # _search_sub_block's first window
    tiles = _query_tiles(space, nq, step, width, join=join, local=True)
    with progress_bar(nq, "kNN search", plan.progress) as bar:
        for q_lo, q_hi, windows in tiles:
            sub = [(s_lo, s_hi, space, qspace.slice(q_lo, q_hi), windows or searcher)
                   for s_lo, s_hi, space, qspace, searcher in shards]
            idx_out[q_lo:q_hi], dist_out[q_lo:q_hi], has_dup[q_lo:q_hi] = _search_sub_block(plan, sub,
                                                                                          nodes[q_lo:q_hi])
            bar.update(q_hi - q_lo)
    return idx_out, dist_out, has_dup


def _search_sub_block(plan: _Plan, shards, nodes: np.ndarray):
    k, nq = plan.k, len(nodes)
    eps = COSINE_DUP_EPS if plan.metric == "cosine" else 0.0
    drop = plan.settings.duplicates == "drop"
    rows = np.arange(nq, dtype=np.int64)
    all_idx, all_dist = [], []
    has_dup = np.zeros(nq, bool)
    for s_lo, s_hi, space, qspace, searcher in shards:
        kk = min(k + 1, s_hi - s_lo)
        while True:
            idx = np.empty((nq, kk), np.int64)
            dist = np.empty((nq, kk))
            _settle(space, qspace, False, searcher, rows, kk, kk + plan.method.margin, False, idx, dist,
                    np.zeros(nq, bool))
            idx += s_lo
            other = idx != nodes[:, None]
            dup = (other & (dist <= eps)).any(axis=1)
            valid = other & ~(drop & (dist <= eps))
            if kk == s_hi - s_lo or valid.sum(axis=1).min() >= k:
                break
            kk = min(2 * kk, s_hi - s_lo)  # many duplicates in this shard: look further
        has_dup |= dup
        all_idx.append(np.where(valid, idx, np.iinfo(np.int64).max))
        all_dist.append(np.where(valid, dist, np.inf))
    idx, dist = np.concatenate(all_idx, axis=1), np.concatenate(all_dist, axis=1)
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    idx, dist = np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)
    if not np.isfinite(dist).all():
        short = int((~np.isfinite(dist)).any(axis=1).sum())
        raise TooFewPointsError(f"{short} point(s) have fewer than k={k} distinct neighbours after dropping "
                                "duplicates; lower k, deduplicate the data, or use duplicates='keep'")
    return idx, dist, has_dup


def _knn_task(plan: _Plan, b: int) -> dict:
    if plan.parts.has("knn", b):  # resumed or retried: the finished part answers
        part = plan.parts.read("knn", b)
    else:
        lo, hi = plan.blocks[b]
        with thread_limit(plan.threads):
            idx, dist, dup = _search_rows(plan, lo, hi, plan.source.read(lo, hi))
        part = {"node": np.arange(lo, hi), "candidates": idx, "distances": dist, "has_duplicate": dup}
        plan.parts.write("knn", b, part)
    dup = np.flatnonzero(part["has_duplicate"])
    first = (int(part["node"][dup[0]]), int(part["candidates"][dup[0], 0])) if dup.size else None
    return {"block": b, "kth": part["distances"][:, -1].copy(), "n_dup": int(dup.size), "first_dup": first}


def _recall_task(plan: _Plan, rows: np.ndarray) -> float:
    """Mean recall@k of the stored (approximate) candidates of ``rows`` against exact search."""
    with thread_limit(plan.threads):
        exact, _, _ = _search_rows(plan, 0, 0, plan.source.take(rows), exact=True, nodes=rows)
    hits = 0
    for b, (lo, hi) in enumerate(plan.blocks):
        sel = (rows >= lo) & (rows < hi)
        if sel.any():
            cand = plan.parts.read("knn", b, ["candidates"])["candidates"][rows[sel] - lo]
            hits += sum(np.intersect1d(a, e).size for a, e in zip(cand, exact[sel], strict=True))
    return hits / (len(rows) * plan.k)


def _solve_task(plan: _Plan, b: int, sigma: float | None) -> int:
    if not plan.parts.has("nnk", b):
        knn_part = plan.parts.read("knn", b)
        lo, hi = plan.blocks[b]
        Q, Z, local = plan.source.gather(lo, hi, knn_part["candidates"])
        s = plan.settings
        theta, errors, status = solve_candidates(Q, Z, Kernel(s.kernel, sigma), local, solver=s.solver, tau=s.tau,
                                                 tol=s.tol, n_jobs=plan.threads, block_size=plan.solve_block,
                                                 progress=plan.progress)
        plan.parts.write("nnk", b, {**knn_part, "theta": theta, "error": errors, "status": status})
    return b


# --------------------------------------------------------------------------------------------------------------
# driver


def run_tasks(executor, fn, args_list, desc: str, progress, unit: str = "blocks") -> list:
    """Submit every task, wait with a progress bar, return the results in submission order (first error raised)."""
    futures: list[Future] = [executor.submit(fn, *args) for args in args_list]
    with progress_bar(len(futures), desc, progress, unit=unit) as bar:
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


def _manifest(out: Path, record: dict) -> None:
    """Record the settings and the input fingerprint; refuse to mix parts made from other settings or data."""
    path = out / "manifest.json"
    record = json.loads(json.dumps(record))
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{path}: unreadable manifest ({exc}); delete {out} to start over") from exc
        if not isinstance(old, dict) or old.get("format") != _FORMAT:
            raise FileFormatError(f"{out} is not an nnkscope blocked-graph folder; choose an empty folder")
        if old.get("input") != record["input"]:
            raise InvalidParameterError(
                f"{out} holds parts built from other data (input fingerprint {old.get('input', {}).get('sha')} vs "
                f"{record['input']['sha']} now, shape {old.get('input', {}).get('shape')} vs "
                f"{record['input']['shape']}): the input changed since. Use a new --parts-dir, or delete {out} to "
                "rebuild")
        if old.get("nnkscope_version") != __version__:
            raise InvalidParameterError(f"{out} holds parts built by nnkscope {old.get('nnkscope_version')}, not "
                                        f"{__version__}; use a new folder or delete it to rebuild")
        if old.get("settings") != record["settings"]:
            raise InvalidParameterError(f"{out} holds parts built with other settings ({old.get('settings')}); use "
                                        "a new folder or delete it to rebuild")
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": _FORMAT, **record, "nnkscope_version": __version__}, indent=1))


@dataclass
class GraphParts:
    """An NNK graph held as per-block parts (node, candidates, distances, theta, error, status), on disk or in
    memory; ``out`` is the run folder (None in memory)."""

    out: Path | None
    plan: _Plan
    params: dict = field(default_factory=dict)

    @property
    def settings(self) -> GraphSettings:
        return self.plan.settings

    @property
    def kernel(self) -> Kernel:
        """The resolved kernel (sigma set by the bandwidth rule where it was not given)."""
        return Kernel(self.plan.settings.kernel, self.params.get("sigma"))

    @property
    def parts(self) -> list[Path]:
        """Paths of the NNK parts (on-disk runs)."""
        if self.out is None:
            return []
        return [Path(self.out) / "nnk" / f"part-{b:06d}.parquet" for b in range(len(self.plan.blocks))]

    def read(self, b: int, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.plan.parts.read("nnk", b, columns)

    def to_graph(self) -> NNKGraph:
        """Assemble the whole graph in memory as an :class:`~nnkscope.engine.graph.NNKGraph`."""
        cols = [self.read(b) for b in range(len(self.plan.blocks))]
        cat = {name: cols[0][name] if len(cols) == 1 else np.concatenate([c[name] for c in cols])
               for name in cols[0]}
        return NNKGraph(cat["candidates"], cat["theta"], cat["error"], cat["status"], cat["distances"],
                        dict(self.params))


def _settings(settings: GraphSettings | None, **given) -> GraphSettings:
    """Settings from a GraphSettings and/or keyword values: a keyword overrides unless it is None (not given)."""
    given = {name: v for name, v in given.items() if v is not None}
    if settings is None:
        return GraphSettings(**given)
    if not isinstance(settings, GraphSettings):
        raise InvalidParameterError(f"settings must be a GraphSettings; got {type(settings).__name__}")
    changes = {name: v for name, v in given.items() if v != getattr(settings, name)}
    return settings.replace(**changes) if changes else settings


def build_graph(source, out_dir=None, k: int | None = None, *, settings: GraphSettings | None = None,
                kernel: str | None = None, sigma: float | None = None, solver: str | None = None,
                tau: float | None = None, tol: float | None = None, knn=None, duplicates: str | None = None,
                symmetrize: str | None = None, block_size: int = 8192, shard_size: int = 65536, executor=None,
                threads_per_task: int | None = 1, key: str | None = None, progress: bool | None = None,
                solve_block: int = 16384, _neighbors: Neighbors | None = None) -> GraphParts:
    """Build the NNK graph of an embedding block by block, on disk or in memory.

    Parameters
    ----------
    source : an (N, d) array, the path of a ``.npy`` file or zarr array (read by row ranges, never loaded whole;
        ``key`` picks an array of a zarr group), or a :class:`RowSource`.  Paths must be readable by every worker.
    out_dir : folder for the parts (shared storage on a cluster); a finished or interrupted run there resumes
        when the settings and the input's content are the same.  None keeps the parts in memory (needs an
        in-memory array and no executor).  An array with an ``out_dir`` is saved there once for the workers.
    k, kernel, sigma, solver, tau, tol, knn, duplicates, symmetrize : the :class:`GraphSettings` (given whole as
        ``settings=``, or by name; names override).  The approximate searches ("hnsw", "ivf") build one index per
        shard, saved for the tasks.
    block_size : query rows per task; shard_size : database rows searched at a time.  A task holds about
        ``(block_size + shard_size) * d * 12`` bytes of rows (the read rows and faiss's float32 copy), up to
        ``min(N, block_size * k) * d * 8`` for the solve's gathered candidate rows, and ``block_size * k * 60``
        for windows and results (``docs/scaling.md``).
    executor : None (in this process), a ``concurrent.futures.Executor`` or a Dask ``distributed.Client``.
    threads_per_task : faiss/numba/BLAS threads inside each task (None: every CPU).

    Returns
    -------
    GraphParts ; ``.to_graph()`` equals ``nnk_graph`` on the same data (same candidates, same weights).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); X = np.random.default_rng(0).normal(size=(300, 4))
    >>> np.save(d / "x.npy", X)
    >>> parts = build_graph(d / "x.npy", d / "g", k=8, block_size=100, shard_size=128)
    >>> bool((parts.to_graph().theta == nnk_graph(X, k=8).theta).all())
    True
    """
    s = _settings(settings, k=k, kernel=kernel, sigma=sigma, solver=solver, tau=tau, tol=tol, knn=knn,
                  duplicates=duplicates, symmetrize=symmetrize)
    for name, v in (("block_size", block_size), ("shard_size", shard_size)):
        check_positive_int(v, name)
    if threads_per_task is not None:
        resolve_n_jobs(threads_per_task)  # validates
    in_memory = out_dir is None
    if in_memory:
        if isinstance(source, (str, os.PathLike, RowSource)):
            raise InvalidParameterError("an on-disk source needs out_dir= (a folder for the parts); pass an array "
                                        "to build in memory")
        if executor is not None and not is_inline(executor):
            raise InvalidParameterError("an executor runs tasks elsewhere, so the parts need a folder every worker "
                                        "can reach: pass out_dir=...")
        src = as_source(source)
    else:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InvalidParameterError(f"out_dir {out} is a file; give a folder for the parts")
        if isinstance(source, (str, os.PathLike, RowSource)):
            src = as_source(source, key)
        else:  # an array run out of core: saved once next to its parts, for the workers
            X = as_points(source)
            src = RowSource(str(out / "input.npy"))
            if not Path(src.path).exists() or ArraySource(X).fingerprint() != src.fingerprint():
                write_npy(src.path, X)
    n, d = src.shape
    check_k(s.k, n, extra=1)
    if shard_size <= s.k:
        raise InvalidParameterError(f"shard_size={shard_size} must exceed k={s.k}")
    if in_memory:
        block_size = shard_size = max(n, 1)  # one block: the in-memory graph is the blocked graph of one block
    plan = _Plan(src, MemoryParts() if in_memory else DiskParts(str(out_dir)), n, d, s, block_size, shard_size,
                 threads_per_task, progress if in_memory else False, solve_block)
    if not in_memory:
        _manifest(Path(out_dir), {"settings": {**s.to_dict(), "block_size": block_size, "shard_size": shard_size},
                                  "input": {"shape": [n, d], "sha": src.fingerprint()}})
    ex = as_executor(executor)
    bar = False if in_memory else progress
    nb, t0 = len(plan.blocks), time.perf_counter()
    method, recall = s.knn, None
    if _neighbors is not None:
        plan.parts.write("knn", 0, {"node": np.arange(n), "candidates": _neighbors.indices,
                                    "distances": _neighbors.distances,
                                    "has_duplicate": np.zeros(n, bool)})
    if isinstance(method, APPROXIMATE) and _neighbors is None:
        run_tasks(ex, _index_task, [(plan, i) for i in range(len(plan.shards))], "index shards", bar)
    found = run_tasks(ex, _knn_task, [(plan, b) for b in range(nb)], "kNN blocks", bar)
    n_dup = sum(r["n_dup"] for r in found) if _neighbors is None else _neighbors.n_with_duplicate
    if s.duplicates == "error" and n_dup:
        first = next(r["first_dup"] for r in found if r["n_dup"])
        raise duplicate_error(n_dup, *first)
    knn_params = {"k": s.k, "metric": s.metric, "method": method.name, "duplicates": s.duplicates,
                  "points_with_duplicate": n_dup, "recall": recall, "method_settings": asdict(method)}
    if _neighbors is not None:
        knn_params = _neighbors.summary()
    elif isinstance(method, APPROXIMATE):
        rng = np.random.default_rng(method.seed)
        sample = np.sort(rng.choice(n, size=min(method.recall_sample, n), replace=False)).astype(np.int64)
        knn_params["recall"] = run_tasks(ex, _recall_task, [(plan, sample)], "recall check", bar)[0]
        knn_params["recall_sample"] = len(sample)
    plan.parts.remove("memo")  # the searched copies: not needed past the search
    kern = s.kernel_object.resolve(np.concatenate([r["kth"] for r in found]))
    t1 = time.perf_counter()
    run_tasks(ex, _solve_task, [(plan, b, kern.sigma) for b in range(nb)], "NNK blocks", bar)
    t2 = time.perf_counter()
    params = {"k": s.k, "kernel": kern.name, "sigma": kern.sigma, "solver": s.solver, "symmetrize": s.symmetrize,
              "tau": s.tau, "tol": s.tol, "knn": knn_params, "n_features": d,
              "dtype": str(src.read(0, 1).dtype), "nnkscope_version": __version__, "settings": s.to_dict(),
              "timings": {"knn_s": t1 - t0, "solve_s": t2 - t1}}
    if not in_memory:
        params["blocked"] = {"block_size": block_size, "shard_size": shard_size, "blocks": nb,
                             "shards": len(plan.shards), "parts": str(Path(out_dir) / "nnk")}
    return GraphParts(None if in_memory else Path(out_dir), plan, params)


_NNK_GRAPH_DEFAULTS = {"k": DEFAULT_K, "kernel": "gaussian", "sigma": None, "solver": "exact", "symmetrize": "max",
                       "tau": 1e-6, "tol": DEFAULT_TOL, "knn": "exact", "duplicates": "error"}


def nnk_graph(X, k: int = DEFAULT_K, *, settings: GraphSettings | None = None, kernel: str = "gaussian",
              sigma: float | None = None, solver: str = "exact", symmetrize: str = "max", tau: float = 1e-6,
              tol: float = DEFAULT_TOL, knn="exact", duplicates: str = "error", n_jobs: int | None = None,
              block_size: int = 16384, progress: bool | None = None, executor=None, work_dir=None) -> NNKGraph:
    """Build the NNK graph of the rows of ``X``.

    Parameters
    ----------
    X : (N, d) array of points (float32 or float64; integers are promoted).
    k, kernel, sigma, solver, symmetrize, tau, tol, knn, duplicates : the :class:`GraphSettings` (see there), by
        name, or whole as ``settings=`` (names given explicitly then override it).  ``knn`` may also be a
        precomputed :class:`~nnkscope.engine.neighbors.Neighbors`.  The Gaussian default follows the NNK graph
        paper; the measurement entry points (``point_metrics``, the studies) default to cosine, the kernel of
        representation studies.
    n_jobs : threads (default: all CPUs available); results do not depend on it for exact search.
    block_size : nodes solved per solver block (bounds scratch memory; the progress bar advances per block).
    progress : progress bars (default: when stderr is a terminal).
    executor : run block by block on an executor instead: a Dask ``distributed.Client``, a
        ``concurrent.futures.Executor`` or "inline" (:func:`build_graph` with ``X`` saved once to ``work_dir``,
        default a temporary folder that must be visible to the workers; tasks of ``block_size`` rows, ``n_jobs``
        threads inside each).  The result equals the in-process one.

    Returns
    -------
    NNKGraph

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> G = nnk_graph(rng.normal(size=(200, 3)), k=10)
    >>> G.theta.shape, bool((G.n_neighbors <= 10).all())
    ((200, 10), True)
    >>> A = G.adjacency("max"); bool(abs(A - A.T).max() == 0)
    True
    """
    X = as_points(X)
    neighbors = knn if isinstance(knn, Neighbors) else None
    given = dict(k=k, kernel=kernel, sigma=sigma, solver=solver, symmetrize=symmetrize, tau=tau, tol=tol,
                 knn="exact" if neighbors is not None else knn, duplicates=duplicates)
    if settings is not None:  # with a settings object, only the keywords changed from their defaults override it
        given = {name: v for name, v in given.items() if v is not None and not _is_default(name, v)}
    s = _settings(settings, **given)
    check_k(s.k, len(X), extra=1)
    check_positive_int(block_size, "block_size")
    if neighbors is not None:
        _check_neighbors(neighbors, X, s)
    if executor is not None and not is_inline(executor):
        if neighbors is not None:
            raise InvalidParameterError("precomputed neighbours cannot be combined with executor=...; pass "
                                        "knn='exact' or 'hnsw'")
        with tempfile.TemporaryDirectory(prefix="nnkscope-", dir=work_dir) as tmp:
            parts = build_graph(X, Path(tmp) / "graph", settings=s, block_size=block_size,
                                shard_size=max(block_size, 65536), executor=executor,
                                threads_per_task=1 if n_jobs is None else resolve_n_jobs(n_jobs), progress=progress)
            return parts.to_graph()
    return build_graph(ArraySource(X), None, settings=s, threads_per_task=n_jobs, progress=progress,
                       solve_block=block_size, _neighbors=neighbors).to_graph()


def _is_default(name: str, value) -> bool:
    default = _NNK_GRAPH_DEFAULTS[name]
    return type(value) is type(default) and value == default


def _check_neighbors(nbrs: Neighbors, X: np.ndarray, s: GraphSettings) -> None:
    if nbrs.indices.shape != (len(X), s.k):
        raise InputShapeError(f"precomputed neighbours have shape {nbrs.indices.shape}; expected {(len(X), s.k)}. "
                              "Recompute them with nnkscope.knn(X, k) or pass the matching k")
    if nbrs.metric != s.metric:
        raise InvalidParameterError(f"kernel={s.kernel!r} needs {s.metric} neighbours; got {nbrs.metric}")


def knn_graph(X, k: int = DEFAULT_K, *, kernel: str = "gaussian", sigma: float | None = None, tau: float = 1e-6,
              knn="exact", duplicates: str = "keep", n_jobs: int | None = None,
              progress: bool | None = None):
    """The kNN baseline graph: kernel weights on each node's k candidates, zero below ``tau``, union-symmetrised.

    Examples
    --------
    >>> A = knn_graph(np.array([[0.0], [1.0], [2.0], [10.0]]), k=1, sigma=1.0)
    >>> A.toarray().round(3).tolist()[0]
    [0.0, 0.607, 0.0, 0.0]
    """
    from .neighbors import knn as knn_search

    X = as_points(X)
    s = GraphSettings(k=k, kernel=kernel, sigma=sigma, tau=tau, knn="exact" if isinstance(knn, Neighbors) else knn,
                      duplicates=duplicates)
    check_k(s.k, len(X), extra=1)
    if isinstance(knn, Neighbors):
        _check_neighbors(knn, X, s)
        nbrs = knn
    else:
        nbrs = knn_search(X, s.k, metric=s.metric, method=s.knn, duplicates=duplicates, n_jobs=n_jobs,
                          progress=progress)
    vals = s.kernel_object.resolve(nbrs.distances[:, -1]).values(nbrs.distances)
    vals[vals <= s.tau] = 0.0
    return symmetrize(rows_to_csr(nbrs.indices, vals), "max")
