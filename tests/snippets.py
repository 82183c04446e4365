"""Run the code blocks of a Markdown page as written, in order, in one folder (the README's and the docs' tests).

* A block whose first line is ``# file: NAME`` (any language) is written to ``NAME`` instead of being run.
* ``python`` blocks run in one shared namespace whose ``__name__`` is ``"__main__"`` (so a page may show the
  ``if __name__ == "__main__":`` guard that Dask's worker processes need).
* Every line of a ``bash`` block is an ``nnkscope ...`` command; it runs through :func:`nnkscope.cli.main` and
  must exit 0.
* Blocks in any other language (``console``, ``text``, ...) are shown, not run: commands that need something a
  test cannot have (a cluster's address, a GPU).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

FENCE = re.compile(r"^```(\w+)\n(.*?)^```", flags=re.S | re.M)


def markdown_blocks(path: Path, section: str | None = None) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of ``path``, or of its ``section`` (a heading line)."""
    text = path.read_text(encoding="utf-8")
    if section is not None:
        start = text.index(section)
        end = text.find("\n" + section.split(" ")[0] + " ", start + len(section))
        text = text[start:end if end > 0 else None]
    return FENCE.findall(text)


def run_blocks(blocks: list[tuple[str, str]], folder: Path, monkeypatch, where: str) -> dict[str, int]:
    """Run ``blocks`` in ``folder`` (made the working directory and importable); returns how many ran per kind."""
    from nnkscope.cli import main

    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    namespace: dict = {"__name__": "__main__"}
    ran = {"python": 0, "bash": 0, "file": 0}
    written: list[str] = []
    try:
        for lang, body in blocks:
            first = body.splitlines()[0] if body.strip() else ""
            marker = re.match(r"#\s*file:\s*(\S+)", first)
            if marker:
                (folder / marker.group(1)).write_text(body)
                written.append(marker.group(1))
                ran["file"] += 1
            elif lang == "python":
                exec(compile(body, where, "exec"), namespace)
                ran["python"] += 1
            elif lang == "bash":
                for line in body.splitlines():
                    argv = shlex.split(line, comments=True)
                    if not argv:
                        continue
                    assert argv[0] == "nnkscope", f"{where}: bash lines are nnkscope commands: {line}"
                    err = io.StringIO()
                    with contextlib.redirect_stderr(err):
                        rc = main(argv[1:])
                    assert rc == 0, f"{where}: failed: {line}\n{err.getvalue()}"
                    ran["bash"] += 1
    finally:  # a module written here (net.py) must not shadow another page's module of the same name
        for name in written:
            if name.endswith(".py"):
                sys.modules.pop(name[:-3], None)
    return ran
