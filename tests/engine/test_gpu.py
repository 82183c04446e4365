"""The accelerator search path: torch proposes the windows, the exact re-ranking decides (CPU run always; CUDA
when a GPU is present)."""

import numpy as np
import pytest
from helpers import clustered

pytest.importorskip("torch")

from nnkscope import (  # noqa: E402
    build_graph,  # noqa: E402
    knn,
    nnk_graph,
)
from nnkscope.engine.gpu import TorchSearch, gpu_available  # noqa: E402
from nnkscope.errors import InvalidParameterError  # noqa: E402

X = clustered(700, 10, seed=5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_windows_give_exact_neighbours(metric, digits):
    # small chunks force the cross-chunk merge; digits are integer data full of distance ties
    for data in (X, digits[:600]):
        ref = knn(data, 12, metric=metric)
        got = knn(data, 12, metric=metric, method=TorchSearch("cpu", block_size=97, db_chunk=150))
        assert (got.indices == ref.indices).all()
        assert (got.distances == ref.distances).all()


def test_torch_search_in_graphs_and_blocks(tmp_path):
    ref = nnk_graph(X, 15)
    assert (nnk_graph(X, 15, knn=TorchSearch("cpu")).theta == ref.theta).all()
    np.save(tmp_path / "x.npy", X)
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 15, knn=TorchSearch("cpu"), block_size=200,
                        shard_size=300)
    assert (parts.to_graph().candidates == ref.candidates).all()


def test_cuda_requested_without_gpu():
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InvalidParameterError, match="no CUDA device"):
        knn(X, 5, method="gpu")


@pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU")
def test_cuda_equals_exact():
    ref = knn(X, 12)
    got = knn(X, 12, method=TorchSearch("cuda"))
    assert (got.indices == ref.indices).all()


def test_the_gpu_benchmark_script_runs_on_the_cpu(tmp_path):
    """bench/gpu.py waits for a session with a device: its CPU mode must keep working (identical candidates)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"
    env = dict(os.environ, OUT=str(tmp_path))
    out = subprocess.run([sys.executable, str(script), "--device", "cpu", "--n", "600", "--d", "16", "--big-n",
                          "1500", "--big-d", "8", "--k", "8"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "gpu.json").read_text())
    assert r["layer"]["candidates_identical"] and r["layer"]["loo_equal"] and r["graph"]["graphs_identical"]
