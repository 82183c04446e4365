"""Command-line interface.

``nnkscope graph`` (NNK graph of an embedding; ``--local-cluster``/``--scheduler`` run it on Dask), ``metrics``
(per-point table), ``collapse`` and ``separation`` (class geometry of saved features), ``demo`` (the embedded
study), ``study KIND --config`` (any study from YAML), ``report`` (HTML of a run folder) and ``query`` (SQL over a
run folder).  Errors of nnkscope's own kinds print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from .engine.graph import RULES
from .engine.kernels import KERNELS
from .engine.neighbors import DUPLICATES, SEARCHES
from .engine.settings import DEFAULT_K
from .engine.solvers import SOLVERS
from .errors import InvalidParameterError, NNKScopeError


def _add_graph_parser(sub) -> None:
    p = sub.add_parser("graph", help="build an NNK graph from an embedding matrix",
                       description="Build the NNK graph of the rows of an embedding matrix and save it.")
    p.add_argument("embeddings", help="(N, d) array: .npy, .npz, .parquet or .zarr")
    p.add_argument("-k", type=int, default=DEFAULT_K, help=f"candidates per node (default {DEFAULT_K})")
    p.add_argument("--kernel", choices=KERNELS, default="gaussian")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian bandwidth (default: mean k-th NN distance / 3)")
    p.add_argument("--solver", choices=SOLVERS, default="exact")
    p.add_argument("--tau", type=float, default=1e-6, help="weight threshold in [0, 1) (default 1e-6)")
    p.add_argument("--symmetrize", "--rule", dest="rule", choices=RULES, default="max",
                   help="symmetrisation rule stored with the graph and used in the summary (--rule: former name)")
    p.add_argument("--knn", choices=SEARCHES, default="exact",
                   help="candidate search (gpu: torch windows on a CUDA device, exact results)")
    p.add_argument("--nlist", type=int, default=1024, help="IVF cells")
    p.add_argument("--nprobe", type=int, default=16, help="IVF cells searched per query")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef-search", type=int, default=128)
    p.add_argument("--recall-sample", type=int, default=1000)
    p.add_argument("--duplicates", choices=DUPLICATES, default="error")
    p.add_argument("--key", default=None, help="array/column name inside .npz, .parquet or zarr inputs")
    p.add_argument("--n-jobs", "--threads", dest="threads", type=int, default=None,
                   help="threads (default: all available; --threads: former name)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-o", "--output", required=True, help="output graph: .npz or .parquet")
    _add_blocked_args(p)
    p.set_defaults(func=_cmd_graph)


def _add_blocked_args(p) -> None:
    g = p.add_argument_group("blocked / distributed run (input read from disk block by block: .npy or zarr)")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--local-cluster", type=int, metavar="N", help="start a Dask LocalCluster of N workers")
    where.add_argument("--scheduler", metavar="ADDRESS", help="use the Dask scheduler at ADDRESS")
    where.add_argument("--blocked", action="store_true", help="blocked run in this process (no Dask)")
    g.add_argument("--block-size", type=int, default=8192, help="query rows per task (default 8192)")
    g.add_argument("--shard-size", type=int, default=65536, help="database rows searched at a time")
    g.add_argument("--parts-dir", help="folder for the Parquet parts (default: a temporary folder); a run "
                                       "interrupted there resumes")


def _is_blocked(args) -> bool:
    return bool(args.local_cluster or args.scheduler or args.blocked)


def _cmd_graph(args) -> int:
    from .engine.neighbors import HNSWSearch, IVFSearch
    from .engine.pipeline import nnk_graph
    from .io import load_embeddings

    knn = args.knn
    if args.knn == "hnsw":
        knn = HNSWSearch(M=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search,
                         recall_sample=args.recall_sample)
    elif args.knn == "ivf":
        knn = IVFSearch(nlist=args.nlist, nprobe=args.nprobe, recall_sample=args.recall_sample)
    settings = dict(kernel=args.kernel, sigma=args.sigma, solver=args.solver, symmetrize=args.rule, tau=args.tau,
                    knn=knn, duplicates=args.duplicates, progress=False if args.no_progress else None)
    t0 = time.perf_counter()
    if _is_blocked(args):
        with _blocked_session(args) as (parts_dir, client):
            G = _blocked_parts(args, parts_dir, client, settings).to_graph()
    else:
        G = nnk_graph(load_embeddings(args.embeddings, key=args.key), args.k, n_jobs=args.threads, **settings)
    elapsed = time.perf_counter() - t0
    path = G.save(args.output)
    summary = G.summary()
    summary["recall"] = G.params["knn"].get("recall")
    if "blocked" in G.params:
        summary["blocks"] = G.params["blocked"]["blocks"]
        summary["shards"] = G.params["blocked"]["shards"]
    summary["seconds"] = round(elapsed, 3)
    summary["output"] = str(path)
    _print_table(summary)
    if summary["isolated_nodes"]:
        print(f"note: {summary['isolated_nodes']} node(s) have no edge under rule {summary['rule']!r}; "
              "rule 'max' never isolates a node with an NNK neighbour", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _blocked_session(args):
    """``(parts folder, Dask client or None)`` for a blocked run; a LocalCluster or connection closes on exit."""
    import tempfile

    from .executor import connect, local_cluster

    with contextlib.ExitStack() as stack:
        parts_dir = args.parts_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="nnkscope-parts-"))
        client = None
        if args.local_cluster:
            client = stack.enter_context(local_cluster(args.local_cluster, threads_per_worker=args.threads or 1))
        elif args.scheduler:
            client = stack.enter_context(connect(args.scheduler))
        yield parts_dir, client


def _blocked_parts(args, parts_dir, client, settings: dict):
    """The graph built block by block from the file on disk (never loaded whole)."""
    from .engine.pipeline import RowSource, build_graph

    return build_graph(RowSource(args.embeddings, args.key), parts_dir, args.k, block_size=args.block_size,
                       shard_size=args.shard_size, executor=client, threads_per_task=args.threads or 1, **settings)


def _load_labels(path: str, n: int):
    import numpy as np

    from .errors import FileFormatError, InputShapeError

    try:
        y = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: could not read labels ({exc}); save them with np.save(path, y)") from exc
    if y.ndim != 1 or len(y) != n:
        raise InputShapeError(f"{path}: labels must be 1-D with {n} entries (one per feature row); got {y.shape}")
    return y


def _print_table(rows: dict) -> None:
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:.6g}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def _add_collapse_parsers(sub) -> None:
    p = sub.add_parser("collapse", help="neural collapse metrics (NC1-NC4) of saved features",
                       description="Neural collapse metrics of features (streamed in row blocks).")
    p.add_argument("features", help="(N, d) features: .npy (memory-mapped), .npz, .parquet or .zarr")
    p.add_argument("--labels", required=True, help=".npy with N integer labels 0..K-1")
    p.add_argument("--classifier", help=".npy with the (K, d) last-layer weights (enables NC2-W, NC3, NC4)")
    p.add_argument("--bias", help=".npy with the (K,) last-layer bias")
    p.add_argument("--key", default=None)
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("-o", "--output", help="write the metrics as JSON")
    p.set_defaults(func=_cmd_collapse)

    p = sub.add_parser("separation", help="separation fuzziness per layer and the equi-separation fit",
                       description="He & Su separation fuzziness D_l of each layer (in depth order) and the "
                                   "log-linear fit giving the decay ratio rho.")
    p.add_argument("layers", nargs="+", help="one feature file per layer in depth order, or one .npz with one "
                                             "array per layer (stored order)")
    p.add_argument("--labels", required=True)
    p.add_argument("--weighting", choices=["balanced", "imbalanced"], default="balanced")
    p.add_argument("--first-is-input", action="store_true", help="also report the fit without the first layer")
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("-o", "--output", help="write the per-layer table as CSV")
    p.set_defaults(func=_cmd_separation)


def _cmd_collapse(args) -> int:
    import json

    import numpy as np

    from .io import atomic_path, load_embeddings
    from .measures.collapse import neural_collapse, scatter_in_blocks

    H = load_embeddings(args.features, key=args.key)
    y = _load_labels(args.labels, len(H))
    stats = scatter_in_blocks(H, y, int(np.max(y)) + 1, args.batch_size)
    W = np.load(args.classifier, allow_pickle=False) if args.classifier else None
    b = np.load(args.bias, allow_pickle=False) if args.bias else None
    batches = ((H[lo:lo + args.batch_size], y[lo:lo + args.batch_size]) for lo in range(0, len(H), args.batch_size))
    metrics = neural_collapse(stats, W=W, b=b, batches=batches if W is not None else None)
    _print_table(metrics)
    if args.output:
        with atomic_path(args.output) as tmp:
            tmp.write_text(json.dumps(metrics, indent=1))
    return 0


def _cmd_separation(args) -> int:
    import numpy as np

    from .errors import InputShapeError
    from .io import atomic_path, load_embeddings
    from .measures.collapse import equi_separation_fit, scatter_in_blocks, separation_fuzziness

    if len(args.layers) == 1 and args.layers[0].endswith(".npz"):
        with np.load(args.layers[0], allow_pickle=False) as z:
            named = [(name, z[name]) for name in z.files]
    else:
        named = [(path, load_embeddings(path)) for path in args.layers]
    y = _load_labels(args.labels, len(named[0][1]))
    K = int(np.max(y)) + 1
    rows = []
    for i, (name, H) in enumerate(named):
        if len(H) != len(y):
            raise InputShapeError(f"layer {name!r} has {len(H)} rows but there are {len(y)} labels")
        stats = scatter_in_blocks(H, y, K, args.batch_size)
        D = separation_fuzziness(stats, weighting=args.weighting)
        rows.append((i, name, D))
        print(f"layer {i:3d}  D = {D:12.6g}  log D = {np.log(D):9.4f}  {name}")
    D = np.array([r[2] for r in rows])
    fits = {"all layers": equi_separation_fit(D)}
    if args.first_is_input and len(D) >= 4:
        fits["without input"] = equi_separation_fit(D[1:], np.arange(1, len(D)))
    for label, f in fits.items():
        print(f"fit ({label}): rho = {f.rho:.4f}  Pearson r = {f.r:.4f}  R^2 = {f.r2:.4f}")
    if args.output:
        import pandas as pd

        with atomic_path(args.output) as tmp:
            pd.DataFrame(rows, columns=["index", "layer", "D"]).to_csv(tmp, index=False)
    return 0


def _add_metrics_parser(sub) -> None:
    p = sub.add_parser("metrics", help="per-point NNK manifold / label metrics of an embedding",
                       description="Per-point NNK metrics (degree, diameter, local ID, curvature; with labels also "
                                   "homogeneity and leave-one-out errors) written as a Parquet table.")
    p.add_argument("embeddings")
    p.add_argument("--labels", help=".npy with one label per row")
    p.add_argument("-k", type=int, default=DEFAULT_K)
    p.add_argument("--kernel", choices=KERNELS, default="cosine",
                   help="default cosine, the kernel of representation studies (graph: gaussian, the NNK paper's)")
    p.add_argument("--sigma", type=float, default=None)
    p.add_argument("--energy", type=float, default=0.9, help="PCA energy for the local dimension")
    p.add_argument("--duplicates", choices=DUPLICATES, default="keep")
    p.add_argument("--key", default=None)
    p.add_argument("--n-jobs", "--threads", dest="threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-o", "--output", required=True, help="output table (.parquet or .csv)")
    _add_blocked_args(p)
    p.set_defaults(func=_cmd_metrics)


def _cmd_metrics(args) -> int:
    from .io import atomic_path, load_embeddings
    from .measures.metrics import column_means, point_metrics

    progress = False if args.no_progress else None
    if _is_blocked(args):
        from .io import RowSource
        from .measures.metrics import graph_metrics

        n = RowSource(args.embeddings, args.key).shape[0]
        y = _load_labels(args.labels, n) if args.labels else None
        with _blocked_session(args) as (parts_dir, client):
            parts = _blocked_parts(args, parts_dir, client, dict(kernel=args.kernel, sigma=args.sigma,
                                                                 duplicates=args.duplicates, progress=progress))
            df = graph_metrics(parts, y, energy=args.energy, executor=client, progress=progress)
        summary = {"n": len(df), "k": args.k, "kernel": args.kernel, "curvature_dim": df.attrs["curvature_dim"],
                   **column_means(df)}
        if y is not None:
            summary["loo_error_nnk"] = float(df["loo_error_nnk"].mean())
        summary.update(df.attrs["graph"])
    else:
        X = load_embeddings(args.embeddings, key=args.key)
        y = _load_labels(args.labels, len(X)) if args.labels else None
        df, summary = point_metrics(X, y, args.k, kernel=args.kernel, sigma=args.sigma, energy=args.energy,
                                    duplicates=args.duplicates, n_jobs=args.threads, progress=progress)
    with atomic_path(args.output) as tmp:
        if args.output.endswith(".csv"):
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    _print_table(summary)
    print(f"output  {args.output}")
    return 0


def _add_query_parser(sub) -> None:
    p = sub.add_parser("query", help="read-only SQL (one SELECT) over a run folder's tables",
                       description="Run one read-only SELECT (DuckDB SQL; WITH ... SELECT allowed) over the Parquet "
                                   "tables of a run folder (one view per table). The query cannot read or write "
                                   "files, so it sees only the run and cannot change it.")
    p.add_argument("run_dir")
    p.add_argument("sql")
    p.add_argument("-o", "--output", help="write the result to this file instead of printing it: .csv, .parquet "
                                          "or .json (records); not inside the run folder")
    p.set_defaults(func=_cmd_query)


_QUERY_OUTPUTS = (".csv", ".parquet", ".json")


def _cmd_query(args) -> int:
    from pathlib import Path

    from .errors import InvalidParameterError
    from .io import atomic_path
    from .store import RunStore

    store = RunStore(args.run_dir, create=False)
    if not args.output:
        print(store.query(args.sql).to_string(index=False))
        return 0
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in _QUERY_OUTPUTS:
        raise InvalidParameterError(f"--output {out}: unknown format {suffix or '(no extension)'!r}; name the "
                                    f"file with one of {', '.join(_QUERY_OUTPUTS)}")
    run, target = store.root.resolve(), out.resolve()
    if target == run or run in target.parents:
        raise InvalidParameterError(f"--output {out} is inside the run folder {args.run_dir}; write the result "
                                    "elsewhere so the run stays as the study wrote it")
    if target.is_dir():
        raise InvalidParameterError(f"--output {out} is an existing folder; give a file name")
    stack = contextlib.ExitStack()
    try:  # the temporary file is created now, so an unwritable output fails before the query runs
        tmp = stack.enter_context(atomic_path(out))
    except OSError as exc:
        raise InvalidParameterError(f"--output {out} cannot be written ({exc}); choose a writable location") \
            from exc
    with stack:
        df = store.query(args.sql)
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", force_ascii=False, date_format="iso")
    print(f"{len(df)} rows -> {out}")
    return 0


def _add_demo_parsers(sub) -> None:
    p = sub.add_parser("demo", help="train a small model on digits, run the layer-wise study, write the report",
                       description="The embedded default study: an MLP with BatchNorm on scikit-learn digits, "
                                   "layer-wise NNK and class-geometry metrics at several epochs, an HTML report.")
    p.add_argument("--out", default="demo-run", help="run folder (resumes if it exists)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    from .studies.registry import KINDS

    p = sub.add_parser("study", help=f"run a study from a YAML config ({', '.join(KINDS)})",
                       description="Run a study into a resumable run folder, print its table, write report.html. "
                                   "Without --config the kind's defaults run; unknown config keys are refused.")
    p.add_argument("kind", choices=list(KINDS), help="; ".join(f"{k.name}: {k.summary}" for k in KINDS.values()))
    p.add_argument("--config", help="YAML file overriding the kind's defaults")
    p.add_argument("--out", required=True, help="run folder (resumes if it exists with the same config)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local-cluster", type=int, metavar="N",
                       help="measure the layers as tasks on a Dask LocalCluster of N workers (layerwise, training)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="... or on the Dask scheduler at ADDRESS")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--features", nargs="+", metavar="FILE",
                   help="layerwise on saved features instead of a model: one .npz (each array a layer, in file "
                        "order) or several .npy files (one layer each, in the order given); needs --labels")
    p.add_argument("--labels", help="labels of the feature rows (.npy/.npz/.pt/.txt), for --features")
    p.set_defaults(func=_cmd_study)
    p = sub.add_parser("report", help="write the HTML report of a run folder")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(func=_cmd_report)


DEMO = {"data": {"name": "digits"}, "model": {"kind": "mlp", "width": 64, "depth": 2, "batchnorm": True},
        "train": {"epochs": 30, "lr": 1e-3}, "eval_on": "train", "eval_per_class": 60, "k": 20}


def _cmd_demo(args) -> int:
    """The embedded default: the ``training`` study of an MLP with BatchNorm on digits, through the registry."""
    from .report import write_report
    from .studies.registry import resolve_config, run_study

    if args.epochs < 1:
        raise InvalidParameterError(f"--epochs must be at least 1; got {args.epochs}")
    marks = sorted({1, max(1, args.epochs // 4), max(1, args.epochs // 2), args.epochs})
    cfg = resolve_config("training", {**DEMO, "seed": args.seed, "epochs": marks,
                                      "train": {**DEMO["train"], "epochs": args.epochs}})
    _check_run_folder(args.out)
    _, table = run_study("training", cfg, args.out)
    path = write_report(args.out)
    last = table[table.epoch == table.epoch.max()].sort_values("layer_index")
    print(f"trained {args.epochs} epochs; measured epochs {marks}; NNK LOO error at the last layer "
          f"{last.loo_error_nnk.iloc[-1]:.3f}")
    print(f"report: {path}")
    return 0


def _check_run_folder(out) -> None:
    """A run folder argument must be a folder (or not exist yet), never a file."""
    from pathlib import Path

    if Path(out).exists() and not Path(out).is_dir():
        raise InvalidParameterError(f"--out {out} is a file; give a folder for the run (it is created if new)")


def _study_config(args) -> dict:
    """The study's config: the YAML file (paths relative to it) with ``--features`` / ``--labels`` on top."""
    import os
    from pathlib import Path

    from .studies.base import load_yaml, resolve_paths
    from .studies.registry import resolve_config

    raw = resolve_paths(load_yaml(args.config), Path(args.config).resolve().parent) if args.config else {}
    if args.labels and not args.features:
        raise InvalidParameterError("--labels goes with --features (a model study reads its labels from the config)")
    if args.features:
        if args.kind != "layerwise":
            raise InvalidParameterError(f"--features runs study layerwise; saved features have no {args.kind} study")
        if not args.labels:
            raise InvalidParameterError("--features needs --labels (one label per feature row)")
        raw["features"] = [os.path.abspath(f) for f in args.features]
        raw["data"] = {**raw.get("data", {}), "y": os.path.abspath(args.labels)}
    return resolve_config(args.kind, raw)


