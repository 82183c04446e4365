"""A self-contained HTML report of a run folder: curves across layers and epochs, distributions, a summary."""

from __future__ import annotations

import html
from pathlib import Path

from .errors import InvalidParameterError
from .io import atomic_path
from .store import RunStore
from .studies.registry import KINDS, SECTIONS

__all__ = ["write_report"]

def _legacy(sec: dict) -> dict:
    """A section in the new contract (takeaways, Figure, DataFrame) drawn by this page until the report rewrite
    reads the contract itself: its takeaways, PNG figures and table (Plotly figures would need plotly.js, ~4.6 MB
    inlined, so they wait for the rewrite)."""
    from .studies.figures import html_table

    figures = [(f.title, f.plot) for f in sec["figures"] if isinstance(f.plot, str)]
    return {"title": sec["title"], "summary": sec["takeaways"], "figures": figures,
            "table": html_table(sec["table"]) if hasattr(sec["table"], "to_html") else sec["table"]}


def write_report(run_dir, out: str | None = None) -> Path:
    """Write ``report.html`` into the run folder (or ``out``) and return its path.

    One section per study table present (layers/epochs, compare, stability, invariance, early stopping, width
    sweep), each with figures, a few sentences of summary and its table; everything is inlined in one file.
    """
    store = RunStore(run_dir, create=False)
    tables = set(store.tables())
    drawn, sections = set(), []
    for kind in KINDS.values():  # one section per kind whose first table is there (kinds may share tables)
        if kind.section is not None and kind.tables[0] in tables and kind.section not in drawn:
            drawn.add(kind.section)
            sections.append(kind.section(store))
    sections += [_legacy(section(store)) for table, section in SECTIONS.items() if table in tables]
    if not sections:
        raise InvalidParameterError(f"{run_dir} holds no study tables yet (it has {sorted(tables)}); run a study "
                                    "into it first")
    summary = [line for sec in sections for line in sec["summary"]]
    body = []
    for sec in sections:
        body.append(f"<h2>{html.escape(sec['title'])}</h2>")
        body += [f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
                 for t, b in sec["figures"]]
        body.append(f"<details><summary>table</summary>{sec['table']}</details>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>nnkscope report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;color:#222}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:12px}}td,th{{padding:2px 6px;border-bottom:1px solid #ddd}}</style>
</head><body><h1>nnkscope report: {html.escape(Path(run_dir).name)}</h1>
<ul>{''.join(f'<li>{html.escape(s)}</li>' for s in summary)}</ul>{''.join(body)}</body></html>"""
    path = Path(out) if out else Path(run_dir) / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
