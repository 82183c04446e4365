"""The README's "Analyse your own model" section runs as written: its snippets, in order, in an empty folder.

Python blocks run in one shared session (a block whose first line is ``# file: NAME`` is written to that file
instead), YAML blocks marked the same way are written to their file, and every ``nnkscope ...`` line of a bash
block runs through the CLI and must succeed.
"""

import re
import shlex
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")
pytest.importorskip("yaml")

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Analyse your own model"


def _blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end > 0 else None]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_three_routes():
    kinds = [lang for lang, _ in _blocks()]
    text = "".join(body for _, body in _blocks())
    assert {"python", "yaml", "bash"} <= set(kinds)
    assert "--config study.yaml" in text and "--features feats.npz" in text and "nnkscope.analyze(" in text
    assert "nnkscope compare" in text


def test_readme_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    from nnkscope.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "__readme__"}
    ran = {"python": 0, "bash": 0}
    for lang, body in _blocks():
        first = body.splitlines()[0] if body.strip() else ""
        marker = re.match(r"#\s*file:\s*(\S+)", first)
        if marker:
            (tmp_path / marker.group(1)).write_text(body)
            continue
        if lang == "python":
            exec(compile(body, f"README.md ({SECTION})", "exec"), namespace)
            ran["python"] += 1
        elif lang == "bash":
            for line in body.splitlines():
                argv = shlex.split(line, comments=True)
                if not argv:
                    continue
                assert argv[0] == "nnkscope", f"README bash lines are nnkscope commands: {line}"
                assert main(argv[1:]) == 0, f"failed: {line}\n{capsys.readouterr().err}"
                ran["bash"] += 1
    sys.modules.pop("net", None)
    assert ran["python"] >= 3 and ran["bash"] >= 4
    for run in ("runs/own", "runs/feats", "runs/cmp", "runs/py"):
        assert (tmp_path / run / "report.html").exists(), run
    assert "TinyCNN" in (tmp_path / "runs/own/report.html").read_text()
