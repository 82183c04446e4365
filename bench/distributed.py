"""Blocked / Dask NNK graph: throughput of 1 vs 2 local workers, per-block overhead, peak memory per worker.

All in one run, side by side (ratios are what to read; this machine is shared):

1. **Throughput.** The same graph (N points, d dims, k) built by ``nnk_graph`` in this process (1 thread), by the
   blocked pipeline inline (1 thread), and on a Dask ``LocalCluster`` of 1 and of 2 single-threaded workers.
   Every configuration runs ``--repeats`` times, interleaved, after a warm-up (numba compilation in the workers);
   medians are compared. The results are checked equal to the in-process graph.
2. **Per-block overhead.** The 2-worker cluster at several block sizes: time = fixed + blocks x overhead + work;
   a least-squares fit over the block counts gives the per-block overhead (scheduling, Parquet part, re-reading
   the shards). Plus the round trip of 200 no-op tasks.
3. **Memory per worker.** For each block size, on N/2 and on N points, a fresh 1-worker cluster is warmed up,
   then a thread inside the worker samples its RSS every 5 ms during the build: the increase over the RSS before
   the run grows with the block (and shard) size, and not with N.

    python bench/distributed.py                  # N=100k, d=64, k=30
    python bench/distributed.py --n 20000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
# this file is named like the Dask package: keep its folder off the import path so `import distributed` finds Dask
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]


def _start_sampler(dask_worker) -> float:
    """In a worker: sample its RSS every 5 ms from now on; returns the RSS now (MiB)."""
    import threading

    import psutil

    proc = psutil.Process()
    state = dask_worker._nnkscope_rss = {"peak": proc.memory_info().rss, "stop": False}  # lives on the worker

    def loop():
        while not state["stop"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            time.sleep(0.005)

    threading.Thread(target=loop, daemon=True).start()
    return state["peak"] / 2**20


def _sampled_peak(dask_worker) -> float:
    state = dask_worker._nnkscope_rss
    state["stop"] = True
    return state["peak"] / 2**20


def _noop(i: int) -> int:
    return i


def main() -> None:
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("_bench_data", os.path.join(HERE, "_data.py"))
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    embedding_like = data.embedding_like

    from nnkscope import build_graph, nnk_graph
    from nnkscope.executor import local_cluster

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--block-size", type=int, default=10_000)
    ap.add_argument("--shard-size", type=int, default=50_000)
    ap.add_argument("--overhead-blocks", default="2500,5000,10000,25000")
    ap.add_argument("--memory-blocks", default="2000,8000,32000")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    X = embedding_like(args.n, args.d, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="nnkscope-bench-"))
    np.save(tmp / "x.npy", X)
    src = tmp / "x.npy"
    print(f"N={args.n} d={args.d} k={args.k} block={args.block_size} shard={args.shard_size}; "
          f"{os.cpu_count()} CPUs\n")

    run_id = iter(range(10**6))

    def blocked(executor, block=args.block_size, shard=args.shard_size):
        t = time.perf_counter()
        parts = build_graph(src, tmp / f"run{next(run_id)}", args.k, block_size=block, shard_size=shard,
                            executor=executor, progress=False)
        return time.perf_counter() - t, parts

    # 1. throughput ------------------------------------------------------------------------------------------
    ref = nnk_graph(X, args.k, n_jobs=1, progress=False)
    times: dict[str, list[float]] = {"in-process nnk_graph": [], "blocked, inline": [], "Dask 1 worker": [],
                                     "Dask 2 workers": []}
    with local_cluster(1) as c1, local_cluster(2) as c2:
        for c in (c1, c2):  # warm-up: numba compilation / cache load in every worker
            blocked(c, block=args.n // 4)
        for _ in range(args.repeats):
            t = time.perf_counter()
            nnk_graph(X, args.k, n_jobs=1, progress=False)
            times["in-process nnk_graph"].append(time.perf_counter() - t)
            for name, ex in (("blocked, inline", None), ("Dask 1 worker", c1), ("Dask 2 workers", c2)):
                dt, parts = blocked(ex)
                times[name].append(dt)
                G = parts.to_graph()
                assert (G.candidates == ref.candidates).all() and (G.theta == ref.theta).all(), name
        base = statistics.median(times["Dask 1 worker"])
        print("| configuration | median s | nodes/s | speed-up vs Dask 1 worker |")
        print("|---|---|---|---|")
        for name, ts in times.items():
            m = statistics.median(ts)
            print(f"| {name} | {m:.1f} | {args.n / m:,.0f} | {base / m:.2f} |")
        print("(every blocked result equals the in-process graph: same candidates, identical weights)\n")

        # 2. per-block overhead -------------------------------------------------------------------------------
        t = time.perf_counter()
        futures = [c2.submit(_noop, i, pure=False) for i in range(200)]
        c2.gather(futures)
        noop_ms = (time.perf_counter() - t) / 200 * 1e3
        rows = []
        for bs in map(int, args.overhead_blocks.split(",")):
            dt, parts = blocked(c2, block=bs)
            rows.append((len(parts.plan.blocks), dt))
            print(f"  block {bs:>6}: {len(parts.plan.blocks):>3} blocks x 2 stages, {dt:.1f} s")
        nblk = np.array([r[0] for r in rows], float)
        secs = np.array([r[1] for r in rows])
        slope, icpt = np.polyfit(nblk, secs, 1)
        print(f"fit: time = {icpt:.1f} s + {slope * 1e3:.0f} ms per block (2 workers; a block = one kNN task over "
              f"{-(-args.n // args.shard_size)} shards + one solve task + 2 Parquet parts); "
              f"no-op task round trip {noop_ms:.1f} ms\n")

    # 3. memory per worker ---------------------------------------------------------------------------------------
    print("| N | block size | shard size | worker RSS before MiB | peak during the run MiB | increase MiB |")
    print("|---|---|---|---|---|---|")
    half = tmp / "half.npy"
    np.save(half, X[: args.n // 2])
    for bs in map(int, args.memory_blocks.split(",")):
        for path, n in ((half, args.n // 2), (src, args.n)):
            with local_cluster(1) as c:
                build_graph(path, tmp / f"run{next(run_id)}", args.k, block_size=1000, shard_size=args.shard_size,
                            executor=c, progress=False)  # warm-up: imports, numba cache, allocator pools
                before = next(iter(c.run(_start_sampler).values()))
                build_graph(path, tmp / f"run{next(run_id)}", args.k, block_size=bs, shard_size=args.shard_size,
                            executor=c, progress=False)
                peak = next(iter(c.run(_sampled_peak).values()))
            print(f"| {n} | {bs} | {args.shard_size} | {before:.0f} | {peak:.0f} | {peak - before:.0f} |")
    print(f"\n(the whole dataset is {X.nbytes / 2**20:.0f} MiB as float32; a worker's increase follows the block "
          "and shard sizes; the solve task's gathered candidate rows, at most min(N, block x k), add the rest)")


if __name__ == "__main__":
    main()
