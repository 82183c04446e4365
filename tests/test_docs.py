"""The documentation site: its tutorials run as written, and ``make docs``'s strict build succeeds.

Each page's code blocks run in order in an empty folder of their own, as ``tests/snippets.py`` says (the same
runner as the README's): Python blocks in one session, ``# file: NAME`` blocks written to disk, ``nnkscope ...``
lines of bash blocks through the CLI; ``console`` blocks are shown, not run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from snippets import markdown_blocks, run_blocks

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# page -> (optional packages it needs, files its blocks must have written)
PAGES = {
    "index.md": ((), ()),
    "tutorials/own-model.md": (("torch", "duckdb", "yaml", "matplotlib"),
                               ("runs/own/report.html", "runs/train/manifest.json", "runs/loop/report.html")),
    "tutorials/saved-features.md": (("duckdb", "yaml", "matplotlib"),
                                    ("runs/feats/report.html", "degree.csv", "runs/py/manifest.json")),
    "tutorials/comparing-models.md": (("duckdb", "yaml", "matplotlib"), ("runs/cmp/report.html",)),
    "tutorials/scaling-out.md": (("dask.distributed",), ("graph.npz", "parts", "graph_hnsw.parquet")),
}


@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGES))
def test_page_runs_as_written(page, tmp_path, monkeypatch):
    needs, outputs = PAGES[page]
    for module in needs:
        pytest.importorskip(module)
    blocks = markdown_blocks(DOCS / page)
    ran = run_blocks(blocks, tmp_path, monkeypatch, f"docs/{page}")
    assert ran["python"] >= 1, f"docs/{page} has no Python block"
    for name in outputs:
        assert (tmp_path / name).exists(), f"docs/{page} did not write {name}"


def test_every_tutorial_is_tested_and_in_the_nav():
    tutorials = {p.relative_to(DOCS).as_posix() for p in (DOCS / "tutorials").glob("*.md")}
    assert tutorials and tutorials <= set(PAGES)
    nav = (REPO / "mkdocs.yml").read_text()
    for page in {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}:
        assert f": {page}\n" in nav, f"docs/{page} is not in mkdocs.yml's nav"


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    """What ``make docs`` runs: a warning (broken link or reference, a docstring griffe cannot parse) fails it."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra builds the site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for page in ("index.html", "tutorials/own-model/index.html", "api/similarity/index.html"):
        assert (tmp_path / "site" / page).exists(), page
    api = (tmp_path / "site" / "api/nnkscope/index.html").read_text()
    assert "nnk_graph" in api and "GraphSettings" in api  # the reference is generated, not an empty page
    from nnkscope.studies.registry import KINDS

    studies = (tmp_path / "site" / "api/studies/index.html").read_text()
    assert "<!-- study-kinds -->" not in studies and all(f"<code>{name}</code>" in studies for name in KINDS)


def test_inline_parameters_become_numpy_items():
    """The docs' Griffe extension: inline descriptions move below their name, real numpy types stay."""
    pytest.importorskip("griffe")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from inline_params import inline_to_numpy
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    doc = ("Summary, see :func:`~nnkscope.engine.graph.symmetrize` and :class:`nnkscope.NNKGraph`.\n\n"
           "Parameters\n----------\nX : (N, d) array of points.\nk : int\n    Candidates per node.\n"
           "out : the run folder (created;\n    resumed).\nsolver, tau : as NNKClassifier.\n"
           "a, b\n    Both.\n\n"
           "Examples\n--------\n>>> a : b\n\n"
           "=====  ====\nname   what\n=====  ====\nx      y\n=====  ====")
    assert inline_to_numpy(doc) == (
        "Summary, see ``symmetrize`` and ``nnkscope.NNKGraph``.\n\n"
        "Parameters\n----------\nX\n    (N, d) array of points.\nk : int\n    Candidates per node.\n"
        "out\n    the run folder (created;\n    resumed).\nsolver\n    as NNKClassifier.\n"
        "tau\n    as NNKClassifier.\na\n    Both.\nb\n    Both.\n\n"
        "Examples\n--------\n>>> a : b\n\n"
        "```text\n=====  ====\nname   what\n=====  ====\nx      y\n=====  ====\n```")
