"""Run folders: atomic parts, resume after a killed run, corrupt folders, SQL."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("duckdb")

from nnkscope.cli import main  # noqa: E402
from nnkscope.errors import FileFormatError, InvalidParameterError  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402

UNITS = [(layer, epoch) for layer in ("fc1", "fc2") for epoch in (1, 2, 3)]

STUDY = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, pandas as pd
    from nnkscope.store import RunStore

    def unit(layer, epoch):
        r = np.random.default_rng(epoch * 7 + int(layer[-1]))
        return pd.DataFrame({"node": np.arange(5), "value": r.normal(size=5)})

    run, kill_after = sys.argv[1], int(sys.argv[2])
    store = RunStore(run, params={"k": 10})
    done = 0
    for layer in ("fc1", "fc2"):
        for epoch in (1, 2, 3):
            if store.has("points", layer=layer, epoch=epoch):
                continue
            df = unit(layer, epoch)
            if done == kill_after:
                # die in the middle of writing this part: the temporary file exists, the part does not
                orig = pd.DataFrame.to_parquet
                def dying(self, path, *a, **kw):
                    open(path, "wb").write(b"PAR1 half")
                    os.kill(os.getpid(), signal.SIGKILL)
                pd.DataFrame.to_parquet = dying
            store.write("points", df, layer=layer, epoch=epoch)
            done += 1
    print("finished", done)
""")


def _run(tmp_path, run, kill_after):
    script = tmp_path / "study.py"
    script.write_text(STUDY)
    return subprocess.run([sys.executable, str(script), str(run), str(kill_after)], capture_output=True, text=True,
                          timeout=120)


def test_resume_after_a_killed_run_gives_identical_tables(tmp_path):
    ref = _run(tmp_path, tmp_path / "ref", 99)
    assert ref.returncode == 0 and "finished 6" in ref.stdout
    killed = _run(tmp_path, tmp_path / "run", 2)
    assert killed.returncode == -9  # SIGKILL mid-write
    partial = RunStore(tmp_path / "run")
    assert sum(partial.has("points", layer=l, epoch=e) for l, e in UNITS) == 2
    resumed = _run(tmp_path, tmp_path / "run", 99)
    assert "finished 4" in resumed.stdout  # only the missing units were computed
    pd.testing.assert_frame_equal(RunStore(tmp_path / "run").read("points"), RunStore(tmp_path / "ref").read("points"))
    q = RunStore(tmp_path / "run").query("SELECT count(*) AS n, count(DISTINCT layer) AS layers FROM points")
    assert q.to_dict("records") == [{"n": 30, "layers": 2}]


def test_corrupt_and_foreign_folders(tmp_path):
    s = RunStore(tmp_path / "r", params={"a": 1})
    s.write("t", pd.DataFrame({"x": np.arange(3)}), layer="l1")
    with pytest.raises(InvalidParameterError, match="other parameters"):
        RunStore(tmp_path / "r", params={"a": 2})
    (tmp_path / "r" / "t" / "layer=l1" / "part.parquet").write_bytes(b"garbage")
    with pytest.raises(FileFormatError, match="corrupt.*resume"):
        RunStore(tmp_path / "r").read("t")
    (tmp_path / "r" / "manifest.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="corrupt"):
        RunStore(tmp_path / "r")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(FileFormatError, match="not an nnkscope run folder"):
        RunStore(tmp_path / "other")
    with pytest.raises(FileFormatError, match="no manifest"):
        RunStore(tmp_path / "missing", create=False)
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(FileFormatError, match="not an nnkscope run folder"):
        RunStore(tmp_path / "m2")


def test_cli_query(tmp_path, capsys):
    s = RunStore(tmp_path / "r")
    for layer, v in (("a", 1.0), ("b", 3.0)):
        s.write("layers", pd.DataFrame({"D": [v, v * 2]}), layer=layer)
    assert main(["query", str(tmp_path / "r"), "SELECT layer, sum(D) AS s FROM layers GROUP BY layer ORDER BY layer",
                 "-o", str(tmp_path / "q.csv")]) == 0
    assert pd.read_csv(tmp_path / "q.csv").to_dict("records") == [{"layer": "a", "s": 3.0}, {"layer": "b", "s": 9.0}]
    assert main(["query", str(tmp_path / "r"), "SELECT * FROM nope"]) == 2
    assert "Tables: ['layers']" in capsys.readouterr().err
