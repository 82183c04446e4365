"""Two source trees side by side in one run: ``bench/nnk_graph.py``'s measurement of each configuration, with the
old and the new code alternating, so both see the same machine load.

    git worktree add /tmp/base <old-commit>
    python bench/versions.py --old /tmp/base --configs 20000x128x30 100000x128x50

Each tree is measured with its own ``bench/nnk_graph.py`` (``--one``) in a fresh subprocess whose PYTHONPATH is
that tree's ``src``.  Printed per configuration and tree: exact kNN alone, the full NNK graph, their ratio, and
the solver's nodes/s; then new / old for the graph ratio and the solver throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(tree: str, config: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
    cmd = [sys.executable, os.path.join(tree, "bench", "nnk_graph.py"), "--one", config, "--repeats", "1",
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="root of the other checkout (holds src/ and bench/)")
    ap.add_argument("--new", default=ROOT)
    ap.add_argument("--configs", nargs="+", default=["20000x128x30"])
    ap.add_argument("--repeats", type=int, default=3, help="alternations per configuration")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    print(f"{'config':>14} {'tree':>4} {'kNN s':>7} {'graph s':>8} {'ratio':>6} {'solver n/s':>11}")
    for config in args.configs:
        rows = {"old": [], "new": []}
        for _ in range(args.repeats):
            for name in ("old", "new"):
                rows[name].append(measure(getattr(args, name), config, args.threads))
        med = {name: {key: statistics.median(r[key] for r in rs) for key in ("faiss_knn_s", "nnk_graph_s", "ratio",
                                                                               "solver_nodes_per_s")}
               for name, rs in rows.items()}
        for name in ("old", "new"):
            m = med[name]
            print(f"{config:>14} {name:>4} {m['faiss_knn_s']:7.2f} {m['nnk_graph_s']:8.2f} {m['ratio']:6.3f} "
                  f"{m['solver_nodes_per_s']:11.0f}")
        print(f"{config:>14}  new/old: graph/kNN ratio {med['new']['ratio'] / med['old']['ratio']:.3f}, solver "
              f"throughput {med['new']['solver_nodes_per_s'] / med['old']['solver_nodes_per_s']:.3f}")


if __name__ == "__main__":
    main()
