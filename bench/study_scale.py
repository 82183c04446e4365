"""A study at the scale of real models: one layer's full measurement against its exact kNN alone, and a 12-layer
saved-features study end to end (features on disk), side by side in one run.

Part A times, on one (N, d) layer (cosine, k=20, the layer-wise study's settings), the exact faiss kNN alone
(``faiss.knn`` inner product on unit rows, k + 1) and ``measure_layers`` of that layer (NNK graph, every per-point
metric, LOO, class geometry, label variation), alternating ``--repeats`` times; the ratio is what to read.
``--old SRC`` runs the same measurement with another source tree (e.g. a checkout of an earlier commit) in a
subprocess, interleaved in alternating order, so before and after share the machine's load (``--n-boot 0``:
the layer without its bootstrap intervals).  Part B runs ``measure_layers`` over ``--layers`` layers stored as
``.npy`` files (memory-mapped, one loaded at a time) and reports the wall time and the peak RSS of the process.

    python bench/study_scale.py                         # N = 50,000, d = 768, 12 layers
    python bench/study_scale.py --n 20000 --layers 3    # smaller
    python bench/study_scale.py --old /tmp/base/src     # before vs after
    python bench/study_scale.py --workers --n 20000 --d 256 --layers 4   # part C: 1 vs 2 Dask workers
    python bench/study_scale.py --one study --search ivf  # part B alone, IVF search (recall in the layer table)
    python bench/study_scale.py --one study --search ivf --nprobe 8   # probing 8 of the 256 cells

Part C measures the same layers as tasks on a Dask LocalCluster of 1 and of 2 single-threaded workers (and in
this process with every CPU), and checks that the three ``layers`` tables agree to a relative 1e-12.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# bench/distributed.py is named like the Dask package: keep this folder off the import path (part C needs Dask)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]


def layer_data(n: int, d: int, seed: int):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_data", os.path.join(HERE, "_data.py"))
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    return data.labelled_layer(n, d, seed)  # 10 classes, as in a classification study


def one_layer(n: int, d: int, k: int, repeats: int, n_boot: int | None = None) -> dict:
    """Part A in this process (whatever nnkscope PYTHONPATH gives); ``n_boot``: the intervals' resamples (None:
    measure_layers' default; 0: no intervals)."""
    import faiss
    import numpy as np

    import nnkscope
    from nnkscope._runtime import thread_limit
    from nnkscope.store import RunStore
    from nnkscope.studies.layerwise import measure_layers

    X, y = layer_data(n, d, 0)
    warm = layer_data(2000, d, 1)
    with tempfile.TemporaryDirectory() as tmp:
        measure_layers({"warm": warm[0]}, warm[1], RunStore(f"{tmp}/warm"), k=k)  # JIT compile, not timed
        t_knn, t_layer = [], []
        for r in range(repeats):
            with thread_limit(None):
                Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
                t0 = time.perf_counter()
                faiss.knn(Xn, Xn, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
                t_knn.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            extra = {} if n_boot is None else {"n_boot": n_boot}
            out = measure_layers({"layer": X}, y, RunStore(f"{tmp}/run{r}"), k=k, **extra)
            t_layer.append(time.perf_counter() - t0)
    med = statistics.median
    return {"version": nnkscope.__version__, "source": os.path.dirname(nnkscope.__file__), "N": n, "d": d, "k": k,
            "knn_s": med(t_knn), "layer_s": med(t_layer), "ratio": med(t_layer) / med(t_knn),
            "loo_error_nnk": float(out["layer"]["loo_error_nnk"])}


def many_layers(n: int, d: int, k: int, n_layers: int, search: str = "exact", nprobe: int = 16) -> dict:
    """Part B: a saved-features study over ``n_layers`` .npy files, loaded one at a time, with the exact search
    or an approximate one (``"ivf"`` / ``"hnsw"``: the study's recall column is reported)."""
    import numpy as np

    from nnkscope.engine.neighbors import IVFSearch
    from nnkscope.engine.settings import GraphSettings
    from nnkscope.store import RunStore
    from nnkscope.studies.layerwise import measure_layers

    # IVF with 256 cells (k-means training is nlist x N x d per iteration: 1,024 cells would cost more than the
    # exact search here), trained on 16,384 rows (64 per cell) and probing --nprobe of them; HNSW with the defaults
    knn = IVFSearch(nlist=256, nprobe=nprobe, train_size=16384) if search == "ivf" else search
    settings = GraphSettings(k=k, kernel="cosine", duplicates="keep", knn=knn)  # the study's own default

    with tempfile.TemporaryDirectory() as tmp:
        _, y = layer_data(n, d, 0)
        paths = []
        for i in range(n_layers):
            X, _ = layer_data(n, d, 100 + i)
            paths.append(f"{tmp}/layer{i}.npy")
            np.save(paths[-1], X)
            del X
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        feats = {f"layer{i}": (lambda p=p: np.load(p, mmap_mode="r")) for i, p in enumerate(paths)}
        t0 = time.perf_counter()
        measure_layers(feats, y, RunStore(f"{tmp}/run"), settings=settings)
        wall = time.perf_counter() - t0
        recall = RunStore(f"{tmp}/run", create=False).read("layers")["knn_recall"]
    return {"N": n, "d": d, "k": k, "layers": n_layers, "search": search + (f" (256 cells, {nprobe} probed)"
                                                                                if search == "ivf" else ""),
            "wall_s": wall,
            "per_layer_s": wall / n_layers, "min_recall": float(recall.min()) if recall.notna().any() else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss0}


def _three_ways(run, warm=None) -> dict:
    """``{name: (seconds, result)}`` of ``run(folder, executor)`` in this process (every CPU) and on Dask
    LocalClusters of 1 and of 2 single-threaded workers; neither a cluster's start-up nor ``warm()`` (run in this
    process, or on every worker) is timed."""
    from nnkscope.executor import local_cluster

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in (("in-process", 0), ("1 worker", 1), ("2 workers", 2)):
            with local_cluster(size) if size else contextlib.nullcontext() as client:
                if warm is not None:
                    client.run(warm) if size else warm()
                t0 = time.perf_counter()
                result = run(f"{tmp}/{size}", client)
                out[name] = (time.perf_counter() - t0, result)
    return out


def workers(n: int, d: int, k: int, n_layers: int) -> dict:
    """Part C: the same saved-features layers on a Dask LocalCluster of 1 and of 2 workers (one thread each) and
    in this process (every CPU); the tables must agree to 1e-12 (BLAS thread counts may move the last bits)."""
    from nnkscope.store import RunStore
    from nnkscope.studies.layerwise import measure_layers

    _, y = layer_data(n, d, 0)
    feats = {f"layer{i}": layer_data(n, d, 100 + i)[0] for i in range(n_layers)}

    def run(folder, client):
        measure_layers(feats, y, RunStore(folder), k=k, executor=client)
        t = RunStore(folder, create=False).read("layers")
        return t.drop(columns=["unit_id"], errors="ignore").sort_values("layer").reset_index(drop=True)

    got = _three_ways(run)
    ref = got["in-process"][1]
    same = all(_close(ref, t[ref.columns]) for _, t in got.values())
    return {"N": n, "d": d, "layers": n_layers, "times": {k: t for k, (t, _) in got.items()}, "identical": same}


def units(kind: str) -> dict:
    """Part D: a study kind whose units train models (default: a width sweep of four MLPs on digits) in this
    process, on a Dask LocalCluster of 1 and of 2 single-threaded workers; its tables must be identical.  Every
    worker first runs a small sweep itself: each worker's first imports (torch, numba's cached functions) take
    seconds that are not the study's."""
    from nnkscope.studies.registry import resolve_config, run_study

    cfg = resolve_config(kind, UNIT_CONFIGS[kind])

    def run(folder, client):
        table = run_study(kind, cfg, folder, executor=client)[1]
        return table.sort_values(list(table.columns)).reset_index(drop=True)

    got = _three_ways(run, functools.partial(_warm, kind))
    same = all(got["in-process"][1].equals(t) for _, t in got.values())
    return {"kind": kind, "units": len(cfg.get("widths", [])) or None, "times": {k: t for k, (t, _) in got.items()},
            "identical": same}


def _warm(kind: str) -> None:
    """The warm-up sweep, in this process (on a worker: ``client.run``)."""
    from nnkscope.studies.registry import resolve_config, run_study

    with tempfile.TemporaryDirectory() as tmp:
        run_study(kind, resolve_config(kind, dict(UNIT_CONFIGS[kind], **WARM[kind])), f"{tmp}/warm")


UNIT_CONFIGS = {"width-sweep": {"data": {"name": "digits"}, "widths": [64, 128, 256, 512], "k": 20,
                                "hold_epochs": 5, "max_epochs": 60}}
WARM = {"width-sweep": {"widths": [8, 9], "max_epochs": 1}}  # one unit per worker, run before the clock starts


def _close(a, b) -> bool:
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)
        return True
    except AssertionError:
        return False