def _cmd_study(args) -> int:
    import pandas as pd

    from .studies.registry import run_study

    cfg = _study_config(args)
    if args.show_config:
        import yaml

        print(yaml.safe_dump({"study": args.kind, **cfg}, sort_keys=False))
        return 0
    _check_run_folder(args.out)
    with contextlib.ExitStack() as stack:
        client = None
        if args.local_cluster:
            from .executor import local_cluster

            client = stack.enter_context(local_cluster(args.local_cluster, threads_per_worker=1))
        elif args.scheduler:
            from .executor import connect

            client = stack.enter_context(connect(args.scheduler))
        _, table = run_study(args.kind, cfg, args.out, executor=client)
    if not args.no_report:
        from .report import write_report

        write_report(args.out)
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"run folder: {args.out}" + ("" if args.no_report else f"; report: {args.out}/report.html"))
    return 0


def _add_compare_parser(sub) -> None:
    from .studies.kinds.compare_features import COMPARE_FEATURES

    d = COMPARE_FEATURES.defaults
    p = sub.add_parser("compare", help="compare two models' saved features layer by layer (CKA, NNK Jaccard, ...)",
                       description="Every layer of A against every layer of B (one file: against itself): table "
                                   "'similarity' (one row per model_a, layer_a, model_b, layer_b, measure) and a "
                                   "report with a layer x layer heatmap per measure.")
    p.add_argument("features", nargs="+", metavar="FILE", help="one or two feature sets: .npz (one array per layer) "
                                                                 "or .npy (one layer)")
    p.add_argument("--labels", help="labels of the rows: also writes each set's layer-wise metrics (table layers)")
    p.add_argument("--names", nargs="+", help="a name per feature set (default: the file names)")
    p.add_argument("--measures", nargs="+", default=d["measures"], help=f"default {' '.join(d['measures'])}")
    p.add_argument("-k", type=int, default=d["k"], help=f"NNK candidates per node (default {d['k']})")
    p.add_argument("--kernel", choices=["cosine", "gaussian"], default=d["kernel"])
    p.add_argument("--out", required=True, help="run folder (resumes if it exists with the same inputs)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    import os

    import pandas as pd

    from .studies.registry import resolve_config, run_study

    if len(args.features) > 2:
        raise InvalidParameterError(f"compare takes one or two feature sets; got {len(args.features)}")
    raw = {"features": [os.path.abspath(f) for f in args.features], "measures": list(args.measures), "k": args.k,
           "kernel": args.kernel}
    if args.labels:
        raw["labels"] = os.path.abspath(args.labels)
    if args.names:
        raw["names"] = list(args.names)
    cfg = resolve_config("compare-features", raw)
    _check_run_folder(args.out)
    _, table = run_study("compare-features", cfg, args.out)
    if not args.no_report:
        from .report import write_report

        write_report(args.out)
    wide = table.pivot_table(index=["model_a", "layer_a", "model_b", "layer_b"], columns="measure", values="value",
                             sort=False).reset_index()
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(wide.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"run folder: {args.out}" + ("" if args.no_report else f"; report: {args.out}/report.html"))
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    print(f"report: {write_report(args.run_dir, args.output)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="nnkscope", description="Geometry of representations with NNK graphs.")
    parser.add_argument("--version", action="version", version=f"nnkscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_graph_parser(sub)
    _add_collapse_parsers(sub)
    _add_metrics_parser(sub)
    _add_query_parser(sub)
    _add_demo_parsers(sub)
    _add_compare_parser(sub)
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
