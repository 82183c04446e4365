"""The blocked (out-of-core) pipeline equals the in-memory one, on any executor, and survives a killed worker."""

import os
import sys
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from helpers import clustered

from nnkscope import HNSWSearch, build_graph, graph_metrics, nnk_graph
from nnkscope.cli import main
from nnkscope.errors import DuplicatePointsError, FileFormatError, InvalidParameterError, NonFiniteError
from nnkscope.executor import InlineExecutor, as_executor
from nnkscope.io import RowSource
from nnkscope.measures.metrics import point_metrics

X = clustered(900, 12, seed=3)


def _same(G, H):
    assert (G.candidates == H.candidates).all()
    assert (G.distances == H.distances).all()
    assert np.abs(G.theta - H.theta).max() <= 1e-12
    assert np.abs(G.errors - H.errors).max() <= 1e-12
    assert (G.status == H.status).all()
    assert G.params["sigma"] == H.params["sigma"]


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_equals_local(tmp_path, kernel, dtype):
    Xd = X.astype(dtype)
    np.save(tmp_path / "x.npy", Xd)
    # blocks and shards that do not divide N, a shard barely larger than k
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 20, kernel=kernel, block_size=128, shard_size=211)
    _same(nnk_graph(Xd, 20, kernel=kernel), parts.to_graph())
    assert len(parts.parts) == 8 and all(p.exists() for p in parts.parts)


def test_zarr_source_and_thread_pool(tmp_path):
    import zarr

    z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, dtype=X.dtype, chunks=(100, 12))
    z[...] = X
    with ThreadPoolExecutor(2) as pool:
        H = build_graph(tmp_path / "x.zarr", tmp_path / "g", 15, block_size=200, shard_size=300,
                        executor=pool).to_graph()
    _same(nnk_graph(X, 15), H)


@pytest.mark.parametrize("duplicates", ["keep", "drop"])
def test_duplicates_across_shards(tmp_path, duplicates):
    # every point has an identical twin in another shard, and a few have many copies in the same shard
    Xd = np.concatenate([X[:300], X[:300], np.repeat(X[:3], 25, axis=0)])
    np.save(tmp_path / "x.npy", Xd)
    G = nnk_graph(Xd, 10, duplicates=duplicates)
    H = build_graph(tmp_path / "x.npy", tmp_path / "g", 10, duplicates=duplicates, block_size=100,
                    shard_size=120).to_graph()
    _same(G, H)
    assert H.params["knn"]["points_with_duplicate"] == G.params["knn"]["points_with_duplicate"] == len(Xd)


def test_duplicates_error_names_the_row(tmp_path):
    Xd = np.concatenate([X[:200], X[150:151]])
    np.save(tmp_path / "x.npy", Xd)
    with pytest.raises(DuplicatePointsError, match="first: row 150, identical to row 200") as blocked:
        build_graph(tmp_path / "x.npy", tmp_path / "g", 10, block_size=64, shard_size=64)
    with pytest.raises(DuplicatePointsError) as local:
        nnk_graph(Xd, 10)
    assert str(blocked.value) == str(local.value)


def test_hnsw_shards_recall(tmp_path):
    np.save(tmp_path / "x.npy", X)
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 15, knn=HNSWSearch(M=16, recall_sample=200),
                        block_size=300, shard_size=300)
    G, E = parts.to_graph(), nnk_graph(X, 15)
    overlap = np.mean([np.intersect1d(a, b).size / 15 for a, b in zip(G.candidates, E.candidates, strict=True)])
    assert G.params["knn"]["recall"] > 0.9
    assert abs(G.params["knn"]["recall"] - overlap) < 0.05  # the sampled recall estimates the true one


def test_ivf_shards(tmp_path):
    from nnkscope import IVFSearch

    np.save(tmp_path / "x.npy", X)
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 15, knn=IVFSearch(nlist=8, nprobe=8, recall_sample=900),
                        block_size=300, shard_size=450)
    assert parts.params["knn"]["recall"] == 1.0  # every cell of every shard probed: exhaustive, hence exact
    _same(nnk_graph(X, 15), parts.to_graph())


def test_metrics_equal_point_metrics(tmp_path):
    y = np.arange(len(X)) % 4
    np.save(tmp_path / "x.npy", X)
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 12, kernel="cosine", duplicates="keep",
                        block_size=256, shard_size=400)
    df = graph_metrics(parts, y)
    ref, summary = point_metrics(X, y, k=12)
    assert sorted(df.columns) == sorted(ref.columns)
    assert df.attrs["curvature_dim"] == summary["curvature_dim"]
    g = df.attrs["graph"]
    assert (g["undirected_edges"], g["isolated_nodes"]) == (summary["undirected_edges"], summary["isolated_nodes"])
    for key in ("dirichlet_energy", "cross_class_edge_fraction"):
        assert g[key] == pytest.approx(summary[key], rel=1e-12), key
    for c in ref.columns:
        a, b = ref[c].to_numpy(), df[c].to_numpy()
        if a.dtype.kind == "f":
            assert np.abs(a - b).max() <= 1e-12, c
        else:
            assert (a == b).all(), c
    assert not (tmp_path / "g" / "tangents").exists()
    with pytest.raises(InvalidParameterError, match="other labels or settings"):
        graph_metrics(parts, (y + 1) % 4 * (np.arange(len(y)) % 2))  # other labels: never reuse stale parts
    pd.testing.assert_frame_equal(graph_metrics(parts, y), df)  # same labels: resumed from the parts


