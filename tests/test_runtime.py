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