def _sub(src: str | None, mode: str, args) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, __file__, "--one", mode, "--n", str(args.n), "--d", str(args.d), "--k", str(args.k),
           "--repeats", "1", "--layers", str(args.layers), "--search", args.search, "--nprobe", str(args.nprobe)]
    if args.n_boot is not None:
        cmd += ["--n-boot", str(args.n_boot)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--old", help="another source tree (its src/ folder) to measure side by side")
    ap.add_argument("--skip-study", action="store_true", help="part A only")
    ap.add_argument("--workers", action="store_true", help="part C only: 1 vs 2 Dask workers (--n, --d, --layers)")
    ap.add_argument("--units", action="store_true",
                    help="part D only: a width sweep's models as tasks, in-process vs 1 vs 2 Dask workers")
    ap.add_argument("--search", default="exact", choices=["exact", "ivf", "hnsw"],
                    help="part B's neighbour search (default exact; ivf/hnsw report the layers' smallest recall)")
    ap.add_argument("--nprobe", type=int, default=16, help="cells probed by --search ivf (of 256)")
    ap.add_argument("--n-boot", type=int, default=None,
                    help="part A: the layer's bootstrap resamples (default: measure_layers' 200; 0: no intervals)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one == "layer":
        print(json.dumps(one_layer(args.n, args.d, args.k, args.repeats, args.n_boot)))
        return
    if args.units:
        r = units("width-sweep")
        t = r["times"]
        print(f"part D: {r['kind']} of {r['units']} models: in-process {t['in-process']:.1f} s, 1 worker "
              f"{t['1 worker']:.1f} s, 2 workers {t['2 workers']:.1f} s: speed-up of 2 workers over in-process "
              f"{t['in-process'] / t['2 workers']:.2f}x; tables identical: {r['identical']}")
        return
    if args.workers:
        r = workers(args.n, args.d, args.k, args.layers)
        t = r["times"]
        print(f"part C: {r['layers']} layers of {r['N']} x {r['d']}: in-process {t['in-process']:.1f} s, "
              f"1 worker {t['1 worker']:.1f} s, 2 workers {t['2 workers']:.1f} s: speed-up of 2 workers over 1 "
              f"{t['1 worker'] / t['2 workers']:.2f}x; tables equal to 1e-12: {r['identical']}")
        return
    if args.one == "study":
        print(json.dumps(many_layers(args.n, args.d, args.k, args.layers, args.search, args.nprobe)))
        return
    boot = "" if args.n_boot is None else f", n_boot={args.n_boot}"
    print(f"part A: one layer {args.n} x {args.d}, k={args.k}, cosine{boot}; {args.repeats} interleaved repeat(s)")
    rows = {"new": [], "old": []}
    for r in range(args.repeats):
        # the order alternates (new old, old new, ...): the first process of a pair ran up to 10 % slower here,
        # whichever code it ran, so a fixed order would bias the comparison
        order = [("new", None), ("old", args.old)] if r % 2 == 0 else [("old", args.old), ("new", None)]
        for name, src in order:
            if name == "new" or args.old:
                rows[name].append(_sub(src, "layer", args))
    for name, rs in rows.items():
        if rs:
            knn, layer = statistics.median(r["knn_s"] for r in rs), statistics.median(r["layer_s"] for r in rs)
            print(f"  {name:>3}: exact kNN {knn:7.2f} s   layer {layer:7.2f} s   layer / kNN {layer / knn:5.2f}   "
                  f"(LOO {rs[0]['loo_error_nnk']:.4f}, {rs[0]['source']})")
    if not args.skip_study:
        r = _sub(None, "study", args)
        recall = "" if r["min_recall"] is None else f", smallest sampled recall@k {r['min_recall']:.3f}"
        print(f"part B: {r['layers']} layers of {r['N']} x {r['d']} from .npy files, {r['search']} search: "
              f"{r['wall_s']:.0f} s ({r['per_layer_s']:.1f} s per layer), peak RSS {r['peak_rss_mb']:.0f} MB{recall}")


if __name__ == "__main__":
    main()
