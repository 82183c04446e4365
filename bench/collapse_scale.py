"""Neural collapse at scale: NC1-NC4 for K = 1,000 classes, d = 4,096, N = 10^5 in bounded memory.

Features are generated in row blocks (float32, seeded per block so the second pass sees the same rows) and never
held whole.  Pass 1 streams them into :class:`ClassScatter` (counts, means, one pooled d x d scatter); pass 2 is the
NC4 decision pass.  In the same run, at a size where everything fits, the streamed path is timed against the
simplest dense implementation (the whole float64 array, class loops, a d x d eigendecomposition for Sigma_B^+) and
their metrics are compared.  Each phase runs in a fresh process so that its peak RSS is its own.

    python bench/collapse_scale.py                      # K=1000, d=4096, N=100000; dense K=1000, d=1024, N=20000
    python bench/collapse_scale.py --n 20000 --d 1024   # quick
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
from _data import peak_rss_gib as _peak_gib


def make_problem(K: int, d: int, seed: int):
    r = np.random.default_rng(seed)
    means = (r.normal(size=(K, d)) * (2.0 / np.sqrt(d))).astype(np.float32)
    W = means + (r.normal(size=(K, d)) * (1.0 / np.sqrt(d))).astype(np.float32)  # a classifier near the means
    return means, W


def blocks(n: int, d: int, K: int, block: int, seed: int):
    """Row blocks ``(H, y)``: class means plus isotropic noise, float32; block b is seeded by (seed, b)."""
    means, _ = make_problem(K, d, seed)
    for b, lo in enumerate(range(0, n, block)):
        r = np.random.default_rng([seed, b])
        rows = min(block, n - lo)
        y = r.integers(K, size=rows)
        H = means[y] + r.standard_normal((rows, d), dtype=np.float32) * np.float32(0.4)  # classes overlap: NC4 > 0
        yield H, y


def streamed(n, d, K, block, seed, balanced=False) -> dict:
    from nnkscope.measures.collapse import ClassScatter, neural_collapse, separation_fuzziness

    _, W = make_problem(K, d, seed)
    rss0 = _peak_gib()
    t0 = time.perf_counter()
    for _ in blocks(n, d, K, block, seed):
        pass
    gen = time.perf_counter() - t0  # generating the blocks, paid once per pass below
    t0 = time.perf_counter()
    stats = ClassScatter(K, per_class=False)
    for H, y in blocks(n, d, K, block, seed):
        stats.update(H, y)
    t1 = time.perf_counter()
    m = neural_collapse(stats, W=W, batches=blocks(n, d, K, block, seed))
    t2 = time.perf_counter()
    out = {"pass1_s": t1 - t0, "nc_pass2_s": t2 - t1, "total_s": t2 - t0, "generation_s": gen, "rss_start_gib": rss0,
           "peak_rss_gib": _peak_gib(), **{k: m[k] for k in ("nc1", "nc2_means_etf_distance", "nc3", "nc4", "cdnv")}}
    if balanced:
        for H, y in blocks(n, d, K, block, seed):
            stats.update_balanced(H, y)
        out["fuzziness"] = separation_fuzziness(stats)
        out["with_balanced_pass_s"] = time.perf_counter() - t0
        out["peak_rss_gib"] = _peak_gib()
    return out


def dense(n, d, K, block, seed) -> dict:
    """The simplest implementation: every row in memory (float64), loops over classes, full d x d eigh."""
    _, W = make_problem(K, d, seed)
    parts = list(blocks(n, d, K, block, seed))
    H = np.concatenate([p[0] for p in parts]).astype(np.float64)
    y = np.concatenate([p[1] for p in parts])
    W = W.astype(np.float64)
    t0 = time.perf_counter()
    mu = np.stack([H[y == k].mean(0) for k in range(K)])
    Sw = np.zeros((d, d))
    for k in range(K):
        C = H[y == k] - mu[k]
        Sw += C.T @ C
    Sw /= n
    M = mu - mu.mean(0)
    Sb = M.T @ M / K
    lam, V = np.linalg.eigh(Sb)
    idx = np.argsort(lam)[::-1][: K - 1]
    idx = idx[lam[idx] > 1e-8 * lam[idx[0]]]
    nc1 = np.trace(Sw @ ((V[:, idx] / lam[idx]) @ V[:, idx].T)) / K
    G = M @ M.T
    etf = np.eye(K) - 1.0 / K
    nc2 = np.linalg.norm(G / np.linalg.norm(G) - etf / np.linalg.norm(etf))
    nc3 = np.linalg.norm(W / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2
    dist = (H**2).sum(1)[:, None] - 2 * H @ mu.T + (mu**2).sum(1)[None]
    nc4 = float(np.mean((H @ W.T).argmax(1) != dist.argmin(1)))
    var = np.array([np.mean(((H[y == k] - mu[k]) ** 2).sum(1)) for k in range(K)])
    D2 = ((mu[:, None] - mu[None]) ** 2).sum(-1) if K * K * d <= 2**27 else (
        (mu**2).sum(1)[:, None] + (mu**2).sum(1)[None] - 2 * mu @ mu.T)
    iu = np.triu_indices(K, 1)
    cdnv = float(np.mean((var[iu[0]] + var[iu[1]]) / (2 * D2[iu])))
    t1 = time.perf_counter()
    return {"total_s": t1 - t0, "peak_rss_gib": _peak_gib(), "nc1": nc1, "nc2_means_etf_distance": nc2, "nc3": nc3,
            "nc4": nc4, "cdnv": cdnv}


def _run(fn, *args, **kw):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args, kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--block", type=int, default=8192)
    ap.add_argument("--dense-k", type=int, default=1000)
    ap.add_argument("--dense-d", type=int, default=1024)
    ap.add_argument("--dense-n", type=int, default=20_000)
    ap.add_argument("--balanced", action="store_true", help="also the second pass for the balanced fuzziness")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads per process (default 1: on an oversubscribed shared machine OpenBLAS threads "
                         "spin-wait and run many times slower than one thread)")
    args = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # read by the spawned measuring processes at start
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # this process (data generation)

    small = (args.dense_n, args.dense_d, args.dense_k, args.block, args.seed)
    s_small = _run(streamed, *small)
    d_small = _run(dense, *small)
    print(f"same data, N={args.dense_n} d={args.dense_d} K={args.dense_k}:")
    net = s_small["total_s"] - 2 * s_small["generation_s"]
    print(f"  streamed {s_small['total_s']:8.2f} s  ({net:.2f} s without generating the blocks of both passes)  "
          f"peak {s_small['peak_rss_gib']:.2f} GiB")
    print(f"  dense    {d_small['total_s']:8.2f} s  peak {d_small['peak_rss_gib']:.2f} GiB  (generation excluded)")
    print(f"  ratio streamed / dense = {net / d_small['total_s']:.2f} (generation excluded; "
          f"{s_small['total_s'] / d_small['total_s']:.2f} with it)")
    for key in ("nc1", "nc2_means_etf_distance", "nc3", "nc4", "cdnv"):
        a, b = s_small[key], d_small[key]
        print(f"  {key:24s} streamed {a:.12g}  dense {b:.12g}  rel diff {abs(a - b) / max(abs(b), 1e-300):.1e}")
    big = _run(streamed, args.n, args.d, args.k, args.block, args.seed, balanced=args.balanced)
    print(f"scale, N={args.n} d={args.d} K={args.k} (blocks of {args.block} rows, generated on the fly):")
    print(f"  generating the blocks once               {big['generation_s']:8.2f} s (included in each pass below)")
    print(f"  pass 1 (counts, means, pooled scatter)  {big['pass1_s']:8.2f} s")
    print(f"  NC1-NC3 + NC4 pass                       {big['nc_pass2_s']:8.2f} s")
    if args.balanced:
        print(f"  + balanced pass, fuzziness {big['fuzziness']:.4g}: total {big['with_balanced_pass_s']:.2f} s")
    print(f"  peak RSS {big['peak_rss_gib']:.2f} GiB (process start {big['rss_start_gib']:.2f} GiB; target < 4)")
    print("  " + "  ".join(f"{k}={big[k]:.4g}" for k in ("nc1", "nc2_means_etf_distance", "nc3", "nc4", "cdnv")))


if __name__ == "__main__":
    main()
