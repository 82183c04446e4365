"""Embedding loaders and the `nnkscope graph` command."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import clustered

from nnkscope import NNKGraph, nnk_graph
from nnkscope.cli import main
from nnkscope.errors import FileFormatError, InputShapeError
from nnkscope.io import load_embeddings

X = clustered(300, 16, seed=11)


def _write(fmt: str, path, arr=X):
    if fmt == "npy":
        np.save(path, arr)
    elif fmt == "npz":
        np.savez(path, embeddings=arr)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        col = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), arr.shape[1])
        pq.write_table(pa.table({"emb": col, "label": np.arange(len(arr))}), path)
    elif fmt == "zarr":
        import zarr

        z = zarr.open_array(str(path), mode="w", shape=arr.shape, dtype=arr.dtype, chunks=(64, arr.shape[1]))
        z[...] = arr
    return path


@pytest.mark.parametrize("fmt", ["npy", "npz", "parquet", "zarr"])
def test_loaders_round_trip(tmp_path, fmt):
    path = _write(fmt, tmp_path / f"x.{fmt}")
    Y = load_embeddings(path, key="emb" if fmt == "parquet" else None)
    np.testing.assert_array_equal(Y, X)


def test_parquet_numeric_columns(tmp_path):
    import pandas as pd

    pd.DataFrame(X[:, :3], columns=list("abc")).to_parquet(tmp_path / "x.parquet")
    np.testing.assert_array_equal(load_embeddings(tmp_path / "x.parquet"), X[:, :3])


def test_loader_errors(tmp_path):
    np.save(tmp_path / "x.npy", X)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[: len(data) // 3])
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        load_embeddings(tmp_path / "trunc.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        load_embeddings(tmp_path / "junk.npz")
    np.savez(tmp_path / "two.npz", a=X, b=X)
    with pytest.raises(FileFormatError, match="key"):
        load_embeddings(tmp_path / "two.npz")
    with pytest.raises(FileFormatError, match="no array 'c'"):
        load_embeddings(tmp_path / "two.npz", key="c")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(FileFormatError, match="unknown embedding format"):
        load_embeddings(tmp_path / "x.csv")
    with pytest.raises(FileFormatError, match="no such file"):
        load_embeddings(tmp_path / "missing.npy")
    np.save(tmp_path / "flat.npy", X.ravel())
    with pytest.raises(InputShapeError, match="2-D"):
        load_embeddings(tmp_path / "flat.npy")


@pytest.mark.parametrize("out", ["g.npz", "g.parquet"])
def test_cli_graph_builds_the_same_graph(tmp_path, capsys, out):
    src = _write("npy", tmp_path / "x.npy")
    rc = main(["graph", str(src), "-k", "12", "--kernel", "cosine", "-o", str(tmp_path / out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mean_nnk_degree" in printed and "isolated_nodes" in printed
    G = NNKGraph.load(tmp_path / out)
    H = nnk_graph(X, 12, kernel="cosine")
    np.testing.assert_array_equal(G.theta, H.theta)
    np.testing.assert_array_equal(G.candidates, H.candidates)


def test_cli_hnsw_reports_recall(tmp_path, capsys):
    src = _write("zarr", tmp_path / "x.zarr")
    rc = main(["graph", str(src), "-k", "10", "--knn", "hnsw", "--ef-search", "64", "-o", str(tmp_path / "g.npz")])
    assert rc == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("recall")][0]
    assert 0.9 <= float(line.split()[1]) <= 1.0


def test_cli_errors_exit_2_with_the_message(tmp_path, capsys):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    assert main(["graph", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "g.npz")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    np.save(tmp_path / "few.npy", X[:5])
    assert main(["graph", str(tmp_path / "few.npy"), "-k", "10", "-o", str(tmp_path / "g.npz")]) == 2
    assert "needs at least 11 points" in capsys.readouterr().err
    assert not (tmp_path / "g.npz").exists()


def test_cli_entry_point_runs_as_a_program(tmp_path):
    src = _write("npy", tmp_path / "x.npy")
    res = subprocess.run([sys.executable, "-m", "nnkscope.cli", "graph", str(src), "-k", "5", "-o",
                          str(tmp_path / "g.npz")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr  # no progress bar when stderr is not a terminal


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from nnkscope.io import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644  # readable by others, like any new file
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_killed_writer_leaves_a_part_file_that_the_next_write_removes(tmp_path):
    """SIGKILL skips every cleanup; the next write of the same target deletes the orphan (its PID is gone)."""
    import os

    from nnkscope.io import atomic_path

    target = tmp_path / "g.npz"
    code = ("import os, signal, sys\n"
            "from nnkscope.io import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n"
            "    tmp.write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    res = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)
    assert res.returncode == -9
    orphans = list(tmp_path.glob(".g.npz.*.part"))
    assert len(orphans) == 1 and not target.exists()
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"] and target.read_bytes() == b"whole"


def test_which_part_files_count_as_stale(tmp_path):
    """Removed: this host's with a dead PID, and anyone's untouched for STALE_PART_SECONDS.  Kept: live writers
    of this host, fresh files of other hosts (their PIDs mean nothing here) and other targets' files."""
    import os

    from nnkscope.io import STALE_PART_SECONDS, _host_id, atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, timeout=60)
    dead_pid, me, host = f"{int(dead.stdout):08x}", f"{os.getpid():08x}", _host_id()
    other = "0" * 8 if host != "0" * 8 else "1" * 8
    old = STALE_PART_SECONDS + 60
    files = {  # name: (seconds since last modified, expected to survive the next write of out.txt)
        f".out.txt.{dead_pid}{host}{'a' * 16}.part": (0, False),
        f".out.txt.{me}{host}{'b' * 16}.part": (0, True),
        f".out.txt.{me}{host}{'c' * 16}.part": (old, False),
        f".out.txt.{dead_pid}{other}{'d' * 16}.part": (0, True),
        f".out.txt.{dead_pid}{other}{'e' * 16}.part": (old, False),
        f".other.txt.{dead_pid}{host}{'f' * 16}.part": (old, True),
    }
    for name, (age, _) in files.items():
        (tmp_path / name).write_text("x")
        t = (tmp_path / name).stat().st_mtime - age
        os.utime(tmp_path / name, (t, t))
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("new")
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {"out.txt"} | {name for name, (_, keep) in files.items() if keep}


def test_run_folders_recognise_the_temporary_names(tmp_path):
    """RunStore's sweep finds io.atomic_path's temporaries (e.g. a report being written) by their name."""
    from nnkscope.io import atomic_path
    from nnkscope.store import _TEMP

    with atomic_path(tmp_path / "report.html") as tmp:
        assert _TEMP.fullmatch(tmp.name) and tmp.name.startswith(".report.html.")


def test_atomic_path_under_a_file_names_the_obstacle(tmp_path):
    from nnkscope.errors import FileFormatError
    from nnkscope.io import atomic_path

    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(FileFormatError, match=r"f.txt is a file, not a folder"):
        with atomic_path(tmp_path / "f.txt" / "deeper" / "out.csv"):
            pass
