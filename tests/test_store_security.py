"""Run folders a researcher can trust: exact names, a read-only query, no injection, atomic creation, clean temps."""

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("duckdb")

from nnkscope.cli import main  # noqa: E402
from nnkscope.errors import FileFormatError, InvalidParameterError  # noqa: E402
from nnkscope.store import RunStore, _component, _staged  # noqa: E402

NAMES = st.one_of(st.text(), st.text(min_size=60, max_size=200))  # the long ones need the hashed folder form


def _snapshot(root: Path) -> dict:
    """Every file of a folder with its content hash: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---- 4. names round-trip exactly and never collide -------------------------------------------------------------

@settings(max_examples=30)
@given(names=st.lists(NAMES, min_size=1, max_size=4, unique=True), other=NAMES)
def test_any_unicode_name_round_trips_through_write_read_query_has(names, other):
    with tempfile.TemporaryDirectory() as d:
        s = RunStore(Path(d) / "run")
        for i, name in enumerate(names):
            s.write("t", pd.DataFrame({"i": [i]}), model=name, epoch=1)
        assert all(s.has("t", model=name, epoch=1) for name in names)
        assert s.has("t", model=other, epoch=1) == (other in names)
        expect = {name: i for i, name in enumerate(names)}
        t = s.read("t")
        assert dict(zip(t.model, t.i, strict=True)) == expect
        # the query sees the true names, also as a filter (what a WHERE model = '...' in a study relies on)
        q = s.query("SELECT model, i, model = ? AS hit FROM t", [names[-1]])
        assert dict(zip(q.model, q.i, strict=True)) == expect
        assert q[q.hit].i.tolist() == [len(names) - 1]


@given(a=NAMES, b=NAMES)
def test_folder_names_are_injective_even_without_letter_case_and_fit_the_limit(a, b):
    ca, cb = _component("model", a), _component("model", b)
    assert len(ca.encode()) <= 255 and ca.isascii() and "/" not in ca and not ca.endswith(".")
    if a != b:
        assert ca.casefold() != cb.casefold()


def test_slash_space_unicode_and_case_do_not_collide(tmp_path):
    names = ["resnet/v1", "resnet_v1", "res net", "résnet", "ResNet", "resnet", "a" * 300, "a" * 301, "..", ""]
    s = RunStore(tmp_path / "run")
    for i, name in enumerate(names):
        s.write("layers", pd.DataFrame({"i": [i]}), model=name)
    assert len(list((tmp_path / "run" / "layers").iterdir())) == len(names)
    q = s.query("SELECT model, i FROM layers ORDER BY i")
    assert q.model.tolist() == names
    assert s.query("SELECT i FROM layers WHERE model = 'resnet/v1'").i.tolist() == [0]
    with pytest.raises(InvalidParameterError, match="letter case"):
        s.write("Layers", pd.DataFrame({"i": [0]}), model="x")
    with pytest.raises(InvalidParameterError, match="identifiers"):
        s.read("../run")
    with pytest.raises(InvalidParameterError, match="str, int, float or bool"):
        s.write("layers", pd.DataFrame({"i": [0]}), model=None)


def test_fits_are_written_for_names_with_slash_space_and_unicode(tmp_path):
    # the fit selects a model's layers with WHERE model = '<name>'; DuckDB's hive partitioning used to replace the
    # column with the rewritten folder name, so the WHERE found nothing and no fit was written
    from nnkscope.studies.layerwise import measure_layers

    r = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    s = RunStore(tmp_path / "run")
    models = ["resnet/v1", "resnet_v1", "réseau 1"]
    for m in models:
        feats = {f"l{i}": np.eye(3)[y] * (i + 1) + r.normal(size=(60, 3)) for i in range(3)}
        measure_layers(feats, y, s, model_name=m, k=5)
    fits = s.read("fits")
    assert sorted(fits.model) == sorted(models) and (fits.n_layers == 3).all()
    assert sorted(s.read("layers").model.unique()) == sorted(models)


# ---- 6. the query is one read-only SELECT -----------------------------------------------------------------------

@pytest.fixture
def run(tmp_path):
    s = RunStore(tmp_path / "run", params={"k": 3})
    for layer, v in (("a", 1.0), ("b", 3.0)):
        s.write("layers", pd.DataFrame({"D": [v, v * 2]}), layer=layer)
    return s


ATTACKS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM '{run}/layers/layer=a/part.parquet'",
    "COPY (SELECT 1 AS D) TO '{run}/layers/layer=a/part.parquet' (FORMAT parquet)",
    "COPY layers TO '{out}/copied.csv'",
    "SELECT 1; COPY layers TO '{out}/copied.csv'",
    "ATTACH '{out}/new.duckdb' AS db",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "CREATE TABLE z AS SELECT 1",
    "DROP VIEW layers",
    "PRAGMA database_list",
    "EXPLAIN SELECT 1",
    "SELECT * FROM query('COPY layers TO ''{out}/copied.csv''')",
]


@pytest.mark.parametrize("sql", ATTACKS)
def test_query_refuses_everything_but_a_read_only_select(run, tmp_path, sql):
    out = tmp_path / "outside"
    out.mkdir()
    before = _snapshot(run.root)
    # refused as such (saying what is allowed), or a path is no table name
    with pytest.raises(InvalidParameterError, match="allowed|Allowed|does not exist") as err:
        run.query(sql.format(run=run.root, out=out))
    assert "Tables: ['layers']" in str(err.value)
    assert _snapshot(run.root) == before and list(out.iterdir()) == []


def test_query_accepts_select_forms_and_refuses_empty_sql(run):
    assert run.query("WITH t AS (SELECT layer, sum(D) AS s FROM layers GROUP BY layer) SELECT * FROM t ORDER BY "
                     "layer").s.tolist() == [3.0, 9.0]
    assert len(run.query("FROM layers")) == 4
    assert run.query("SELECT count(*) AS n FROM layers WHERE layer = ?", ["b"]).n.tolist() == [2]
    for sql in ("", "   ", "-- just a comment\n", ";"):
        with pytest.raises(InvalidParameterError, match="empty|no statement"):
            run.query(sql)


def test_cli_query_output_checks(run, tmp_path, capsys, monkeypatch):
    root = str(run.root)
    sql = "SELECT layer, sum(D) AS s FROM layers GROUP BY layer ORDER BY layer"
    expect = [{"layer": "a", "s": 3.0}, {"layer": "b", "s": 9.0}]
    for ext, reader in ((".csv", pd.read_csv), (".parquet", pd.read_parquet), (".json", pd.read_json)):
        assert main(["query", root, sql, "-o", str(tmp_path / f"q{ext}")]) == 0
        assert reader(tmp_path / f"q{ext}").to_dict("records") == expect
    capsys.readouterr()

    def must_not_run(*a, **kw):
        raise AssertionError("the query ran although the output was refused")

    monkeypatch.setattr(RunStore, "query", must_not_run)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "afile").write_text("x")
    refused = {str(run.root / "q.csv"): "inside the run folder",
               str(run.root / "layers" / "q.csv"): "inside the run folder",
               str(tmp_path / "run" / ".." / "run" / "x.parquet"): "inside the run folder",
               str(tmp_path / "folder"): "unknown format",
               str(tmp_path / "folder.csv"): "existing folder",
               str(tmp_path / "q.txt"): "unknown format",
               str(tmp_path / "afile" / "q.csv"): "cannot be written"}
    for out, why in refused.items():
        before = _snapshot(run.root)
        assert main(["query", root, sql, "-o", out]) == 2
        err = capsys.readouterr().err
        assert why in err, (out, err)
        assert _snapshot(run.root) == before
    monkeypatch.undo()
    assert main(["query", root, ""]) == 2
    assert "empty" in capsys.readouterr().err


# ---- 7. folder names cannot inject SQL -------------------------------------------------------------------------

def test_crafted_folder_names_are_skipped_by_query_and_report(tmp_path, monkeypatch):
    from nnkscope.report import write_report
    from nnkscope.studies.layerwise import measure_layers

    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)  # where a relative COPY target would land
    r = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    s = RunStore(tmp_path / "run")
    measure_layers({f"l{i}": np.eye(3)[y] * (i + 1) + r.normal(size=(60, 3)) for i in range(3)}, y, s, k=5)
    crafted = "x AS SELECT 1; COPY (SELECT 42 AS pwned) TO 'pwned.csv'; --"
    part = tmp_path / "run" / crafted / "k=v" / "part.parquet"
    part.parent.mkdir(parents=True)
    pd.DataFrame({"x": [1]}).to_parquet(part)
    before = _snapshot(tmp_path / "run")
    assert s.tables() == ["fits", "layers", "neighbors", "points"]
    with pytest.warns(UserWarning, match="not valid table names"):
        assert s.query("SELECT count(*) AS n FROM layers").n.tolist() == [3]
    with pytest.warns(UserWarning), pytest.raises(InvalidParameterError, match="skipped.*COPY"):
        s.query("SELECT * FROM x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = write_report(tmp_path / "run", out=str(tmp_path / "report.html")).read_text()
    assert "separation fuzziness" in page
    assert not (tmp_path / "pwned.csv").exists() and not (tmp_path / "run" / "pwned.csv").exists()
    assert _snapshot(tmp_path / "run") == before


# ---- 8. creating a run folder is atomic ------------------------------------------------------------------------

DIFFERENT, SAME = 20, 10  # rounds where the two processes ask for different / the same parameters


def _create_worker(base, who, barrier, results):
    for i in range(DIFFERENT + SAME):
        barrier.wait(timeout=60)  # both start creating the same new folder together
        try:
            RunStore(Path(base) / f"r{i}", params={"p": who if i < DIFFERENT else 0})
            results.put((i, who, "ok"))
        except InvalidParameterError as exc:
            results.put((i, who, f"params: {exc}"))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test with it
            results.put((i, who, f"other: {type(exc).__name__}: {exc}"))


def test_two_processes_creating_one_run_folder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_create_worker, args=(str(tmp_path), who, barrier, results)) for who in (1, 2)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(2 * (DIFFERENT + SAME))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert time.monotonic() - t0 < 120
    for i in range(DIFFERENT + SAME):
        outcomes = sorted(o for j, _, o in got if j == i)
        assert not any(o.startswith("other") for o in outcomes), outcomes
        manifest = json.loads((tmp_path / f"r{i}" / "manifest.json").read_text())
        if i >= DIFFERENT:  # the same parameters: one creates, the other resumes
            assert outcomes == ["ok", "ok"]
        else:  # exactly one wins, and the manifest holds the winner's parameters
            assert outcomes[0] == "ok" and outcomes[1].startswith("params:") and "other parameters" in outcomes[1]
            winner = next(w for j, w, o in got if j == i and o == "ok")
            assert manifest["params"] == {"p": winner}
        assert sorted(p.name for p in (tmp_path / f"r{i}").iterdir()) == ["manifest.json"]  # no temp left


# ---- temporary files, corrupt files, old folders ---------------------------------------------------------------

KILLED = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    from nnkscope.store import RunStore

    store = RunStore(sys.argv[1])
    def dying(self, path, *a, **kw):
        open(path, "wb").write(b"PAR1 half")
        os.kill(os.getpid(), signal.SIGKILL)
    pd.DataFrame.to_parquet = dying
    store.write("points", pd.DataFrame({"x": [1.0]}), layer="fc1")
""")


