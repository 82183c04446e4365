"""A study's units as tasks: a 2-worker Dask cluster writes the same tables as the in-process run."""

import inspect

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from nnkscope.errors import TooFewPointsError  # noqa: E402
from nnkscope.executor import local_cluster  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.layerwise import measure_layers  # noqa: E402
from nnkscope.studies.registry import KINDS, resolve_config, run_study  # noqa: E402

from .test_kinds import CONFIGS, _config  # noqa: E402


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


UNIT_KINDS = [kind for kind, study in KINDS.items() if "executor" in inspect.signature(study.run).parameters]


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2, threads_per_worker=1) as client:
        yield client


def _sorted(t: pd.DataFrame) -> pd.DataFrame:
    return t.sort_values(list(t.columns), kind="stable").reset_index(drop=True)


def test_every_study_kind_takes_an_executor():
    assert set(UNIT_KINDS) == set(KINDS)


@pytest.mark.parametrize("kind", UNIT_KINDS)
def test_study_units_on_a_local_cluster_equal_the_in_process_run(tmp_path, cluster, kind):
    cfg = resolve_config(kind, _config(kind, tmp_path))
    inline, table = run_study(kind, cfg, tmp_path / "inline")
    dist, dist_table = run_study(kind, cfg, tmp_path / "dask", executor=cluster)
    pd.testing.assert_frame_equal(_sorted(table), _sorted(dist_table))
    written = [t for t in KINDS[kind].tables if t in inline.tables()]
    assert written and set(dist.tables()) == set(inline.tables())
    for name in inline.tables():
        pd.testing.assert_frame_equal(_sorted(inline.read(name)), _sorted(dist.read(name)))


def test_a_failing_unit_names_itself(tmp_path, cluster):
    """A unit's error reaches the caller as the same nnkscope error, naming the unit, from a worker as in-process."""
    cfg = resolve_config("width-sweep", dict(CONFIGS["width-sweep"], data={"name": "digits", "n_train": 6,
                                                                           "n_test": 20}))
    for executor in (None, cluster):
        with pytest.raises(TooFewPointsError, match=r"^unit width=(8|32): k=8 needs at least 9 points"):
            run_study("width-sweep", cfg, tmp_path / str(executor is None), executor=executor)


def _read_file(cfg):
    return int(open(cfg["path"]).read())


def _read_unit(cfg, store, shared, i):
    return shared + i


def test_units_on_a_pool_never_reuse_an_earlier_calls_prepared_value(tmp_path):
    """Workers keep what units share only within one call: a long-lived pool must not serve old file contents."""
    from concurrent.futures import ThreadPoolExecutor

    from nnkscope.studies.common import run_units

    store = RunStore(tmp_path / "run")
    path = tmp_path / "value.txt"
    path.write_text("10")
    cfg = {"path": str(path)}
    with ThreadPoolExecutor(2) as pool:
        first = run_units(_read_unit, _read_file, cfg, store, [{"i": 0}, {"i": 1}, {"i": 2}], executor=pool)
        path.write_text("20")  # same config, other content
        second = run_units(_read_unit, _read_file, cfg, store, [{"i": 0}, {"i": 1}], executor=pool)
    assert first == [10, 11, 12] and second == [20, 21]


def _cpus_unit(cfg, store, shared, i):
    import numba

    from nnkscope._runtime import resolve_n_jobs

    return resolve_n_jobs(None), numba.get_num_threads()


def _nothing(cfg):
    return None


def test_a_unit_on_a_pool_gets_one_cpu_and_in_process_the_callers_threads(tmp_path):
    """On workers a unit's nested "every CPU" defaults mean its budget of 1, or N tasks would each claim N cores."""
    from concurrent.futures import ThreadPoolExecutor

    import numba

    from nnkscope._runtime import _CPU_BUDGET, available_cpus
    from nnkscope.studies.common import run_units

    store = RunStore(tmp_path / "run")
    todo = [{"i": 0}, {"i": 1}]
    with ThreadPoolExecutor(2) as pool:
        assert run_units(_cpus_unit, _nothing, {}, store, todo, executor=pool) == [(1, 1), (1, 1)]
    here = (available_cpus(), numba.get_num_threads())
    assert run_units(_cpus_unit, _nothing, {}, store, todo) == [here, here]
    assert _CPU_BUDGET.get() is None  # no budget leaks into the caller


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    import distributed

    from nnkscope.errors import SchedulerConnectionError
    from nnkscope.executor import connect

    def refused(address, *a, **kw):
        raise OSError(f"Timed out trying to connect to {address} after 30 s")

    monkeypatch.setattr(distributed, "Client", refused)
    with pytest.raises(SchedulerConnectionError, match=r"cannot reach a Dask scheduler at 'tcp://10\.0\.0\.9:8786'.*"
                                                        r"dask scheduler.*--local-cluster N"):
        with connect("tcp://10.0.0.9:8786"):
            pass


def test_a_stopped_stability_study_resumes_with_the_runs_not_yet_saved(tmp_path):
    import shutil

    cfg = resolve_config("stability", _config("stability", tmp_path))
    _, table = run_study("stability", cfg, tmp_path / "run")
    runs = tmp_path / "run" / "stability_runs"
    parts = sorted(runs.rglob("part.parquet"))
    assert len(parts) == 4  # (true, shuffled) x 2 seeds
    # a study stopped after three of its runs: no comparison yet, one run missing
    for name in ("stability", "stability_points"):
        shutil.rmtree(tmp_path / "run" / name)
    lost = parts[1]
    shutil.rmtree(lost.parent)
    kept = {p: p.stat().st_mtime_ns for p in parts if p != lost}
    _, again = run_study("stability", cfg, tmp_path / "run")
    assert {p: p.stat().st_mtime_ns for p in kept} == kept and lost.exists()  # only the lost run was redone
    pd.testing.assert_frame_equal(table.reset_index(drop=True), again.reset_index(drop=True))
