"""A study's units as tasks: a 2-worker Dask cluster writes the same tables as the in-process run."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from nnkscope.executor import local_cluster  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.layerwise import measure_layers  # noqa: E402


def test_layers_on_a_local_cluster_equal_the_in_process_run(tmp_path):
    r = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 50)
    codes = np.repeat([0, 1, 2], 50)
    feats = {f"layer{i}": np.c_[np.eye(3)[codes] * i, r.normal(size=(150, 3))] for i in range(4)}
    inline = RunStore(tmp_path / "inline")
    measure_layers(feats, y, inline, k=8)
    with local_cluster(2, threads_per_worker=1) as client:
        dist = RunStore(tmp_path / "dask")
        measure_layers(feats, y, dist, k=8, executor=client)
    for table in ("layers", "points", "fits"):
        a = inline.read(table).sort_values(["layer"] if "layer" in inline.read(table) else ["model"])
        b = dist.read(table).sort_values(["layer"] if "layer" in dist.read(table) else ["model"])
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert not (tmp_path / "dask" / ".features").exists()  # the spilled layers are removed
