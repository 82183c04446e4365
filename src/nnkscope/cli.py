"""Command-line interface: ``nnkscope graph EMBEDDINGS -k 30 --kernel cosine -o graph.npz``."""

from __future__ import annotations

import argparse
import sys
import time

from .errors import NNKScopeError


def _add_graph_parser(sub) -> None:
    p = sub.add_parser("graph", help="build an NNK graph from an embedding matrix",
                       description="Build the NNK graph of the rows of an embedding matrix and save it.")
    p.add_argument("embeddings", help="(N, d) array: .npy, .npz, .parquet or .zarr")
    p.add_argument("-k", type=int, default=30, help="candidates per node (default 30)")
    p.add_argument("--kernel", choices=["gaussian", "cosine"], default="gaussian")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian bandwidth (default: mean k-th NN distance / 3)")
    p.add_argument("--solver", choices=["exact", "reference", "scipy"], default="exact")
    p.add_argument("--tau", type=float, default=1e-6, help="weight threshold (default 1e-6)")
    p.add_argument("--rule", choices=["max", "min", "mean", "reference"], default="max",
                   help="symmetrisation rule stored with the graph and used in the summary")
    p.add_argument("--knn", choices=["exact", "hnsw"], default="exact", help="candidate search")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef-search", type=int, default=128)
    p.add_argument("--recall-sample", type=int, default=1000)
    p.add_argument("--duplicates", choices=["error", "keep", "drop"], default="error")
    p.add_argument("--key", default=None, help="array/column name inside .npz, .parquet or zarr inputs")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all available)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-o", "--output", required=True, help="output graph: .npz or .parquet")
    p.set_defaults(func=_cmd_graph)


def _cmd_graph(args) -> int:
    from .graph import nnk_graph
    from .io import load_embeddings
    from .neighbors import HNSWSearch

    X = load_embeddings(args.embeddings, key=args.key)
    knn = "exact"
    if args.knn == "hnsw":
        knn = HNSWSearch(M=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search,
                         recall_sample=args.recall_sample)
    t0 = time.perf_counter()
    G = nnk_graph(X, args.k, kernel=args.kernel, sigma=args.sigma, solver=args.solver, symmetrize=args.rule,
                  tau=args.tau, knn=knn, duplicates=args.duplicates, n_jobs=args.threads,
                  progress=False if args.no_progress else None)
    elapsed = time.perf_counter() - t0
    path = G.save(args.output)
    summary = G.summary()
    summary["recall"] = G.params["knn"].get("recall")
    summary["seconds"] = round(elapsed, 3)
    summary["output"] = str(path)
    width = max(map(len, summary))
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        print(f"{key:<{width}}  {value}")
    if summary["isolated_nodes"]:
        print(f"note: {summary['isolated_nodes']} node(s) have no edge under rule {summary['rule']!r}; "
              "rule 'max' never isolates a node with an NNK neighbour", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="nnkscope", description="Geometry of representations with NNK graphs.")
    parser.add_argument("--version", action="version", version=f"nnkscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_graph_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NNKScopeError as exc:
        print(f"nnkscope {args.command}: error: {exc}", file=sys.stderr)
        return 2




if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
