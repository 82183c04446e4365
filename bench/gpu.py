"""The optional GPU path against the CPU, side by side in one run: one layer and a 10^6-point graph.

Part 1 -- one layer (default 50,000 x 768, k = 20, cosine, ``embedding_like`` data as in ``study_scale.py``):
the exact neighbour search on the CPU (nnkscope's certified search: self-join, float64 re-ranking) against the
same search with its windows proposed on the device (``TorchSearch``: float32 products and ``topk`` on the GPU, the
float64 re-ranking and certificate on the CPU), and the layer's whole measurement (``measure_layers``) with each;
the candidates must be identical and the LOO error equal.

Part 2 -- an NNK graph of ``--big-n`` points (default 10^6 x 64, k = 20): ``nnk_graph`` with the device search
against the CPU's exact search (``--skip-cpu-big`` times the device only: the CPU side is N^2 d flops).

Without a CUDA device it says so and exits 0 (CI has none); ``--device cpu`` runs the same code on the CPU at a
small size, to check the script itself.  Results also go to ``$OUT/gpu.json`` when ``OUT`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _data import labelled_layer  # bench/ is on the path when this script runs (nothing here imports Dask)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def one_layer(n: int, d: int, k: int, device: str) -> dict:
    import numpy as np

    from nnkscope import knn
    from nnkscope.engine.gpu import TorchSearch
    from nnkscope.engine.settings import GraphSettings
    from nnkscope.store import RunStore
    from nnkscope.studies.layerwise import measure_layers

    X, y = labelled_layer(n, d, 0)
    gpu = TorchSearch(device)
    warm, wy = labelled_layer(2000, d, 1)
    knn(warm, k, metric="cosine", method=gpu)  # the device's start-up and kernels, not timed
    t_cpu, a = _timed(lambda: knn(X, k, metric="cosine"))
    t_gpu, b = _timed(lambda: knn(X, k, metric="cosine", method=gpu))
    same = bool(np.array_equal(a.indices, b.indices) and np.array_equal(a.distances, b.distances))
    layer = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, search in (("cpu", "exact"), ("gpu", gpu)):
            s = GraphSettings(k=k, kernel="cosine", duplicates="keep", knn=search)
            measure_layers({"w": warm}, wy, RunStore(f"{tmp}/warm-{name}"), settings=s)
            t, out = _timed(lambda s=s, name=name: measure_layers({"layer": X}, y, RunStore(f"{tmp}/{name}"),
                                                                  settings=s))
            layer[name] = (t, float(out["layer"]["loo_error_nnk"]))
    return {"N": n, "d": d, "k": k, "device": device, "knn_cpu_s": t_cpu, "knn_gpu_s": t_gpu,
            "knn_ratio": t_cpu / t_gpu, "candidates_identical": same, "layer_cpu_s": layer["cpu"][0],
            "layer_gpu_s": layer["gpu"][0], "layer_ratio": layer["cpu"][0] / layer["gpu"][0],
            "loo_equal": layer["cpu"][1] == layer["gpu"][1]}


def big_graph(n: int, d: int, k: int, device: str, skip_cpu: bool) -> dict:
    import numpy as np

    from nnkscope import nnk_graph
    from nnkscope.engine.gpu import TorchSearch

    X, _ = labelled_layer(n, d, 2)
    t_gpu, g = _timed(lambda: nnk_graph(X, k, kernel="cosine", knn=TorchSearch(device), duplicates="keep"))
    out = {"N": n, "d": d, "k": k, "graph_gpu_s": t_gpu, "graph_cpu_s": None, "graph_ratio": None,
           "graphs_identical": None}
    if not skip_cpu:
        t_cpu, c = _timed(lambda: nnk_graph(X, k, kernel="cosine", duplicates="keep"))
        out.update(graph_cpu_s=t_cpu, graph_ratio=t_cpu / t_gpu,
                   graphs_identical=bool(np.array_equal(g.candidates, c.candidates)
                                         and np.array_equal(g.theta, c.theta)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="torch device (cpu: a small check of the script)")
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--big-n", type=int, default=1_000_000)
    ap.add_argument("--big-d", type=int, default=64)
    ap.add_argument("--skip-cpu-big", action="store_true", help="part 2: time the device only")
    args = ap.parse_args()
    from nnkscope.engine.gpu import gpu_available

    if args.device.startswith("cuda") and not gpu_available():
        print("no CUDA device (torch.cuda.is_available() is False): nothing to measure")
        return
    import torch

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), {os.cpu_count()} CPUs")
    r1 = one_layer(args.n, args.d, args.k, args.device)
    print(f"part 1: {r1['N']} x {r1['d']}, k={r1['k']}: exact kNN CPU {r1['knn_cpu_s']:.2f} s vs device "
          f"{r1['knn_gpu_s']:.2f} s ({r1['knn_ratio']:.2f}x, candidates identical: {r1['candidates_identical']}); "
          f"whole layer CPU {r1['layer_cpu_s']:.2f} s vs device {r1['layer_gpu_s']:.2f} s "
          f"({r1['layer_ratio']:.2f}x, LOO equal: {r1['loo_equal']})", flush=True)
    r2 = big_graph(args.big_n, args.big_d, args.k, args.device, args.skip_cpu_big)
    cpu = "not run" if r2["graph_cpu_s"] is None else (f"{r2['graph_cpu_s']:.1f} s ({r2['graph_ratio']:.2f}x, "
                                                        f"identical: {r2['graphs_identical']})")
    print(f"part 2: NNK graph of {r2['N']} x {r2['d']}: device {r2['graph_gpu_s']:.1f} s, CPU {cpu}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu.json"), "w") as fh:
            json.dump({"device": name, "layer": r1, "graph": r2}, fh, indent=1)


if __name__ == "__main__":
    main()
