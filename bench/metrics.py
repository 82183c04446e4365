"""Cost of the full per-point metric table relative to the NNK graph it starts from (target: < 2x).

Side by side in one process, alternating ``--repeats`` times: ``nnk_graph(X, k)`` alone, then
``point_metrics(X, y, k)`` (which builds the same graph and adds diameters, local ID, tangents + curvature,
homogeneity, LOO errors for four weightings and label smoothness).

    python bench/metrics.py                 # N = 100,000, d = 128, k = 30
    python bench/metrics.py --n 20000
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("-k", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    from _data import embedding_like

    import nnkscope as nk
    from nnkscope.measures.metrics import point_metrics

    X = embedding_like(args.n, args.d, seed=0)
    y = np.random.default_rng(0).integers(0, 10, args.n)
    point_metrics(X[:3000], y[:3000], args.k, progress=False)  # JIT load
    t_graph, t_metrics = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        nk.nnk_graph(X, args.k, kernel="cosine", duplicates="keep", progress=False)
        t_graph.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        df, summary = point_metrics(X, y, args.k, progress=False)
        t_metrics.append(time.perf_counter() - t0)
    g, m = statistics.median(t_graph), statistics.median(t_metrics)
    print(f"N={args.n} d={args.d} k={args.k} cosine, repeats={args.repeats} (medians)")
    print(f"nnk_graph alone      {g:8.2f} s   {t_graph}")
    print(f"point_metrics        {m:8.2f} s   {t_metrics}")
    print(f"ratio                {m / g:8.3f}   (target < 2)  -> {'met' if m / g < 2 else 'NOT met'}")
    print(f"metric columns       {len(df.columns)}; mean NNK degree {summary['mean_nnk_degree']:.2f}; "
          f"curvature dim {summary['curvature_dim']}")
    print(f"peak RSS             {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
