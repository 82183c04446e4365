"""MkDocs hooks for the docs build: pages that list what the code registers are filled from the registry itself,
so a new study kind appears in the docs without anyone editing them.

``<!-- study-kinds -->`` in a page becomes the table of :data:`nnkscope.studies.registry.KINDS`.
"""

from __future__ import annotations

MARKER = "<!-- study-kinds -->"


def study_kinds_table() -> str:
    from nnkscope.studies.registry import KINDS

    rows = ["| kind | what it measures | tables |", "|---|---|---|"]
    for name, kind in KINDS.items():
        tables = ", ".join(f"`{t}`" for t in kind.tables)
        rows.append(f"| `{name}` | {kind.summary.replace('|', '/')} | {tables} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, study_kinds_table()) if MARKER in markdown else markdown
