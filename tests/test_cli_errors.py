"""Every bad input to the CLI ends in one specific line naming the fix, a non-zero exit and no traceback; no
command writes over its inputs, and outputs that cannot be written are refused before any work is done."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnkscope.cli as cli
from nnkscope.cli import main

N, D = 60, 5


@pytest.fixture
def data(tmp_path):
    """Embeddings, integer and string labels of the same three classes, a plain file to misuse as a folder."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), N // 3)
    X = rng.normal(size=(N, D)) + 3 * np.eye(D)[y]
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "ys.npy", np.array(["cat", "dog", "emu"])[y])
    mu = np.array([X[y == c].mean(0) for c in range(3)])[y]  # within-class spread halves per layer: D falls by 4
    np.savez(tmp_path / "layers.npz", **{f"l{i}": mu + 0.5**i * (X - mu) for i in range(4)})
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    return tmp_path


def fails(capsys, argv, *fragments, rc=2):
    """Run the CLI, expect exit ``rc`` and one stderr line holding every fragment, and no traceback."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == rc, err
    assert err.startswith(f"nnkscope {argv[0]}: "), err
    assert len(err.strip().splitlines()) == 1, err
    for f in fragments:
        assert f in err, err
    return err


def no_work(monkeypatch):
    """Make any input read or study run fail loudly: a check that must come first then shows as exit 1."""
    def boom(*a, **k):
        raise AssertionError("the command started working before checking its output")

    monkeypatch.setattr("nnkscope.io.load_embeddings", boom)
    monkeypatch.setattr("nnkscope.studies.registry.run_study", boom)


# --------------------------------------------------------------------------------------------------------------
# outputs: checked before any work, never an input, never a folder, the right format


def _commands(d):
    """Each command with an output, as ``(argv without the output, output flag, a valid output name)``."""
    return {
        "graph": (["graph", d / "x.npy", "-k", "5"], "-o", "g.npz"),
        "metrics": (["metrics", d / "x.npy", "-k", "5"], "-o", "m.parquet"),
        "collapse": (["collapse", d / "x.npy", "--labels", d / "y.npy"], "-o", "c.json"),
        "separation": (["separation", d / "layers.npz", "--labels", d / "y.npy"], "-o", "s.csv"),
        "report": (["report", d / "no-run"], "-o", "r.html"),
        "study": (["study", "width-sweep"], "--out", "run"),
        "demo": (["demo"], "--out", "run"),
    }


@pytest.mark.parametrize("cmd", ["graph", "metrics", "collapse", "separation", "report", "study", "demo"])
def test_unwritable_output_is_refused_before_any_work(data, capsys, monkeypatch, cmd):
    no_work(monkeypatch)
    argv, flag, name = _commands(data)[cmd]
    out = data / "file.txt" / "sub" / name  # a regular file where a folder must be: fails even for root
    fails(capsys, [*argv, flag, out], f"{flag} {out}: cannot create it because {data / 'file.txt'} is a file")


@pytest.mark.parametrize("cmd", ["graph", "metrics", "collapse", "separation", "report"])
def test_output_naming_a_folder_is_refused(data, capsys, monkeypatch, cmd):
    no_work(monkeypatch)
    argv, flag, name = _commands(data)[cmd]
    fails(capsys, [*argv, flag, data / "folder"], f"-o {data / 'folder'} is a folder; give a file name, e.g. "
                                                  f"{data / 'folder' / 'out'}{Path(name).suffix}")


@pytest.mark.parametrize("cmd, bad, allowed", [("graph", "g.txt", ".npz or .parquet"),
                                               ("metrics", "out.txt", ".parquet or .csv"),
                                               ("collapse", "c.csv", ".json"), ("separation", "s.json", ".csv"),
                                               ("report", "r.htm", ".html")])
def test_output_format_is_checked_first(data, capsys, monkeypatch, cmd, bad, allowed):
    no_work(monkeypatch)
    argv, _, _ = _commands(data)[cmd]
    fails(capsys, [*argv, "-o", data / bad], f"is written as {allowed}; got '{Path(bad).suffix}'")
    assert not (data / bad).exists()


def test_no_command_writes_over_its_input(data, capsys):
    X = np.load(data / "x.npy")
    np.savez(data / "x.npz", X)
    before = (data / "x.npz").read_bytes()
    os.symlink(data / "x.npz", data / "link.npz")
    os.link(data / "x.npz", data / "hard.npz")
    for out in ("x.npz", "link.npz", "hard.npz", "sub/../x.npz"):
        fails(capsys, ["graph", data / "x.npz", "-k", "5", "-o", data / out], "writing it would destroy the input")
    fails(capsys, ["graph", data / "link.npz", "-k", "5", "-o", data / "hard.npz"], "is the input")
    import pandas as pd

    pd.DataFrame(X, columns=list("abcde")).to_parquet(data / "x.parquet")
    fails(capsys, ["metrics", data / "x.parquet", "-k", "5", "-o", data / "x.parquet"], "is the input")
    fails(capsys, ["graph", data / "x.parquet", "-k", "5", "-o", data / "x.parquet"], "is the input")
    fails(capsys, ["metrics", data / "x.npy", "-k", "5", "-o", data / "x.npy"], "is written as .parquet or .csv")
    assert (data / "x.npz").read_bytes() == before
    np.testing.assert_array_equal(np.load(data / "x.npy"), X)


def test_the_output_helper_serves_any_command(data):
    """check_output is what `query -o` can use as well (a CSV that is not one of the inputs)."""
    from nnkscope.errors import FileFormatError, InvalidParameterError
    from nnkscope.io import check_output, check_output_dir

    assert check_output(data / "new" / "deeper" / "q.csv", (".csv",)) == data / "new" / "deeper" / "q.csv"
    assert not (data / "new").exists()  # nothing is created by a check
    with pytest.raises(FileFormatError, match="is a file"):
        check_output(data / "file.txt" / "q.csv", (".csv",))
    with pytest.raises(InvalidParameterError, match="is written as .csv"):
        check_output(data / "q.parquet", (".csv",))
    with pytest.raises(InvalidParameterError, match="is the input"):
        check_output(data / "y.npy", (), inputs=[None, data / "y.npy"])
    with pytest.raises(InvalidParameterError, match="is a file; give a folder"):
        check_output_dir(data / "file.txt")
    assert check_output_dir(data / "folder") == data / "folder"
    assert sorted(p.name for p in data.iterdir()) == ["file.txt", "folder", "layers.npz", "x.npy", "y.npy",
                                                      "ys.npy"]  # no probe file left behind


def test_parts_dir_without_a_blocked_run_is_an_error(data, capsys):
    for cmd, out in (("graph", "g.npz"), ("metrics", "m.parquet")):
        fails(capsys, [cmd, data / "x.npy", "-k", "5", "--parts-dir", data / "parts", "-o", data / out],
              "--parts-dir only applies to a blocked run; add --blocked")
        fails(capsys, [cmd, data / "x.npy", "-k", "5", "--block-size", "10", "--shard-size", "20", "-o",
                       data / out], "--block-size and --shard-size only apply to a blocked run")
    fails(capsys, ["graph", data / "x.npy", "--blocked", "--parts-dir", data / "file.txt", "-o", data / "g.npz"],
          "--parts-dir", "is a file; give a folder for the parts folder")
    fails(capsys, ["graph", data / "x.npy", "--local-cluster", "0", "-o", data / "g.npz"],
          "--local-cluster must be a positive number of workers; got 0")  # 0 used to mean "not blocked"
    fails(capsys, ["graph", data / "x.npy", "--blocked", "--block-size", "0", "-o", data / "g.npz"],
          "--block-size must be a positive number of rows")
    assert not (data / "parts").exists() and not (data / "g.npz").exists()


def test_key_with_a_npy_input(data, capsys):
    msg = "is a .npy file, which holds one array: drop key='e' (CLI: --key)"
    fails(capsys, ["graph", data / "x.npy", "--key", "e", "-o", data / "g.npz"], msg)
    fails(capsys, ["graph", data / "x.npy", "--key", "e", "--blocked", "-o", data / "g.npz"], msg)
    fails(capsys, ["metrics", data / "x.npy", "--key", "e", "-o", data / "m.parquet"], msg)


# --------------------------------------------------------------------------------------------------------------
# labels and side inputs of the class-geometry commands


def test_string_and_torch_labels_give_the_integer_labels_results(data, capsys):
    torch = pytest.importorskip("torch")
    torch.save(torch.from_numpy(np.load(data / "y.npy")), data / "y.pt")
    results = []
    for labels in ("y.npy", "ys.npy", "y.pt"):
        assert main(["collapse", str(data / "x.npy"), "--labels", str(data / labels), "-o",
                     str(data / f"{labels}.json")]) == 0
        results.append(json.loads((data / f"{labels}.json").read_text()))
    assert results[0] == results[1] == results[2]  # same classes, same grouping: the same numbers
    capsys.readouterr()
    for labels in ("y.npy", "ys.npy"):
        assert main(["separation", str(data / "layers.npz"), "--labels", str(data / labels)]) == 0
        results.append(capsys.readouterr().out)
    assert results[-1] == results[-2] and "rho = 0.2500" in results[-1]


def test_bad_label_files(data, capsys):
    x = data / "x.npy"
    fails(capsys, ["collapse", x, "--labels", data / "nope.npy"], "--labels", "nope.npy: no such file")
    fails(capsys, ["collapse", x, "--labels", data / "file.txt"], "labels are read from .npy, .npz or torch .pt")
    fails(capsys, ["collapse", x, "--labels", data / "layers.npz"], "holds arrays ['l0', 'l1', 'l2', 'l3']")
    np.save(data / "yn.npy", np.r_[np.nan, np.zeros(N - 1)])
    fails(capsys, ["separation", data / "layers.npz", "--labels", data / "yn.npy"], "NaN/inf labels (first: row 0)")
    np.save(data / "y1.npy", np.zeros(N, int))
    fails(capsys, ["collapse", x, "--labels", data / "y1.npy"], f"labels in {data / 'y1.npy'} holds",
          "at least 2")
    torch = pytest.importorskip("torch")
    torch.save({"y": torch.zeros(N)}, data / "state.pt")
    fails(capsys, ["collapse", x, "--labels", data / "state.pt"], "holds a dict, not a tensor")
    (data / "junk.pt").write_bytes(b"no torch file")
    fails(capsys, ["collapse", x, "--labels", data / "junk.pt"], "could not read it as a torch tensor")


def test_classifier_and_bias_files(data, capsys):
    x, y = data / "x.npy", data / "y.npy"
    fails(capsys, ["collapse", x, "--labels", y, "--classifier", data / "missing.npy"],
          f"--classifier {data / 'missing.npy'}: no such file; check the path")
    np.save(data / "w.npy", np.ones((5, D)))
    fails(capsys, ["collapse", x, "--labels", y, "--classifier", data / "w.npy"],
          "--classifier has 5 rows (one per class) but labels in", "hold 3 class(es)")
    fails(capsys, ["collapse", x, "--labels", data / "ys.npy", "--classifier", data / "w.npy"],
          "--classifier has 5 rows (one per class)", "hold 3 classes")
    fails(capsys, ["collapse", x, "--labels", y, "--bias", data / "missing.npy"], "--bias needs --classifier")
    np.save(data / "w3.npy", np.ones((3, D)))
    (data / "w3.npy").write_bytes((data / "w3.npy").read_bytes()[:150])  # header and part of the data
    fails(capsys, ["collapse", x, "--labels", y, "--classifier", data / "w3.npy"], "could not read the weights",
          "truncated or corrupt")


def test_batch_size_must_be_positive(data, capsys):
    for bs in ("0", "-3"):
        fails(capsys, ["collapse", data / "x.npy", "--labels", data / "y.npy", "--batch-size", bs],
              f"--batch-size must be a positive number of rows; got {bs}")
        fails(capsys, ["separation", data / "layers.npz", "--labels", data / "y.npy", "--batch-size", bs],
              f"--batch-size must be a positive number of rows; got {bs}")


def test_separation_inputs(data, capsys):
    raw = (data / "layers.npz").read_bytes()
    (data / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    fails(capsys, ["separation", data / "trunc.npz", "--labels", data / "y.npy"], "could not read arrays",
          "truncated or corrupt")
    fails(capsys, ["separation", data / "x.npy", data / "x.npy", "--labels", data / "y.npy"],
          "give at least 3 layers", "got 2")
    np.save(data / "short.npy", np.zeros((10, D)))
    fails(capsys, ["separation", data / "x.npy", data / "x.npy", data / "short.npy", "--labels", data / "y.npy"],
          "has 10 rows but there are 60 labels")


# --------------------------------------------------------------------------------------------------------------
# studies: config files and values (checked by the library; here through the CLI), run folders


@pytest.mark.parametrize("text, message", [
    (b"k: \xff\n", "is not UTF-8 text"),
    (b"k: 5\nk: 6\n", "duplicate key 'k' at line 2"),
    (b"eval_per_class: 0\n", "training.eval_per_class must be an integer in [1, inf]; got 0"),
    (b"data:\n  test_size: 1.5\n", "training.data.test_size must be a number in (0, 1); got 1.5"),
    (b"train:\n  epochs: -1\n", "training.train.epochs must be an integer in [0, inf]; got -1"),
])
def test_study_config_errors(data, capsys, text, message):
    (data / "c.yaml").write_bytes(text)
    fails(capsys, ["study", "training", "--config", data / "c.yaml", "--out", data / "run"], message)
    assert not (data / "run").exists()


def test_study_and_demo_folders(data, capsys):
    fails(capsys, ["study", "training", "--config", data / "folder", "--out", data / "run"],
          "is a folder; --config takes a YAML file")
    fails(capsys, ["study", "training", "--out", data / "file.txt"], "is a file; give a folder for the run")
    fails(capsys, ["demo", "--out", data / "file.txt"], f"--out {data / 'file.txt'} is a file; give a folder")


def test_study_local_cluster_must_have_workers(data, capsys, monkeypatch):
    no_work(monkeypatch)
    for n in ("0", "-1"):  # 0 used to run in-process silently, -1 to hang
        fails(capsys, ["study", "width-sweep", "--out", data / "run", "--local-cluster", n],
              f"--local-cluster must be a positive number of workers; got {n}")


def test_query_with_empty_sql(data, capsys):
    import pandas as pd

    from nnkscope.store import RunStore

    RunStore(data / "run", params={}).write("points", pd.DataFrame({"x": [1.0]}), layer="a")
    for sql in ("", "   "):
        fails(capsys, ["query", data / "run", sql], "the SQL query is empty", "e.g. 'SELECT * FROM points")
    fails(capsys, ["query", data / "run", "SELECT 1", "-o", data / "file.txt" / "q.csv"], "cannot be written",
          "is a file, not a folder")  # the query command's own check, on io's messages


# --------------------------------------------------------------------------------------------------------------
# misleading messages


def test_tau_of_one_or_more(data, capsys):
    fails(capsys, ["graph", data / "x.npy", "-k", "5", "--tau", "1", "-o", data / "g.npz"],
          "tau must lie in [0, 1); got 1.0", "prunes every candidate")
    with pytest.raises(SystemExit) as exc:  # metrics has no tau: argparse says so (usage, exit 2)
        main(["metrics", str(data / "x.npy"), "--tau", "1", "-o", str(data / "m.parquet")])
    assert exc.value.code == 2 and "unrecognized arguments: --tau 1" in capsys.readouterr().err


def test_non_finite_hint_reads_as_python(data, capsys):
    X = np.load(data / "x.npy")
    X[3, 1] = np.nan
    np.save(data / "nan.npy", X)
    err = fails(capsys, ["graph", data / "nan.npy", "-k", "5", "-o", data / "g.npz"],
                "embeddings in nan.npy contains 1 NaN/inf value(s) in 1 row(s) (first: row 3)",
                "e.g. X = X[np.isfinite(X).all(axis=1)]")
    assert "embeddings in nan.npy =" not in err and "np.isfinite(embeddings" not in err
    np.save(data / "flat.npy", X.ravel())
    err = fails(capsys, ["graph", data / "flat.npy", "-o", data / "g.npz"], "Use X.reshape(-1, 1) to flatten it")


@pytest.mark.slow
def test_a_diverged_model_is_named_with_its_layer(data, capsys):
    (data / "c.yaml").write_text("train:\n  epochs: 1\n  lr: 1.0e+12\neval_per_class: 10\nk: 5\n")
    err = fails(capsys, ["study", "layerwise", "--config", data / "c.yaml", "--out", data / "run", "--no-report"],
                "training diverged or overflowed. Lower the learning rate (study config: train.lr)")
    import re

    assert re.search(r"layer 'blocks\.\d' of model 'mlp' at epoch 1: 100 of 100 rows hold NaN/inf", err), err


# --------------------------------------------------------------------------------------------------------------
# what is left: the catch-all, interrupts, the environment


def _raising(exc):
    def cmd(args):
        raise exc
    return cmd


def test_unexpected_exception_is_one_line_asking_for_a_report(data, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_cmd_report", _raising(RuntimeError("kaboom\nsecond line")))
    err = fails(capsys, ["report", data], "internal error: builtins.RuntimeError: kaboom second line",
                "this is a bug in nnkscope; please report it", "--debug", rc=1)
    assert "Traceback" not in err
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["--debug", "report", str(data)])
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["report", str(data), "--debug"])


def test_interrupt_and_environment_failures(data, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_cmd_report", _raising(KeyboardInterrupt()))
    fails(capsys, ["report", data], "interrupted", rc=130)
    monkeypatch.setattr(cli, "_cmd_report", _raising(OSError(28, "No space left on device", "/x/part")))
    fails(capsys, ["report", data], "/x/part: No space left on device (OSError); check the path")
    monkeypatch.setattr(cli, "_cmd_report", _raising(MemoryError()))
    fails(capsys, ["report", data], "out of memory")


def test_the_program_prints_no_traceback(data):
    """The real entry point, in a process of its own: specific errors, and the catch-all for a bug."""
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])}

    def run(*args):
        res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)
        assert "Traceback" not in res.stdout + res.stderr
        return res

    res = run("-m", "nnkscope.cli", "graph", str(data / "x.npy"), "-o", str(data / "file.txt" / "g.npz"))
    assert res.returncode == 2 and "is a file, not a folder" in res.stderr
    res = run("-m", "nnkscope.cli", "collapse", str(data / "x.npy"), "--labels", str(data / "y.npy"),
              "--batch-size", "0")
    assert res.returncode == 2 and "--batch-size must be a positive number" in res.stderr
    res = run("-c", "import sys, nnkscope.cli as c\n"
                    "def bad(args): return {}['missing']\n"
                    "c._cmd_report = bad\n"
                    f"sys.exit(c.main(['report', {str(data)!r}]))")
    assert res.returncode == 1 and "internal error: builtins.KeyError" in res.stderr