def test_temporaries_of_killed_writers_are_removed_on_open_and_live_ones_kept(tmp_path):
    RunStore(tmp_path / "run")
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, timeout=120,
                         env=env)
    assert res.returncode == -9, res.stderr
    left = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert len(left) == 1 and left[0].name.startswith(".part.parquet.")  # the killed writer's temporary file
    # io.atomic_path's temporaries (a report written into the run) hold no lock: removed only once an hour old
    young, old = (tmp_path / "run" / f".report.html.{c * 32}.part" for c in "ab")
    young.write_text("<html")
    old.write_text("<html")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    with _staged(tmp_path / "run" / "t" / "layer=x" / "part.parquet") as live:
        live.write_bytes(b"being written")
        s = RunStore(tmp_path / "run", create=False)
        assert not left[0].exists() and live.exists() and young.exists() and not old.exists()
        assert not s.has("points", layer="fc1") and s.tables() == []
    young.unlink()
    assert [p.name for p in (tmp_path / "run").rglob("*") if p.is_file()] == ["manifest.json"]


def test_corrupt_files_name_the_file_and_the_fix(run):
    part = run.root / "layers" / "layer=a" / "part.parquet"
    part.write_bytes(b"PAR1 garbage")
    for call in (lambda: run.query("SELECT * FROM layers"), lambda: run.read("layers")):
        with pytest.raises(FileFormatError, match="layer=a/part.parquet is corrupt.*delete it and resume"):
            call()
    for text in ("[]", "", "{not json"):
        (run.root / "manifest.json").write_text(text)
        t0 = time.monotonic()
        with pytest.raises(FileFormatError, match="manifest.json is unreadable.*Move the folder aside"):
            RunStore(run.root)
        assert time.monotonic() - t0 < 5  # a fresh file gets a short grace period only (see _read_json)


def test_old_layout_folders_are_read_with_true_names_but_not_resumed(tmp_path):
    old = tmp_path / "old"
    (old / "layers" / "model=resnet_v1").mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"format": "nnkscope.run/1", "params": {"k": 1}}))
    pd.DataFrame({"x": [1.0], "model": ["resnet/v1"]}).to_parquet(old / "layers" / "model=resnet_v1" /
                                                                  "part.parquet")
    s = RunStore(old, create=False)
    assert s.query("SELECT model FROM layers").model.tolist() == ["resnet/v1"]
    assert s.read("layers").model.tolist() == ["resnet/v1"] and not s.writable
    for call in (lambda: s.has("layers", model="resnet/v1"), lambda: s.write("layers", pd.DataFrame(), model="a"),
                 lambda: RunStore(old, params={"k": 1})):
        with pytest.raises(FileFormatError, match="older nnkscope.*new folder"):
            call()
