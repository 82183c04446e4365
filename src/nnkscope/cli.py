"""Command-line interface.

``nnkscope graph`` (NNK graph of an embedding; ``--local-cluster``/``--scheduler`` run it on Dask), ``metrics``
(per-point table), ``collapse`` and ``separation`` (class geometry of saved features), ``demo`` (the embedded
study), ``study KIND --config`` (any study from YAML), ``report`` (HTML of a run folder) and ``query`` (SQL over a
run folder).  Errors of nnkscope's own kinds (and failures of the file system) print one line naming the fix and
exit with status 2; outputs are checked before any work (format, folder, not one of the inputs).  Anything else is
a bug: one line naming the exception, exit status 1 (``--debug`` shows the traceback).
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
    g.add_argument("--block-size", type=int, default=None, help="query rows per task (default 8192)")
    g.add_argument("--shard-size", type=int, default=None, help="database rows searched at a time (default 65536)")
    g.add_argument("--parts-dir", help="folder for the Parquet parts (default: a temporary folder); a run "
                                       "interrupted there resumes. Needs --blocked, --local-cluster or --scheduler")


def _is_blocked(args) -> bool:
    return bool(args.local_cluster is not None or args.scheduler or args.blocked)


def _check_blocked_args(args) -> None:
    """Options of a blocked run given without one are refused, not silently ignored.

    ``--parts-dir`` does not imply ``--blocked``: a blocked run reads only .npy or zarr inputs and keeps its
    parts on disk, so switching to it must be the user's explicit choice, not a side effect of another option.
    """
    if not _is_blocked(args):
        given = [flag for flag, value in (("--parts-dir", args.parts_dir), ("--block-size", args.block_size),
                                          ("--shard-size", args.shard_size)) if value is not None]
        if given:
            verb, it = ("applies", "it") if len(given) == 1 else ("apply", "them")
            raise InvalidParameterError(f"{' and '.join(given)} only {verb} to a blocked run; add --blocked (or "
                                        f"--local-cluster N / --scheduler ADDRESS), or drop {it}")
        return
    if args.local_cluster is not None:
        _positive(args.local_cluster, "--local-cluster", "workers")
    args.block_size = _positive(8192 if args.block_size is None else args.block_size, "--block-size", "rows")
    args.shard_size = _positive(65536 if args.shard_size is None else args.shard_size, "--shard-size", "rows")
    if args.parts_dir is not None:
        from .io import check_output_dir

        check_output_dir(args.parts_dir, flag="--parts-dir", what="parts folder")


def _positive(value: int, flag: str, unit: str) -> int:
    if value < 1:
        raise InvalidParameterError(f"{flag} must be a positive number of {unit}; got {value}")
    return value


def _cmd_graph(args) -> int:
    from .engine.neighbors import HNSWSearch, IVFSearch
    from .engine.pipeline import nnk_graph
    from .io import check_output, load_embeddings

    _check_blocked_args(args)
    check_output(args.output, (".npz", ".parquet"), inputs=[args.embeddings], what="a graph")
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
    """Labels from ``.npy``, ``.npz`` (one array) or a torch ``.pt``/``.pth`` tensor, one per feature row."""
    import numpy as np

    from ._validate import check_labels
    from .errors import InputShapeError

    y = _load_array(path, "--labels", "labels", "np.save(path, y)", torch_ok=True)
    if hasattr(y, "detach"):  # a torch tensor
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise InputShapeError(f"{path}: labels must be 1-D with {n} entries (one per feature row); got {y.shape}")
    check_labels(y, n, name=f"labels in {path}", min_classes=1)  # missing values, unusable dtypes
    return y


def _class_codes(y, path: str, classifier_rows: int | None = None):
    """``(codes 0..K-1, K)`` for the class-geometry commands, whose functions take integer class indices.

    Without a classifier any labels are encoded (strings, gaps, negatives: classes in sorted order).  With one,
    integer labels are its row indices and must hold every row's class; other labels map to its rows in sorted
    order of the class names.
    """
    import numpy as np

    from ._validate import check_labels

    classes, codes = check_labels(y, len(y), name=f"labels in {path}")
    if classifier_rows is None:
        return codes, len(classes)
    if y.dtype.kind in "iu":
        if y.min() < 0 or y.max() >= classifier_rows or len(classes) != classifier_rows:
            raise InvalidParameterError(
                f"--classifier has {classifier_rows} rows (one per class) but labels in {path} hold {len(classes)} "
                f"class(es) in [{y.min()}, {y.max()}]; integer labels index its rows, so every class "
                f"0..{classifier_rows - 1} needs samples. Give the classifier of exactly these classes")
        return y.astype(np.int64), classifier_rows
    if len(classes) != classifier_rows:
        raise InvalidParameterError(f"--classifier has {classifier_rows} rows (one per class) but labels in {path} "
                                    f"hold {len(classes)} classes; give the classifier of exactly these classes "
                                    "(rows in sorted order of the class names)")
    return codes, len(classes)


def _load_array(path: str, flag: str, what: str, how: str, *, torch_ok: bool = False):
    """One array from ``.npy``/``.npz`` (or a torch file when ``torch_ok``) with a FileFormatError naming ``flag``."""
    import zipfile
    from pathlib import Path

    import numpy as np

    from .errors import FileFormatError

    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{flag} {path}: no such file; check the path")
    if p.is_dir():
        raise FileFormatError(f"{flag} {path} is a folder; give the {what} file (save it with {how})")
    suffix = p.suffix.lower()
    if suffix in (".pt", ".pth"):
        if not torch_ok:
            raise FileFormatError(f"{flag} {path}: torch files are not read here; save the {what} with {how}")
        return _load_torch(p, flag, what)
    if suffix not in (".npy", ".npz"):
        more = ", .npz or torch .pt" if torch_ok else " or .npz"
        raise FileFormatError(f"{flag} {path}: {what} are read from .npy{more} files; got {suffix or 'no suffix'!s}. "
                              f"Save them with {how}")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if len(loaded.files) != 1:
                    raise FileFormatError(f"{flag} {path} holds arrays {loaded.files}; save the {what} alone with "
                                          f"{how}")
                loaded = loaded[loaded.files[0]]
    except FileFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{flag} {path}: could not read the {what} ({type(exc).__name__}: {exc}); the file "
                              f"may be truncated or corrupt. Save them again with {how}") from exc
    return loaded


def _load_torch(p, flag: str, what: str):
    from ._runtime import require
    from .errors import FileFormatError

    torch = require("torch", f"reading {flag} {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)  # tensors only: no pickled code runs
    except Exception as exc:  # torch raises many kinds (pickle, zip, runtime) for a bad file
        raise FileFormatError(f"{flag} {p}: could not read it as a torch tensor ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); save the {what} with "
                              "torch.save(y, path) or np.save(path, y)") from exc
    if not isinstance(obj, torch.Tensor):
        raise FileFormatError(f"{flag} {p} holds a {type(obj).__name__}, not a tensor; save the {what} tensor itself "
                              "with torch.save(y, path)")
    return obj


def _print_table(rows: dict) -> None:
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:.6g}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def _add_collapse_parsers(sub) -> None:
    p = sub.add_parser("collapse", help="neural collapse metrics (NC1-NC4) of saved features",
                       description="Neural collapse metrics of features (streamed in row blocks).")
    p.add_argument("features", help="(N, d) features: .npy (memory-mapped), .npz, .parquet or .zarr")
    p.add_argument("--labels", required=True, help=".npy, .npz or torch .pt with N labels (integers, strings, ...)")
    p.add_argument("--classifier", help=".npy with the (K, d) last-layer weights (enables NC2-W, NC3, NC4); integer "
                                        "labels index its rows, other labels map to rows in sorted order")
    p.add_argument("--bias", help=".npy with the (K,) last-layer bias")
    p.add_argument("--key", default=None)
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("-o", "--output", help="write the metrics as JSON (.json)")
    p.set_defaults(func=_cmd_collapse)

    p = sub.add_parser("separation", help="separation fuzziness per layer and the equi-separation fit",
                       description="He & Su separation fuzziness D_l of each layer (in depth order) and the "
                                   "log-linear fit giving the decay ratio rho.")
    p.add_argument("layers", nargs="+", help="one feature file per layer in depth order, or one .npz with one "
                                             "array per layer (stored order)")
    p.add_argument("--labels", required=True, help=".npy, .npz or torch .pt with N labels (integers, strings, ...)")
    p.add_argument("--weighting", choices=["balanced", "imbalanced"], default="balanced")
    p.add_argument("--first-is-input", action="store_true", help="also report the fit without the first layer")
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("-o", "--output", help="write the per-layer table as CSV (.csv)")
    p.set_defaults(func=_cmd_separation)


def _cmd_collapse(args) -> int:
    import json

    import numpy as np

    from .io import atomic_path, check_output, load_embeddings
    from .measures.collapse import neural_collapse, scatter_in_blocks

    if args.output:
        check_output(args.output, (".json",), inputs=[args.features, args.labels, args.classifier, args.bias],
                     what="the metrics")
    _positive(args.batch_size, "--batch-size", "rows")
    if args.bias and not args.classifier:
        raise InvalidParameterError("--bias needs --classifier (the bias belongs to the last-layer weights)")
    H = load_embeddings(args.features, key=args.key)
    W = b = None
    if args.classifier:
        W = _load_array(args.classifier, "--classifier", "weights", "np.save(path, W)")
    if args.bias:
        b = _load_array(args.bias, "--bias", "bias", "np.save(path, b)")
    y = _load_labels(args.labels, len(H))
    codes, K = _class_codes(y, args.labels, len(W) if W is not None and np.ndim(W) == 2 else None)
    stats = scatter_in_blocks(H, codes, K, args.batch_size, balanced=False)  # NC needs no balanced pass
    batches = ((H[lo:lo + args.batch_size], codes[lo:lo + args.batch_size])
               for lo in range(0, len(H), args.batch_size))
    metrics = neural_collapse(stats, W=W, b=b, batches=batches if W is not None else None)
    _print_table(metrics)
    if args.output:
        with atomic_path(args.output) as tmp:
            tmp.write_text(json.dumps(metrics, indent=1))
    return 0


MIN_FIT_LAYERS = 3  # the equi-separation fit is a line through log D: fewer points leave it undetermined


def _cmd_separation(args) -> int:
    import numpy as np

    from .errors import InputShapeError
    from .io import atomic_path, check_output, load_embeddings, load_npz_arrays
    from .measures.collapse import equi_separation_fit, scatter_in_blocks, separation_fuzziness

    if args.output:
        check_output(args.output, (".csv",), inputs=[*args.layers, args.labels], what="the per-layer table")
    _positive(args.batch_size, "--batch-size", "rows")
    if len(args.layers) == 1 and args.layers[0].lower().endswith(".npz"):
        named = load_npz_arrays(args.layers[0])
    else:
        named = [(path, None) for path in args.layers]
    if len(named) < MIN_FIT_LAYERS:
        raise InvalidParameterError(f"separation fits a line through the layers' log D: give at least "
                                    f"{MIN_FIT_LAYERS} layers (files in depth order, or one .npz with an array per "
                                    f"layer); got {len(named)}")
    named = [(name, H if H is not None else load_embeddings(name)) for name, H in named]
    y = _load_labels(args.labels, len(named[0][1]))
    codes, K = _class_codes(y, args.labels)
    rows = []
    for i, (name, H) in enumerate(named):
        if len(H) != len(codes):
            raise InputShapeError(f"layer {name!r} has {len(H)} rows but there are {len(codes)} labels")
        stats = scatter_in_blocks(H, codes, K, args.batch_size, balanced=args.weighting == "balanced")
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
    from .io import atomic_path, check_output, load_embeddings
    from .measures.metrics import column_means, point_metrics

    _check_blocked_args(args)
    check_output(args.output, (".parquet", ".csv"), inputs=[args.embeddings, args.labels], what="the table")
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
        if args.output.lower().endswith(".csv"):
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
                       help="run the study's units (layers, models, seeds, widths, layer pairs, ...) as tasks on "
                            "a Dask LocalCluster of N workers; same tables as in-process")
    where.add_argument("--scheduler", metavar="ADDRESS", help="... or on the Dask scheduler at ADDRESS")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--features", nargs="+", metavar="FILE",
                   help="layerwise on saved features instead of a model: one .npz (each array a layer, in file "
                        "order) or several .npy files (one layer each, in the order given); needs --labels")
    p.add_argument("--labels", help="labels of the feature rows (.npy/.npz/.pt/.txt), for --features")
    p.set_defaults(func=_cmd_study)
    p = sub.add_parser("report", help="write the HTML report of a run folder (or several, overlaid)")
    p.add_argument("run_dir", nargs="+", help="run folder(s); several overlay the same sections in one page")
    p.add_argument("-o", "--output", default=None,
                   help="report file (.html; default RUN_DIR/report.html; required with several runs)")
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
    """A run folder argument must be a writable folder or creatable, never a file (checked before any work)."""
    from .io import check_output_dir

    check_output_dir(out, flag="--out", what="run")


def _study_config(args) -> dict:
    """The study's config: the YAML file (paths relative to it) with ``--features`` / ``--labels`` on top."""
    import os
    from pathlib import Path

    from .studies.base import load_yaml, resolve_paths
    from .studies.registry import get_kind, resolve_config

    raw = resolve_paths(load_yaml(args.config), Path(args.config).resolve().parent,
                        get_kind(args.kind).path_keys) if args.config else {}
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
    if args.local_cluster is not None:  # 0 would silently run in-process, a negative count never starts
        _positive(args.local_cluster, "--local-cluster", "workers")
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
    from pathlib import Path

    from .io import check_output
    from .report import write_report

    runs = args.run_dir
    if len(runs) > 1 and not args.output:
        raise InvalidParameterError(f"a report of {len(runs)} runs needs an output file: add -o report.html (it "
                                    "is not written into any of the run folders)")
    if args.output:
        check_output(args.output, (".html",), what="the report")
    elif Path(runs[0]).is_dir():
        check_output(Path(runs[0]) / "report.html", flag=None, what="the report")
    print(f"report: {write_report(runs if len(runs) > 1 else runs[0], args.output)}")
    return 0


