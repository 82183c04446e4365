"""Exact kNN on ordinary data: the precision-safe search (centred float32 copy, certified windows, float64 fallback)
vs the original float32 search, side by side in one run.

Each timing runs in a fresh subprocess that imports one code tree: this checkout's ``src`` ("new") or the
pre-refactor tree given by ``--base`` ("base", module ``nnkscope.neighbors``). New and base alternate
``--repeats`` times per configuration, so background load affects both alike; the medians of wall time and of
process CPU time (all threads; steadier on a shared machine) and their ratios are printed (ratio > 1: new is
slower). Data: ``tests/helpers.py::clustered`` (float32, seed 0). Each process warms
the numba kernels on 2,000 rows first. The two trees' neighbours are compared (they must be identical here), and
one extra untimed run of the new tree counts the rows whose float32 window was widened or scanned in float64.

    python bench/knn_precision.py                       # N = 50k, d = 64, k = 30, both metrics
    python bench/knn_precision.py --configs 100000x128x10 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_one(tree: str, n: int, d: int, k: int, metric: str, threads: int, out: str, count: bool) -> dict:
    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from helpers import clustered

    if tree == "base":
        from nnkscope.neighbors import knn
    else:
        from nnkscope.engine.neighbors import knn
    X = clustered(n, d, seed=0)
    knn(X[:2000], k, metric=metric, n_jobs=threads, progress=False)  # numba load / compile
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    nb = knn(X, k, metric=metric, n_jobs=threads, progress=False)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    np.save(out, nb.indices)
    row = {"tree": tree, "seconds": seconds, "cpu_seconds": cpu}
    if count:
        row.update(_count_fallbacks(knn, X, k, metric, threads))
    return row


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (less sensitive than wall time to other jobs on the machine)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _count_fallbacks(knn, X, k, metric, threads) -> dict:
    """Rows whose window was searched more than once, and rows scanned in float64 (new tree, untimed)."""
    from nnkscope.engine import neighbors as m

    seen = {"windows": 0, "scanned": 0}
    window, scan = m._Space.window, m._scan_rows

    def counting_window(self, searcher, queries, rows, width):
        seen["windows"] += rows.size
        return window(self, searcher, queries, rows, width)

    def counting_scan(space, queries, in_sample, rows, *args):
        seen["scanned"] += rows.size
        return scan(space, queries, in_sample, rows, *args)

    m._Space.window, m._scan_rows = counting_window, counting_scan
    try:
        knn(X, k, metric=metric, n_jobs=threads, progress=False)
    finally:
        m._Space.window, m._scan_rows = window, scan
    return {"widened_rows": seen["windows"] - len(X), "scanned_rows": seen["scanned"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="*", default=["50000x64x30"], help="NxDxK items")
    ap.add_argument("--metrics", nargs="*", default=["euclidean", "cosine"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base", default="/tmp/work/base/src", help="src folder of the original tree")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        tree, n, d, k, metric, out, count = args.one.split(",")
        print(json.dumps(run_one(tree, int(n), int(d), int(k), metric, args.threads, out, count == "1")))
        return
    paths = {"new": os.path.join(ROOT, "src"), "base": args.base}
    print(f"threads={args.threads} repeats={args.repeats} data=tests/helpers.clustered (float32)")
    print(f"{'N':>7} {'d':>4} {'k':>3} {'metric':>9} {'new s':>7} {'base s':>7} {'ratio':>6} {'new cpu':>8} "
          f"{'base cpu':>8} {'ratio':>6} {'same':>5} {'widened':>8} {'scanned':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            n, d, k = map(int, config.split("x"))
            for metric in args.metrics:
                times: dict[str, list[float]] = {"new": [], "base": []}
                cpu: dict[str, list[float]] = {"new": [], "base": []}
                extra = {}
                for rep in range(args.repeats):
                    for tree in ("new", "base") if rep % 2 == 0 else ("base", "new"):
                        count = tree == "new" and rep == args.repeats - 1
                        one = ",".join(map(str, (tree, n, d, k, metric, os.path.join(tmp, f"{tree}.npy"),
                                                 int(count))))
                        env = {**os.environ, "PYTHONPATH": paths[tree]}
                        out = subprocess.run([sys.executable, __file__, "--one", one, "--threads", str(args.threads)],
                                             capture_output=True, text=True, check=True, env=env).stdout
                        row = json.loads(out.strip().splitlines()[-1])
                        times[tree].append(row["seconds"])
                        cpu[tree].append(row["cpu_seconds"])
                        if count:
                            extra = row
                import numpy as np

                same = bool((np.load(os.path.join(tmp, "new.npy")) == np.load(os.path.join(tmp, "base.npy"))).all())
                new, base = statistics.median(times["new"]), statistics.median(times["base"])
                new_cpu, base_cpu = statistics.median(cpu["new"]), statistics.median(cpu["base"])
                print(f"{n:>7} {d:>4} {k:>3} {metric:>9} {new:>7.2f} {base:>7.2f} {new / base:>6.3f} {new_cpu:>8.2f} "
                      f"{base_cpu:>8.2f} {new_cpu / base_cpu:>6.3f} {str(same):>5} "
                      f"{extra.get('widened_rows', 0):>8} {extra.get('scanned_rows', 0):>8}", flush=True)
                for name, values in (("wall", times), ("cpu", cpu)):
                    print(f"    {name} new: {' '.join(f'{t:.2f}' for t in values['new'])}   "
                          f"base: {' '.join(f'{t:.2f}' for t in values['base'])}")


if __name__ == "__main__":
    main()
