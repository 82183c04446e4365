"""Streamed debiased CKA on 10^6 x 512 vs 10^6 x 512 float32 features on disk: time and peak RSS.

Writes two ``.npy`` files to a temporary folder in row blocks (``Y = X R + noise``, so CKA is far from 0 and 1),
then runs :func:`nnkscope.similarity.streaming_cka` over them in a fresh process (its peak RSS is its own).  In the
same run, at a size where the N x N Gram matrices fit (default N = 20,000: two 3.2 GB matrices), the simplest dense
implementation -- Song et al.'s unbiased HSIC formula on ``K = XX'``, ``L = YY'`` -- is timed against the streamed
path on the same rows, and the two values are compared.

    python bench/similarity.py                          # N = 10^6, d = 512; dense at N = 20,000
    python bench/similarity.py --n 200000 --dense-n 10000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np
from _data import peak_rss_gib as _peak_gib


def write_pair(folder: str, n: int, d: int, seed: int = 0, block: int = 65536) -> tuple[str, str]:
    """Two float32 .npy files written block by block (never whole in memory)."""
    r = np.random.default_rng(seed)
    latent = 64
    P = (r.normal(size=(latent, d)) / np.sqrt(latent)).astype(np.float32)
    R = (r.normal(size=(d, d)) / np.sqrt(d)).astype(np.float32)
    paths = os.path.join(folder, "x.npy"), os.path.join(folder, "y.npy")
    files = [open(p, "wb") for p in paths]
    try:
        for f in files:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        for lo in range(0, n, block):
            rows = min(block, n - lo)
            X = r.standard_normal((rows, latent), dtype=np.float32) @ P
            X += 0.5 * r.standard_normal((rows, d), dtype=np.float32) + 3.0
            Y = np.tanh(X @ R) + 0.3 * r.standard_normal((rows, d), dtype=np.float32)
            files[0].write(np.ascontiguousarray(X).tobytes())
            files[1].write(np.ascontiguousarray(Y, dtype=np.float32).tobytes())
    finally:
        for f in files:
            f.close()
    return paths


def streamed(a, b, block_rows: int) -> dict:
    from nnkscope.similarity import streaming_cka

    start = _peak_gib()
    t0 = time.perf_counter()
    value = streaming_cka(a, b, debiased=True, block_rows=block_rows)
    return {"s": time.perf_counter() - t0, "value": value, "peak_rss_gib": _peak_gib(), "start_rss_gib": start}


def _rows(path: str, n: int) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r")[:n], dtype=np.float64)


def dense(a: str, b: str, n: int) -> dict:
    """The simplest implementation: N x N Gram matrices and the unbiased HSIC formula (Song et al. 2012, eq. 5)."""
    X, Y = _rows(a, n), _rows(b, n)
    t0 = time.perf_counter()

    def hsic1(K, L):
        one = np.ones(len(K))
        return (np.einsum("ij,ij->", K, L) + K.sum() * L.sum() / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (K @ one) @ (L @ one)) / (n * (n - 3))

    K = X @ X.T
    np.fill_diagonal(K, 0.0)
    L = Y @ Y.T
    np.fill_diagonal(L, 0.0)
    value = hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L))
    return {"s": time.perf_counter() - t0, "value": float(value), "peak_rss_gib": _peak_gib()}


def streamed_in_memory(a: str, b: str, n: int, block_rows: int) -> dict:
    from nnkscope.similarity import streaming_cka

    X, Y = _rows(a, n), _rows(b, n)
    t0 = time.perf_counter()
    value = streaming_cka(X, Y, debiased=True, block_rows=block_rows)
    return {"s": time.perf_counter() - t0, "value": value, "peak_rss_gib": _peak_gib()}


def _run(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--dense-n", type=int, default=20_000)
    ap.add_argument("--block-rows", type=int, default=16384)
    ap.add_argument("--dir", default=None, help="folder for the temporary files (default: the system's)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads per process (default 1: on an oversubscribed shared machine OpenBLAS threads "
                         "spin-wait and run many times slower than one thread)")
    args = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # read by the spawned measuring processes at start
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # this process (data generation)

    with tempfile.TemporaryDirectory(prefix="nnkscope-bench-", dir=args.dir) as tmp:
        t0 = time.perf_counter()
        a, b = write_pair(tmp, args.n, args.d)
        gib = 2 * args.n * args.d * 4 / 2**30
        print(f"wrote 2 x ({args.n} x {args.d}) float32 .npy ({gib:.2f} GiB) in {time.perf_counter() - t0:.1f} s")
        s_dense = _run(streamed_in_memory, a, b, args.dense_n, args.block_rows)
        d_dense = _run(dense, a, b, args.dense_n)
        print(f"N = {args.dense_n} (same rows, in memory, float64; loading excluded):")
        print(f"  dense Gram formula   {d_dense['s']:8.2f} s  peak RSS {d_dense['peak_rss_gib']:.2f} GiB  "
              f"CKA {d_dense['value']:.15f}")
        print(f"  streamed             {s_dense['s']:8.2f} s  peak RSS {s_dense['peak_rss_gib']:.2f} GiB  "
              f"CKA {s_dense['value']:.15f}")
        print(f"  ratio streamed / dense = {s_dense['s'] / d_dense['s']:.3f};  "
              f"|difference| = {abs(s_dense['value'] - d_dense['value']):.1e}")
        big = _run(streamed, a, b, args.block_rows)
        print(f"N = {args.n}, d = {args.d}, streamed from disk in blocks of {args.block_rows} rows:")
        print(f"  {big['s']:.1f} s  ({args.n / big['s']:,.0f} rows/s)  debiased CKA {big['value']:.6f}")
        print(f"  peak RSS {big['peak_rss_gib']:.2f} GiB (process with nnkscope imported: "
              f"{big['start_rss_gib']:.2f} GiB); the files hold {gib:.2f} GiB")


if __name__ == "__main__":
    main()