def test_resume_skips_finished_parts(tmp_path):
    np.save(tmp_path / "x.npy", X)
    kw = dict(block_size=300, shard_size=300)
    parts = build_graph(tmp_path / "x.npy", tmp_path / "g", 10, **kw)
    stamps = [p.stat().st_mtime_ns for p in parts.parts]
    os.remove(parts.parts[1])  # as if the run had died before this block
    again = build_graph(tmp_path / "x.npy", tmp_path / "g", 10, **kw)
    assert [p.stat().st_mtime_ns for p in again.parts][::2] == stamps[::2]
    _same(parts.to_graph(), again.to_graph())
    with pytest.raises(InvalidParameterError, match="other settings"):
        build_graph(tmp_path / "x.npy", tmp_path / "g", 11, **kw)
    again.parts[0].write_bytes(b"PAR1 truncated")
    with pytest.raises(FileFormatError, match="delete it and run again"):
        again.to_graph()


def test_bad_inputs(tmp_path):
    bad = X.copy()
    bad[700, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(NonFiniteError, match="of .*bad.npy"):
        build_graph(tmp_path / "bad.npy", tmp_path / "g", 10, block_size=256, shard_size=256)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(InvalidParameterError, match="shard_size"):
        build_graph(tmp_path / "x.npy", tmp_path / "h", 10, shard_size=10)
    with pytest.raises(InvalidParameterError, match="block_size"):
        build_graph(tmp_path / "x.npy", tmp_path / "h", 10, block_size=0)
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        RowSource(str(tmp_path / "t.npy")).read(0, 1)
    with pytest.raises(InvalidParameterError, match="executor must be"):
        as_executor(42)
    assert isinstance(as_executor("inline"), InlineExecutor)


# ---------------------------------------------------------------------------------------------------------------
# a real Dask cluster (worker processes)


def _maybe_die(marker: str, fn, *args):
    """Kill this worker process the first time it runs the solve task of block 1."""
    if fn.__name__ == "_solve_task" and args[1] == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return fn(*args)


class _KillingExecutor(Executor):
    def __init__(self, inner, marker):
        self.inner, self.marker = inner, marker

    def submit(self, fn, /, *args, **kwargs):
        return self.inner.submit(_maybe_die, self.marker, fn, *args)


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed")
    import cloudpickle

    from nnkscope.executor import local_cluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    with local_cluster(2) as client:
        yield client


def test_dask_equals_local_and_survives_a_killed_worker(tmp_path, dask_client):
    np.save(tmp_path / "x.npy", X)
    G = nnk_graph(X, 15)
    kw = dict(block_size=150, shard_size=400)
    _same(G, build_graph(tmp_path / "x.npy", tmp_path / "g", 15, executor=dask_client, **kw).to_graph())
    _same(G, nnk_graph(X, 15, executor=dask_client, block_size=200, work_dir=tmp_path))

    marker = tmp_path / "killed"
    killing = _KillingExecutor(dask_client.get_executor(pure=False), str(marker))
    parts = build_graph(tmp_path / "x.npy", tmp_path / "k", 15, executor=killing, **kw)
    assert marker.exists()  # a worker really died mid-run
    _same(G, parts.to_graph())
    written = sorted(p.name for p in (tmp_path / "k" / "nnk").iterdir())
    assert written == [p.name for p in parts.parts]  # each block once, no temporary leftovers
    # the metric passes on the cluster equal the in-process table
    y = np.arange(len(X)) % 3
    df = graph_metrics(parts, y, executor=dask_client)
    ref, _ = point_metrics(X, y, k=15, kernel="gaussian", duplicates="error")
    for c in ("diameter", "local_id", "curvature", "homogeneity", "loo_error_nnk"):
        assert np.abs(ref[c].to_numpy(float) - df[c].to_numpy(float)).max() <= 1e-12, c


def test_cli_local_cluster(tmp_path, capsys):
    pytest.importorskip("distributed")
    np.save(tmp_path / "x.npy", X)
    rc = main(["graph", str(tmp_path / "x.npy"), "-k", "10", "--local-cluster", "2", "--block-size", "300",
               "--parts-dir", str(tmp_path / "parts"), "--no-progress", "-o", str(tmp_path / "g.npz")])
    assert rc == 0
    from nnkscope import NNKGraph

    _same(nnk_graph(X, 10), NNKGraph.load(tmp_path / "g.npz"))
    assert "blocks" in capsys.readouterr().out


def test_cli_blocked_metrics(tmp_path, capsys):
    import pandas as pd

    y = np.arange(len(X)) % 4
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    rc = main(["metrics", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "-k", "12", "--blocked",
               "--block-size", "250", "--shard-size", "400", "--no-progress", "-o", str(tmp_path / "m.parquet")])
    out = capsys.readouterr().out
    assert rc == 0 and "mean_curvature" in out and "cross_class_edge_fraction" in out
    got = pd.read_parquet(tmp_path / "m.parquet")
    ref, _ = point_metrics(X, y, k=12)
    for c in ref.columns:
        a, b = ref[c].to_numpy(), got[c].to_numpy()
        assert (np.abs(a - b).max() <= 1e-12) if a.dtype.kind == "f" else (a == b).all(), c


def test_parts_of_another_nnkscope_version_are_not_resumed(tmp_path, monkeypatch):
    import nnkscope.engine.pipeline as pipeline

    np.save(tmp_path / "x.npy", X)
    build_graph(tmp_path / "x.npy", tmp_path / "g", 10, block_size=300, shard_size=300)
    monkeypatch.setattr(pipeline, "__version__", "99.0")
    with pytest.raises(InvalidParameterError, match="built by nnkscope .*not 99.0"):
        build_graph(tmp_path / "x.npy", tmp_path / "g", 10, block_size=300, shard_size=300)