def _add_explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain NNK-classifier predictions by their weighted training neighbours",
                       description="For each query row: the NNK neighbours among the training rows with their "
                                   "weights (the prediction is exactly their weighted vote), class probabilities and "
                                   "a reliability score, as an HTML page (and optionally a CSV table).")
    p.add_argument("train", help="(N, d) training features: .npy, .npz, .parquet or .zarr")
    p.add_argument("queries", help="(n, d) query features from the same model/layer")
    p.add_argument("--labels", required=True, help=".npy with one label per training row")
    p.add_argument("-k", type=int, default=25, help="candidates per query (default 25, the DeepNNK setting)")
    p.add_argument("--kernel", choices=KERNELS, default="cosine")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian bandwidth (default: from the training set)")
    p.add_argument("--image-shape", default=None, help="draw rows as images of this shape, e.g. 28x28 or 8x8")
    p.add_argument("--texts-train", default=None, help="UTF-8 text file, one sentence per training row: shown "
                                                         "beside each neighbour (features of text)")
    p.add_argument("--texts-query", default=None, help="UTF-8 text file, one sentence per query row")
    p.add_argument("--max-queries", type=int, default=100, help="queries drawn on the page (the table has all)")
    p.add_argument("--key", default=None, help="array/column name inside .npz, .parquet or zarr inputs")
    p.add_argument("-o", "--output", required=True, help="HTML page to write")
    p.add_argument("--table", help="also write the table (.csv or .parquet)")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args) -> int:
    from pathlib import Path

    from .io import atomic_path, check_output, load_embeddings
    from .measures.explain import explain, explanation_page, parse_image_shape, read_texts

    inputs = [args.train, args.queries, args.labels, *(p for p in (args.texts_train, args.texts_query) if p)]
    check_output(args.output, (".html",), inputs=inputs, what="the page")
    if args.table:
        check_output(args.table, (".csv", ".parquet"), inputs=[*inputs, args.output], flag="--table",
                     what="the table")
    shape = parse_image_shape(args.image_shape) if args.image_shape else None
    if args.max_queries < 1:
        raise InvalidParameterError(f"--max-queries must be at least 1; got {args.max_queries}")
    X = load_embeddings(args.train, key=args.key)
    Q = load_embeddings(args.queries, key=args.key)
    y = _load_labels(args.labels, len(X))
    if shape is not None and shape[0] * shape[1] != X.shape[1]:
        raise InvalidParameterError(f"--image-shape {args.image_shape} has {shape[0] * shape[1]} pixels but the rows "
                                    f"have {X.shape[1]} features; give the images' shape (8x8 for 64, 28x28 for 784)")
    texts = {name: read_texts(path, len(rows), name=flag, rows=rows_name) if path else None
             for name, path, rows, flag, rows_name in (
                 ("texts_train", args.texts_train, X, "--texts-train", args.train),
                 ("texts_query", args.texts_query, Q, "--texts-query", args.queries))}
    table = explain(X, y, Q, k=args.k, kernel=args.kernel, sigma=args.sigma, **texts)
    page = explanation_page(table, X, Q, image_shape=shape, max_queries=args.max_queries,
                            title=f"NNK explanations: {Path(args.queries).name}")
    with atomic_path(args.output) as tmp:
        tmp.write_text(page, encoding="utf-8")
    if args.table:
        with atomic_path(args.table) as tmp:
            if args.table.lower().endswith(".parquet"):
                table.to_parquet(tmp, index=False)
            else:
                table.to_csv(tmp, index=False)
    per_query = table.groupby("query").first()
    _print_table({"queries": len(per_query), "rows": len(table), "mean_nnk_neighbors": float(per_query.n_neighbors
                  .mean()), "mean_reliability": float(per_query.reliability.mean()),
                  "low_reliability_queries": int((per_query.reliability < 0.5).sum()), "output": args.output})
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="nnkscope", description="Geometry of representations with NNK graphs.")
    parser.add_argument("--version", action="version", version=f"nnkscope {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_graph_parser(sub)
    _add_collapse_parsers(sub)
    _add_metrics_parser(sub)
    _add_query_parser(sub)
    _add_demo_parsers(sub)
    _add_explain_parser(sub)
    _add_compare_parser(sub)
    for p in sub.choices.values():  # also after the command; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr (``--debug``: the traceback instead).

    Exit status: 0 success, 2 an nnkscope error or a file-system failure (the message names the fix), 1 an
    unexpected exception (a bug: the line asks to report it), 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    where = f"nnkscope {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{where}: interrupted (outputs are written atomically: nothing half-written was left)",
              file=sys.stderr)
        return 130
    except NNKScopeError as exc:
        if args.debug:
            raise
        print(f"{where}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not the input: disk full, permissions changed mid-run, ...
        if args.debug:
            raise
        print(f"{where}: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"{where}: error: out of memory; run it blocked (--blocked, for graph and metrics) or on fewer rows",
              file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(f"{where}: internal error: {type(exc).__module__}.{type(exc).__qualname__}: {_one_line(exc)[:300]} "
              f"-- this is a bug in nnkscope; please report it with the traceback shown by adding --debug",
              file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_message(exc: OSError) -> str:
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or _one_line(exc)
    return f"{files + ': ' if files else ''}{what} ({type(exc).__name__}); check the path, its permissions and " \
           "the free disk space, then run it again"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
