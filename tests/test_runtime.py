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
    """Stands in for glibc: records the allocator calls keep_freed_memory makes."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_keep_freed_memory_sets_the_allocator_once_and_restores_it_when_the_last_body_ends(monkeypatch):
    from nnkscope import _runtime as rt

    libc = _RecordingLibc()
    monkeypatch.setattr(rt, "_glibc", lambda: libc)
    keep = [("mallopt", rt._M_MMAP_THRESHOLD, rt._KEEP_ALL), ("mallopt", rt._M_TRIM_THRESHOLD, rt._KEEP_ALL)]
    after = [("mallopt", rt._M_MMAP_THRESHOLD, 32 << 20), ("mallopt", rt._M_TRIM_THRESHOLD, 64 << 20),
             ("malloc_trim", 0)]
    with rt.keep_freed_memory():
        assert libc.calls == keep
        with rt.keep_freed_memory():  # nested (or another thread's body): the setting is already there
            pass
        assert libc.calls == keep
    assert libc.calls == keep + after
    libc.calls.clear()
    with pytest.raises(ZeroDivisionError), rt.keep_freed_memory():
        raise ZeroDivisionError
    assert libc.calls == keep + after  # restored when the body raises too
    assert rt._heap_users == 0


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    from nnkscope import _runtime as rt

    monkeypatch.setattr(rt, "_glibc", lambda: None)
    with rt.keep_freed_memory():
        assert rt._heap_users == 0


@pytest.mark.skipif(__import__("nnkscope._runtime", fromlist=["_glibc"])._glibc() is None, reason="needs glibc")
def test_inside_keep_freed_memory_a_freed_array_s_pages_serve_the_next_one():
    import resource

    from nnkscope._runtime import keep_freed_memory

    def faults_of_a_fresh_array() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.ones(64 << 17)  # 64 MB, written: every page touched
        n = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del a
        return n

    with keep_freed_memory():
        first = faults_of_a_fresh_array()
        again = [faults_of_a_fresh_array() for _ in range(3)]
    # 64 MB is 32 huge pages or 16,384 small ones: fresh memory faults at least 32 times, kept memory not at all
    assert first >= 32
    assert min(again) < 8
