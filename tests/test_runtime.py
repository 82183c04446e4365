"""Run-time helpers: products split over threads with single-threaded BLAS."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from nnkscope._runtime import matmul_t, run_split, split_products


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 63, 64, 129, 1000])
def test_split_product_equals_each_row_blocks_product(threads, rows):
    r = np.random.default_rng(rows)
    A = r.normal(size=(rows, 37)).astype(np.float32)
    B = r.normal(size=(45, 37)).astype(np.float32)
    with split_products():
        got = matmul_t(A, B, threads)
        ref = A.astype(np.float64) @ B.T.astype(np.float64)
    assert got.dtype == np.float32 and got.shape == (rows, 45)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    step = max(-(-rows // threads), 64)  # ranges of at least 64 rows, each one plain single-threaded product
    with split_products():
        for lo in range(0, rows, step):
            np.testing.assert_array_equal(got[lo:lo + step], A[lo:lo + step] @ B.T)


def test_run_split_covers_every_row_once_and_reraises():
    seen = np.zeros(1000, int)

    def mark(lo, hi):
        seen[lo:hi] += 1

    run_split(mark, 1000, 3)
    assert (seen == 1).all()

    def fail(lo, hi):
        raise ValueError(f"rows {lo}:{hi}")

    with pytest.raises(ValueError, match="rows"):
        run_split(fail, 1000, 2)


def test_split_products_limits_blas_and_restores_it():
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    before = [i["num_threads"] for i in blas]
    with split_products():
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert inside and all(n == 1 for n in inside)
    assert after == before


def test_matmul_t_into_a_buffer_is_the_same_product():
    r = np.random.default_rng(3)
    A, B = r.normal(size=(300, 20)).astype(np.float32), r.normal(size=(70, 20)).astype(np.float32)
    buf = np.full(300 * 80, np.nan, np.float32)  # bigger than the product: its start is used
    with split_products():
        got = matmul_t(A, B, 2, buffer=buf)
        ref = matmul_t(A, B, 2)
    assert got.flags.c_contiguous and np.shares_memory(got, buf)
    np.testing.assert_array_equal(got, ref)
    from nnkscope.errors import InvalidParameterError

    for bad in (np.empty(300 * 70), np.empty(300 * 70 - 1, np.float32), np.empty((300, 70), np.float32)):
        with pytest.raises(InvalidParameterError, match="buffer must be a contiguous 1-D float32 array"):
            matmul_t(A, B, 2, buffer=bad)


class _RecordingLibc:
    """Stands in for glibc: records the allocator calls keep_freed_memory makes (``accept``: what mallopt returns)."""

    def __init__(self, accept: int = 1):
        self.calls, self.accept = [], accept

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return self.accept

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


KEEP = [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1)]  # M_MMAP_MAX 0, M_TRIM_THRESHOLD "never"
AFTER = [("mallopt", -4, 65536), ("mallopt", -1, 64 << 20), ("malloc_trim", 0)]  # glibc's count, 64 MB, trimmed


def test_keep_freed_memory_sets_the_allocator_once_and_gives_it_back_when_the_last_body_ends(monkeypatch):
    from nnkscope import _runtime as rt

    libc = _RecordingLibc()
    monkeypatch.setattr(rt, "_glibc", lambda: libc)
    with rt.keep_freed_memory():
        assert libc.calls == KEEP and rt._heap_kept
        with rt.keep_freed_memory():  # nested (or another thread's body): the setting is already there
            pass
        assert libc.calls == KEEP
    assert libc.calls == KEEP + AFTER
    libc.calls.clear()
    with pytest.raises(ZeroDivisionError), rt.keep_freed_memory():
        raise ZeroDivisionError
    assert libc.calls == KEEP + AFTER  # given back when the body raises too
    assert rt._heap_users == 0 and not rt._heap_kept


def test_keep_freed_memory_refused_by_glibc_is_undone_at_once_as_at_a_body_s_end(monkeypatch):
    from nnkscope import _runtime as rt

    libc = _RecordingLibc(accept=0)
    monkeypatch.setattr(rt, "_glibc", lambda: libc)
    with rt.keep_freed_memory():
        assert not rt._heap_kept
    assert libc.calls == KEEP[:1] + AFTER  # undone at once, nothing more at the end
    assert rt._heap_users == 0


def test_keep_freed_memory_is_a_no_op_without_glibc_or_with_the_user_s_own_tuning(monkeypatch):
    from nnkscope import _runtime as rt

    uncached = rt._glibc.__wrapped__
    for name, value in (("MALLOC_TRIM_THRESHOLD_", "1000000"), ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert uncached() is None  # the user's setting stands
    monkeypatch.setattr(rt, "_glibc", lambda: None)
    with rt.keep_freed_memory():
        assert rt._heap_users == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_child_forked_inside_a_body_starts_without_it_and_the_parent_keeps_it(monkeypatch):
    import os

    from nnkscope import _runtime as rt

    libc = _RecordingLibc()
    monkeypatch.setattr(rt, "_glibc", lambda: libc)
    with rt.keep_freed_memory():
        libc.calls.clear()
        pid = os.fork()
        if pid == 0:  # the child: given back at the fork, and the body's end (here too) changes nothing more
            ok = libc.calls == AFTER and rt._heap_users == 0 and not rt._heap_kept
            with rt.keep_freed_memory():  # a body of its own works as anywhere
                ok = ok and rt._heap_users == 1 and rt._heap_kept
            os._exit(0 if ok and rt._heap_users == 0 and libc.calls == AFTER + KEEP + AFTER else 1)
        _, status = os.waitpid(pid, 0)
        assert libc.calls == [] and rt._heap_users == 1 and rt._heap_kept  # the parent's body is untouched
    assert os.waitstatus_to_exitcode(status) == 0
    assert libc.calls == AFTER and rt._heap_users == 0


def _faults_of_a_fresh_array() -> int:
    """Page faults of this thread while it allocates and writes a 40 MB array (then freed)."""
    import resource

    who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
    before = resource.getrusage(who).ru_minflt
    a = np.ones(40 << 17)
    n = resource.getrusage(who).ru_minflt - before
    del a
    return n


@pytest.mark.skipif(__import__("nnkscope._runtime", fromlist=["_glibc"])._glibc() is None,
                    reason="needs glibc, untuned by MALLOC_* variables")
def test_inside_keep_freed_memory_a_freed_array_s_pages_serve_the_next_one():
    from nnkscope import _runtime as rt

    outside = min(_faults_of_a_fresh_array() for _ in range(3))  # mapped apart (over 32 MB), unmapped when freed
    with rt.keep_freed_memory():
        if not rt._heap_kept:
            pytest.skip("this glibc refused the setting")
        _faults_of_a_fresh_array()  # may need fresh heap
        inside = [_faults_of_a_fresh_array() for _ in range(3)]
    # 40 MB is 20 huge pages or 10,240 small ones: fresh memory faults at least 20 times, kept memory not at all
    assert outside >= 20
    assert min(inside) < 5
