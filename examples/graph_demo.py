"""The embedded default study: how NNK graphs adapt to k on real handwritten digits.

Builds NNK and kNN graphs of scikit-learn's 1,797 digits (64 pixels) for k = 5 ... 50 with both kernels and both
solvers, and writes ``report.html`` (tables + plots) and ``summary.csv`` into ``--out``.

    python examples/graph_demo.py --out demo-out
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd

import nnkscope as nk


def run(out: Path, ks=(5, 10, 20, 30, 50)) -> pd.DataFrame:
    from sklearn.datasets import load_digits

    X = load_digits().data
    rows = []
    for kernel in ("cosine", "gaussian"):
        for k in ks:
            t0 = time.perf_counter()
            G = nk.nnk_graph(X, k, kernel=kernel, progress=False)
            seconds = time.perf_counter() - t0
            R = nk.nnk_graph(X, k, kernel=kernel, solver="reference", knn=nk.knn(
                X, k, metric="euclidean" if kernel == "gaussian" else "cosine", progress=False), progress=False)
            A_knn = nk.knn_graph(X, k, kernel=kernel, sigma=G.params["sigma"], progress=False)
            rows.append({
                "kernel": kernel, "k": k, "seconds": seconds,
                "mean_nnk_degree": G.n_neighbors.mean(),
                "mean_error": G.errors.mean(),
                "edges_nnk_max": G.adjacency("max").nnz // 2,
                "edges_nnk_reference": G.adjacency("reference").nnz // 2,
                "edges_knn": A_knn.nnz // 2,
                "isolated_reference_rule": len(G.isolated_nodes("reference")),
                "nodes_support_differs_vs_reference_solver": float(
                    np.mean(((G.theta > 0) != (R.theta > 0)).any(axis=1))),
                "mean_error_reference_solver": R.errors.mean(),
            })
            print(f"{kernel:8s} k={k:3d}  NNK degree {G.n_neighbors.mean():5.2f}  error {G.errors.mean():.4f}  "
                  f"({seconds:.2f} s)")
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "summary.csv", index=False)
    (out / "report.html").write_text(_report(df), encoding="utf-8")
    return df


def _plot(df: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for kernel, sub in df.groupby("kernel"):
        axes[0].plot(sub.k, sub.mean_nnk_degree, "o-", label=f"NNK ({kernel})")
        axes[1].plot(sub.k, sub.edges_nnk_max, "o-", label=f"NNK max-rule ({kernel})")
        axes[1].plot(sub.k, sub.edges_knn, "s--", label=f"kNN ({kernel})")
    axes[0].plot(df.k.unique(), df.k.unique(), "k:", label="kNN (degree = k)")
    axes[0].set(xlabel="k (candidates)", ylabel="mean neighbours per node", title="NNK degree saturates")
    axes[1].set(xlabel="k", ylabel="undirected edges", title="Graph size", yscale="log")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _report(df: pd.DataFrame) -> str:
    table = df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    first, final = df[df.kernel == "cosine"].iloc[0], df[df.kernel == "cosine"].iloc[-1]
    summary = (f"With the cosine kernel, growing k from {first.k} to {final.k} candidates raises the mean NNK "
               f"degree only from {first.mean_nnk_degree:.1f} to {final.mean_nnk_degree:.1f}: NNK keeps the "
               "neighbours that span new directions and prunes the rest, so the graph stops growing once k exceeds "
               "what the local geometry needs. The authors' reference solver is not the exact optimum: on "
               f"{100 * final.nodes_support_differs_vs_reference_solver:.0f}% of nodes at k={final.k} its "
               "neighbour set differs from the exact NNLS solution.")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>nnkscope demo: NNK graphs of digits</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
</style></head><body>
<h1>NNK graphs of handwritten digits</h1>
<p>{html.escape(summary)}</p>
<img alt="NNK degree and edge counts against k" src="data:image/png;base64,{_plot(df)}">
<h2>All runs</h2>{table}
<p style="color:#666;font-size:12px">nnkscope {nk.__version__}; data: scikit-learn digits (1,797 x 64);
exact solver, exact kNN; sigma rule for the Gaussian: mean k-th neighbour distance / 3.</p>
</body></html>"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    run(args.out)
    print(f"wrote {args.out / 'report.html'} and {args.out / 'summary.csv'}")
