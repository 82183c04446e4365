"""Where blocked work runs: one small interface, three back ends.

The blocked pipeline (:mod:`nnkscope.engine.blocked`) only ever calls ``executor.submit(fn, *args)`` and waits on the
returned futures, i.e. the :class:`concurrent.futures.Executor` protocol.  So the same code runs

* in this process (:class:`InlineExecutor`, the default: tasks run at ``submit``),
* on a :class:`~concurrent.futures.ProcessPoolExecutor` or any other ``Executor`` (Ray users can pass theirs),
* on a Dask cluster: pass a ``distributed.Client`` (or use :func:`local_cluster` / :func:`connect`), whose
  ``get_executor()`` gives the Executor; Dask reschedules the tasks of a worker that dies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor, Future

from ._runtime import require
from .errors import InvalidParameterError, SchedulerConnectionError

__all__ = ["InlineExecutor", "as_executor", "is_inline", "local_cluster", "connect"]


class InlineExecutor(Executor):
    """Runs each task at ``submit`` in the calling process; the future holds its result or its exception.

    Examples
    --------
    >>> InlineExecutor().submit(pow, 2, 10).result()
    1024
    """

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered at .result(), as a pool would
            fut.set_exception(exc)
        return fut


def is_inline(executor) -> bool:
    """Whether ``executor`` runs tasks in this process (None, "inline" or an :class:`InlineExecutor`).

    Examples
    --------
    >>> is_inline(None), is_inline("inline")
    (True, True)
    """
    return executor is None or isinstance(executor, InlineExecutor) or (isinstance(executor, str)
                                                                         and executor == "inline")


def as_executor(executor) -> Executor:
    """``None`` or ``"inline"`` -> :class:`InlineExecutor`; a Dask ``Client`` -> its Executor; an Executor as is.

    Examples
    --------
    >>> type(as_executor(None)).__name__
    'InlineExecutor'
    """
    if is_inline(executor):
        return executor if isinstance(executor, InlineExecutor) else InlineExecutor()
    if isinstance(executor, Executor):
        return executor
    get = getattr(executor, "get_executor", None)  # distributed.Client, without importing dask here
    if callable(get):
        return get(pure=False)
    raise InvalidParameterError(
        f"executor must be None, 'inline', a concurrent.futures.Executor or a dask distributed.Client; "
        f"got {type(executor).__name__}"
    )


def _require_dask():
    return require("distributed", "the Dask back end")


@contextlib.contextmanager
def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, memory_limit: str | int = "auto",
                  **kwargs) -> Iterator:
    """A Dask ``LocalCluster`` of worker *processes* and its ``Client``, closed on exit.

    Scripts that use it need the ``if __name__ == "__main__":`` guard (workers are spawned).
    """
    distributed = _require_dask()
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                                  memory_limit=memory_limit, dashboard_address=":0", **kwargs) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def connect(address: str) -> Iterator:
    """A ``Client`` of the running Dask scheduler at ``address`` (e.g. ``"tcp://10.0.0.5:8786"``)."""
    distributed = _require_dask()
    try:
        client = distributed.Client(address)
    except (OSError, TimeoutError) as exc:  # refused, timed out, unknown host: the address or the cluster is wrong
        raise SchedulerConnectionError(
            f"cannot reach a Dask scheduler at {address!r} ({exc}); start one there (`dask scheduler`, then "
            f"`dask worker {address}` on each machine), check the address and that this machine can reach it, or "
            "run on this machine with --local-cluster N (Python: local_cluster(n))") from None
    with client:
        yield client
