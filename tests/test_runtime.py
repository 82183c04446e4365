"""Run-time helpers: products split over threads with single-threaded BLAS."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from nnkscope._runtime import matmul_t, split_products


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
    step = -(-rows // threads)  # each block is a plain (single-threaded) BLAS product of its rows
    with split_products():
        for lo in range(0, rows, step) if rows >= 64 and threads > 1 else [0]:
            hi = rows if rows < 64 or threads == 1 else lo + step
            np.testing.assert_array_equal(got[lo:hi], A[lo:hi] @ B.T)


def test_split_products_limits_blas_and_restores_it():
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    before = [i["num_threads"] for i in blas]
    with split_products():
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert inside and all(n == 1 for n in inside)
    assert after == before
