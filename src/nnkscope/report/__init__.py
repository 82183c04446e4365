"""A self-contained, offline HTML report of one or several run folders.

One file: Plotly's JavaScript inlined once (no network request of any kind), a header with each run's identity,
a navigation sidebar, one section per study kind present (takeaways computed from the numbers, interactive
figures, sortable tables downloadable as CSV), the point explorer (each layer in 2-D with its samples and NNK
neighbours) and a glossary linked from every figure and column.  Several runs overlay the same sections, their
trace keys prefixed by the run's name.

Plotly (not Vega-Lite): it is already a dependency of the figures the study kinds build, draws large point clouds
with WebGL (``scattergl``), and its single ~4.8 MB bundle includes hover, legend toggling, log axes and zoom with
no further runtime code; Vega-Lite needs three bundles (vega, vega-lite, vega-embed, ~1 MB) but has no WebGL
scatter, which the explorer's thousands of points need to stay responsive.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InvalidParameterError
from ..io import atomic_path
from ..store import RunStore
from ..studies import registry
from ..studies.figures import Figure
from ..studies.registry import KINDS

__all__ = ["write_report", "collect_sections"]


def _normalise(sec: dict) -> dict:
    """A section in the current contract; legacy sections (``figures`` as ``(title, png)``, ``summary``, ``table``
    as HTML) are converted as they are."""
    figs = [f if isinstance(f, Figure) else Figure(f[0], f[1]) for f in sec.get("figures", [])]
    return {"title": sec["title"], "takeaways": list(sec.get("takeaways", sec.get("summary", []))),
            "figures": figs, "table": sec.get("table"), "glossary": dict(sec.get("glossary") or {})}


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def collect_sections(store: RunStore) -> list[dict]:
    """One section per study kind present: the run's own kind (from its manifest) always, any other kind whose
    first table is there; a section that cannot be drawn (a missing or corrupt table) says so and why.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> store = RunStore(tempfile.mkdtemp() + "/run", params={"study": "layerwise"})
    >>> _ = store.write("notes", pd.DataFrame({"x": [1]}))
    >>> [(s["title"], s["unavailable"][:25]) for s in collect_sections(store)]
    [('layerwise study', "table 'layers' is missing")]
    """
    tables = set(store.tables())
    own = (getattr(store, "manifest", None) or {}).get("params", {}).get("study")
    drawn, sections = set(), []
    for kind in KINDS.values():
        if kind.section is None or kind.section in drawn:
            continue
        if kind.tables[0] not in tables and kind.name != own:
            continue
        drawn.add(kind.section)
        missing = [t for t in kind.tables[:1] if t not in tables]
        if missing:
            sections.append({"title": f"{kind.name} study", "unavailable": (
                f"table {missing[0]!r} is missing from {store.root} (it holds {sorted(tables)}): the study did not "
                "finish or the table was deleted; resume the study with the same command to compute it")})
            continue
        sections.append(_drawn(kind.section, store, f"{kind.name} study"))
    # sections registered by table (registry.SECTIONS, e.g. explanations), whichever kind wrote the table
    for table, section in getattr(registry, "SECTIONS", {}).items():
        if table in tables:
            sections.append(_drawn(section, store, table))
    return sections


def _drawn(section, store: RunStore, title: str) -> dict:
    try:
        return _normalise(section(store))
    except Exception as exc:  # noqa: BLE001 -- one broken table must not take the whole report down
        return {"title": title, "unavailable": f"{_why(exc)}. The other sections do not depend on it."}


def _identity(name: str, store: RunStore) -> dict:
    man = getattr(store, "manifest", None) or {}
    params = man.get("params", {}) or {}
    rows = [("run folder", str(store.root))]
    if params.get("study"):
        rows.append(("study", params["study"]))
    model = params.get("model")
    if isinstance(model, dict):
        rows.append(("model", ", ".join(f"{k}={v}" for k, v in model.items() if v not in ("", {}, None, False))))
    data = params.get("data")
    if isinstance(data, dict):
        rows.append(("data", ", ".join(f"{k}={v}" for k, v in data.items() if v not in ("", {}, None))))
    settings = {k: v for k, v in params.items() if k not in ("study", "model", "data", "train")
                and not isinstance(v, dict)}
    if settings:
        rows.append(("settings", ", ".join(f"{k}={v}" for k, v in settings.items())))
    if isinstance(params.get("train"), dict):
        rows.append(("training", ", ".join(f"{k}={v}" for k, v in params["train"].items() if v not in ("", [], None))))
    if man.get("versions"):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in man["versions"].items())))
    try:
        if "layers" in store.tables():
            lay = store.read("layers")
            for col in ("data_fingerprint", "labels_fingerprint"):
                if col in lay:
                    rows.append((col.replace("_", " "), ", ".join(sorted(set(lay[col].dropna().astype(str))))))
            if "model_fingerprint" in lay:
                rows.append(("model fingerprints", f"{lay['model_fingerprint'].nunique()} distinct (one per "
                                                   "model and epoch; in the layers table)"))
    except Exception as exc:  # noqa: BLE001 -- the identity is best effort; the section says what is wrong
        rows.append(("fingerprints", f"unreadable ({_why(exc)})"))
    if man.get("created"):
        rows.append(("created", man["created"]))
    return {"name": name, "rows": rows, "params": json.dumps(params, indent=1, default=str)}


def _prefix(fig: Figure, run: str) -> Figure:
    """The figure with every trace's name and legend key prefixed by the run's name."""
    if isinstance(fig.plot, str):
        return Figure(f"{fig.title} ({run})", fig.plot, fig.caption, fig.terms)
    plot = copy.deepcopy(fig.plot)
    for tr in plot.data:
        if getattr(tr, "name", None):
            tr.name = f"{run}: {tr.name}"
        if getattr(tr, "legendgroup", None):
            tr.legendgroup = f"{run}: {tr.legendgroup}"
    return Figure(fig.title, plot, fig.caption, fig.terms)


def _overlay(per_run: list[tuple[str, list[dict]]]) -> list[dict]:
    """Several runs' sections merged by title: takeaways prefixed by the run, Plotly figures with the same title
    overlaid (traces of every run in one figure), PNG figures one per run, tables concatenated with a ``run``
    column."""
    import pandas as pd

    order: list[str] = []
    by_title: dict[str, list[tuple[str, dict]]] = {}
    for run, secs in per_run:
        for sec in secs:
            if sec["title"] not in by_title:
                order.append(sec["title"])
            by_title.setdefault(sec["title"], []).append((run, sec))
    merged = []
    for title in order:
        group = by_title[title]
        bad = [f"{run}: {sec['unavailable']}" for run, sec in group if sec.get("unavailable")]
        ok = [(run, sec) for run, sec in group if not sec.get("unavailable")]
        if not ok:
            merged.append({"title": title, "unavailable": " | ".join(bad)})
            continue
        out = {"title": title, "takeaways": [f"{run}: {t}" for run, sec in ok for t in sec["takeaways"]]
               + [f"unavailable for {b}" for b in bad], "figures": [], "glossary": {}}
        figs: dict[str, Figure] = {}
        for run, sec in ok:
            out["glossary"].update(sec["glossary"])
            for f in sec["figures"]:
                g = _prefix(f, run)
                if isinstance(g.plot, str) or g.title not in figs:
                    figs[g.title] = g
                else:
                    figs[g.title].plot.add_traces(list(g.plot.data))
        out["figures"] = list(figs.values())
        tables: dict = {}
        for run, sec in ok:
            t = sec["table"]
            if isinstance(t, str):
                tables.setdefault("html", []).append(f"<h4>{run}</h4>{t}")
                continue
            for name, df in (t.items() if isinstance(t, dict) else [("table", t)]):
                tables.setdefault(name, []).append(df.assign(run=run)[["run", *df.columns]])
        html_parts = tables.pop("html", None)
        out["table"] = {n: pd.concat(dfs, ignore_index=True) for n, dfs in tables.items()}
        if html_parts and not out["table"]:
            out["table"] = "".join(html_parts)
        merged.append(out)
    return merged


def write_report(run_dir, out: str | None = None) -> Path:
    """Write the HTML report of a run folder (``RUN/report.html``, or ``out``) and return its path.

    ``run_dir`` may be a list of run folders: their sections are overlaid in one page, and ``out`` is then
    required (a report of several runs belongs to none of them).  Nothing is written anywhere but the report file.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from nnkscope.studies.layerwise import measure_layers
    >>> y, r = np.repeat([0, 1, 2], 20), np.random.default_rng(0)
    >>> run = tempfile.mkdtemp() + "/run"
    >>> _ = measure_layers({f"l{i}": np.eye(3)[y] * (i + 1) + r.normal(size=(60, 3)) for i in range(3)}, y,
    ...                    RunStore(run), k=5)
    >>> write_report(run).name
    'report.html'
    >>> write_report([run, run])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    nnkscope.errors.InvalidParameterError: a report of 2 runs needs an output file: pass out= (CLI: -o ...
    """
    import plotly

    from .._version import __version__
    from .explore import explorer_data
    from .page import assign_colours, render_page

    runs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if not runs:
        raise InvalidParameterError("write_report needs at least one run folder")
    if len(runs) > 1 and not out:
        raise InvalidParameterError(f"a report of {len(runs)} runs needs an output file: pass out= (CLI: -o "
                                    "report.html); it is not written into any of the run folders")
    names = [Path(r).name or str(r) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    stores = [RunStore(r, create=False) for r in runs]
    per_run, identity, explorers = [], [], []
    for name, store in zip(names, stores, strict=True):
        tables = store.tables()
        secs = collect_sections(store)
        if not secs:
            raise InvalidParameterError(f"{store.root} holds no study tables yet (it has {sorted(tables)}); run a "
                                        "study into it first")
        per_run.append((name, secs))
        identity.append(_identity(name, store))
        try:
            data = explorer_data(store)
        except Exception as exc:  # noqa: BLE001 -- marked in the page instead
            data = None
            secs.append({"title": "Points: explore each layer", "unavailable": _why(exc)})
        if data is not None:
            explorers.append((name, data))
    sections = per_run[0][1] if len(per_run) == 1 else _overlay(per_run)
    assign_colours([f.plot for s in sections for f in s.get("figures", []) if not isinstance(f.plot, str)])
    title = "nnkscope report: " + " vs ".join(names)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for ident in identity:
        ident["rows"].append(("report written", stamp))
    page = render_page(title, identity, sections, explorers, plotly.offline.get_plotlyjs(), __version__)
    path = Path(out) if out else Path(runs[0]) / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
