"""NNK graph speed, side by side in one run: exact kNN alone vs the full NNK graph, solver throughput vs scipy.

Each configuration runs in a fresh subprocess (clean peak-memory reading). Within it, the raw faiss exact search
(``faiss.knn(X, X, k + 1)``, what the graph starts from) and the full ``nnk_graph`` alternate ``--repeats`` times,
and the medians are compared, so background load affects both alike. The solver comparison builds the local
problems of ``--solver-nodes`` nodes once, then times the exact numba solver and the scipy loop (Cholesky +
``scipy.optimize.nnls``, on a subset) on the same matrices. Ratios are what to read: absolute times move with
the machine's load.

    python bench/nnk_graph.py                 # full grid: N = 20k, 100k; d = 128, 768; k = 10, 30, 50
    python bench/nnk_graph.py --quick         # N = 20k, d = 128 only
    python bench/nnk_graph.py --configs 100000x128x50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_one(n: int, d: int, k: int, repeats: int, solver_nodes: int, scipy_nodes: int, threads: int) -> dict:
    import faiss
    import numpy as np

    sys.path.insert(0, HERE)
    from _data import embedding_like

    import nnkscope as nk
    from nnkscope._runtime import thread_limit
    from nnkscope.engine.solvers import solve_nnk

    X = embedding_like(n, d, seed=0)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    nk.nnk_graph(X[:3000], k, progress=False, n_jobs=threads)  # JIT load / compile, reported separately
    warmup = time.perf_counter() - t0
    t_faiss, t_graph, t_knn, t_solve = [], [], [], []
    for _ in range(repeats):
        with thread_limit(threads):
            t0 = time.perf_counter()
            faiss.knn(X, X, k + 1)
            t_faiss.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        G = nk.nnk_graph(X, k, progress=False, n_jobs=threads)
        t_graph.append(time.perf_counter() - t0)
        t_knn.append(G.params["timings"]["knn_s"])
        t_solve.append(G.params["timings"]["solve_s"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # solver alone on identical local problems
    m = min(n, solver_nodes)
    K, g = nk.local_problems(X, G.candidates[:m], "gaussian", G.params["sigma"])
    with thread_limit(threads):
        solve_nnk(K[:50], g[:50])
        t0 = time.perf_counter()
        theta, _, _ = solve_nnk(K, g)
        t_exact = time.perf_counter() - t0
    ms = min(m, scipy_nodes)
    t0 = time.perf_counter()
    theta_sp, _, _ = solve_nnk(K[:ms], g[:ms], solver="scipy")
    t_scipy = time.perf_counter() - t0
    med = statistics.median
    return {
        "N": n, "d": d, "k": k, "threads": threads, "repeats": repeats,
        "faiss_knn_s": med(t_faiss), "nnk_graph_s": med(t_graph), "ratio": med(t_graph) / med(t_faiss),
        "knn_phase_s": med(t_knn), "solve_phase_s": med(t_solve), "fused_nodes_per_s": n / med(t_solve),
        "solver_nodes_per_s": m / t_exact, "scipy_nodes_per_s": ms / t_scipy,
        "solver_vs_scipy": (m / t_exact) / (ms / t_scipy),
        "max_abs_diff_vs_scipy": float(np.abs(theta[:ms] - theta_sp).max()),
        "mean_nnk_degree": float(G.n_neighbors.mean()), "peak_rss_mb": peak, "data_mb": X.nbytes / 2**20,
        "rss_after_data_mb": rss_data, "warmup_s": warmup,
    }


COLUMNS = [("N", "{:>7d}"), ("d", "{:>4d}"), ("k", "{:>3d}"), ("faiss_knn_s", "{:>8.2f}"),
           ("nnk_graph_s", "{:>8.2f}"), ("ratio", "{:>6.3f}"), ("solve_phase_s", "{:>7.2f}"),
           ("fused_nodes_per_s", "{:>9.0f}"), ("solver_nodes_per_s", "{:>9.0f}"), ("scipy_nodes_per_s", "{:>8.0f}"),
           ("solver_vs_scipy", "{:>6.1f}"), ("mean_nnk_degree", "{:>6.1f}"), ("peak_rss_mb", "{:>7.0f}"),
           ("data_mb", "{:>6.0f}")]
HEAD = ["N", "d", "k", "kNN s", "graph s", "ratio", "solve s", "fused n/s", "solver n/s", "scipy n/s", "x scipy",
        "deg", "peak MB", "data MB"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--configs", nargs="*", help="NxDxK items, e.g. 100000x128x50")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--solver-nodes", type=int, default=20000)
    ap.add_argument("--scipy-nodes", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n, d, k = map(int, args.one.split("x"))
        print(json.dumps(run_one(n, d, k, args.repeats, args.solver_nodes, args.scipy_nodes, args.threads)))
        return
    if args.configs:
        configs = [tuple(map(int, c.split("x"))) for c in args.configs]
    elif args.quick:
        configs = [(20000, 128, k) for k in (10, 30, 50)]
    else:
        configs = [(n, d, k) for n in (20000, 100000) for d in (128, 768) for k in (10, 30, 50)]
    print(f"threads={args.threads} repeats={args.repeats} data=embedding_like(latent=16, 200 clusters), float32")
    widths = [len(fmt.format(0 if "d}" in fmt else 0.0)) for _, fmt in COLUMNS]
    print(" ".join(h.rjust(w) for h, w in zip(HEAD, widths, strict=True)))
    rows = []
    for n, d, k in configs:
        cmd = [sys.executable, __file__, "--one", f"{n}x{d}x{k}", "--repeats", str(args.repeats),
               "--solver-nodes", str(args.solver_nodes), "--scipy-nodes", str(args.scipy_nodes),
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(" ".join(fmt.format(row[c]) for c, fmt in COLUMNS), flush=True)
    target = [r for r in rows if (r["N"], r["d"], r["k"]) == (100000, 128, 50)]
    print()
    if target:
        r = target[0]
        print(f"target full graph <= 1.25 x kNN (N=100k, d=128, k=50): ratio {r['ratio']:.3f} "
              f"-> {'met' if r['ratio'] <= 1.25 else 'NOT met'}")
    for r in rows:
        if r["k"] == 50:
            ok = r["solver_nodes_per_s"] >= 50000 and r["solver_vs_scipy"] >= 8
            print(f"target solver >= 50,000 nodes/s and >= 8x scipy at k=50 (N={r['N']}, d={r['d']}): "
                  f"{r['solver_nodes_per_s']:.0f} nodes/s, {r['solver_vs_scipy']:.1f}x -> {'met' if ok else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
