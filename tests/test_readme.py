"""The README's "Analyse your own model" section runs as written: its snippets, in order, in an empty folder.

The blocks run as ``tests/snippets.py`` says: Python blocks in one shared session, a block whose first line is
``# file: NAME`` written to that file instead, and every ``nnkscope ...`` line of a bash block through the CLI.
"""

from pathlib import Path

import pytest
from snippets import markdown_blocks, run_blocks

pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")
pytest.importorskip("yaml")

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Analyse your own model"


def _blocks() -> list[tuple[str, str]]:
    return markdown_blocks(README, SECTION)


def test_the_section_has_the_three_routes():
    kinds = [lang for lang, _ in _blocks()]
    text = "".join(body for _, body in _blocks())
    assert {"python", "yaml", "bash"} <= set(kinds)
    assert "--config study.yaml" in text and "--features feats.npz" in text and "nnkscope.analyze(" in text
    assert "nnkscope compare" in text


def test_readme_snippets_run_as_written(tmp_path, monkeypatch):
    ran = run_blocks(_blocks(), tmp_path, monkeypatch, f"README.md ({SECTION})")
    assert ran["python"] >= 3 and ran["bash"] >= 4
    for run in ("runs/own", "runs/feats", "runs/cmp", "runs/py"):
        assert (tmp_path / run / "report.html").exists(), run
    assert "TinyCNN" in (tmp_path / "runs/own/report.html").read_text()
