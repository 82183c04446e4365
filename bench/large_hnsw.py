"""NNK graph of 10^6 points with the approximate (HNSW) candidate search: wall time and peak memory.

    python bench/large_hnsw.py                     # N = 1,000,000, d = 128, k = 30 (target: < 20 min, < 6 GB)
    python bench/large_hnsw.py --n 200000          # a quicker calibration run

Prints the phases (data, HNSW build + search + exact re-ranking, NNK solve), the sampled recall@k against exact
search, the NNK degree and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("-k", type=int, default=30)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", type=int, default=64)
    ap.add_argument("--recall-sample", type=int, default=2000)
    ap.add_argument("--save", help="optional output graph path (.npz or .parquet)")
    args = ap.parse_args()

    from _data import embedding_like

    import nnkscope as nk

    t0 = time.perf_counter()
    X = embedding_like(args.n, args.d, seed=0)
    t_data = time.perf_counter() - t0
    nk.nnk_graph(X[:3000], args.k, progress=False)  # JIT load
    spec = nk.HNSWSearch(M=args.M, ef_construction=args.ef_construction, ef_search=args.ef_search,
                         recall_sample=args.recall_sample)
    t0 = time.perf_counter()
    G = nk.nnk_graph(X, args.k, knn=spec, duplicates="keep")
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    s = G.summary()
    print(f"N={args.n} d={args.d} k={args.k} HNSW(M={args.M}, efC={args.ef_construction}, efS={args.ef_search}) "
          f"threads={len(os.sched_getaffinity(0))}")
    print(f"data generation        {t_data:8.1f} s  ({X.nbytes / 2**30:.2f} GiB float32)")
    print(f"kNN (build+search+rerank) {G.params['timings']['knn_s']:8.1f} s")
    print(f"NNK solve              {G.params['timings']['solve_s']:8.1f} s  "
          f"({args.n / G.params['timings']['solve_s']:.0f} nodes/s incl. kernel build)")
    print(f"total nnk_graph        {total:8.1f} s  ({total / 60:.2f} min; target < 20 min)")
    print(f"sampled recall@{args.k}      {G.params['knn']['recall']:.4f}  ({args.recall_sample} queries vs exact)")
    print(f"mean NNK degree        {s['mean_nnk_degree']:.2f}; isolated (max rule) {s['isolated_nodes']}")
    print(f"peak RSS               {peak:8.2f} GiB (target < 6 GB)")
    if args.save:
        G.save(args.save)


if __name__ == "__main__":
    main()
