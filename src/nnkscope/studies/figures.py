"""Figures and glossary terms shared by the report sections of the study kinds.

A kind's ``section(store)`` returns a dict (the report's contract)::

    {"title": str,
     "takeaways": [str, ...],        # sentences computed from the numbers, each naming its threshold
     "figures": [Figure, ...],
     "table": DataFrame | {name: DataFrame},
     "glossary": {column: Term}}     # optional: terms the core glossary lacks

Interactive figures are Plotly figures. Traces that stand for a model, layer, epoch or run set ``legendgroup`` to a
stable key (``"layer blocks.2"``, ``"epoch 7"``, ``"model mlp-s0"``) and leave their colour unset: the report gives each
key one colour across the whole page. Matplotlib figures (base64 PNG from :func:`png`) are still accepted.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Figure", "Term", "TERMS", "GENERIC", "SUFFIXES", "columns", "density", "fmt", "fmt_rho", "glossary",
           "heatmap", "lines", "long", "resolve", "rounded", "section", "spearman", "png", "grid", "html_table"]


@dataclass(frozen=True)
class Figure:
    """One figure of a report section.

    Attributes
    ----------
    title : shown above the figure.
    plot : a ``plotly.graph_objects.Figure`` (interactive) or a base64 PNG string (static).
    caption : one or two sentences: what to look at.
    terms : glossary keys (column names) this figure shows; the report links them.
    """

    title: str
    plot: Any
    caption: str = ""
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Term:
    """A glossary entry: what a metric or column means.

    Attributes
    ----------
    definition : one line.
    range : the values it takes, e.g. ``"[0, 1]"``.
    direction : which direction means what, e.g. ``"lower = smoother labels"``.
    source : the paper (or "nnkscope") that defines it.
    """

    definition: str
    range: str = ""
    direction: str = ""
    source: str = ""


def png(fig) -> str:
    """The figure as base64 PNG (and closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def grid(n: int, *, width: float = 4.2, height: float = 3.2):
    """A figure with ``n`` panels (``width`` x ``height`` inches each) in rows of three; returns ``(fig, axes)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def html_table(df) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


# --------------------------------------------------------------------------------------------------------------
# Plotly builders shared by the kinds' sections: one long-format table in, one small figure out

GENERIC = frozenset({"model", "layer", "seed", "epoch"})  # keys every page explains; no per-kind glossary entry
SIG = 4  # significant digits kept in a figure: exact enough to read, small in bytes


def rounded(values) -> list:
    """Floats to :data:`SIG` significant digits (NaN and inf to ``None``: a gap); anything else unchanged.

    Examples
    --------
    >>> rounded([0.123456, float("nan"), 2, "a"])
    [0.1235, None, 2.0, 'a']
    """
    out = []
    for v in values:
        if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(float(f"{v:.{SIG}g}") if np.isfinite(v) else None)
        else:
            out.append(v.item() if isinstance(v, np.generic) else v)
    return out


def fmt(v, digits: int = 3) -> str:
    """A number for a sentence: ``digits`` significant digits, ``n/a`` for NaN.

    Examples
    --------
    >>> fmt(0.123456), fmt(float("nan")), fmt(12345.6), fmt(float("inf"))
    ('0.123', 'n/a', '1.23e+04', 'inf')
    """
    if v is None or np.isnan(v):
        return "n/a"
    return f"{v:.{digits}g}"


def fmt_rho(rho, lo, hi) -> str:
    """A correlation with its interval, for sentences and panel titles.

    Examples
    --------
    >>> fmt_rho(-0.8, -1.0, 0.2), fmt_rho(float("nan"), float("nan"), float("nan"))
    ('rho -0.80 [-1.00, +0.20]', 'rho n/a (constant values or fewer than 3 models)')
    """
    if not np.isfinite(rho):
        return "rho n/a (constant values or fewer than 3 models)"
    return f"rho {rho:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def long(data, columns, *, name: str = "measure", value: str = "value", labels: dict | None = None):
    """``data`` with the ``columns`` stacked into one ``value`` column, named in column ``name`` (by ``labels``)."""
    ids = [c for c in data.columns if c not in columns]
    out = data.melt(id_vars=ids, value_vars=list(columns), var_name=name, value_name=value)
    if labels:
        out[name] = out[name].map(lambda c: labels.get(c, c))
    return out


def density(data, value: str, by: str, *, bins: int = 30, range: tuple | None = None):
    """Per value of ``by``, the histogram density of ``value`` on common bins (centre, density): a distribution
    as a short line however many samples it has.  Integer values (a degree, say) get one bin per integer.

    Examples
    --------
    >>> import pandas as pd
    >>> d = density(pd.DataFrame({"run": ["a"] * 4, "deg": [2, 2, 3, 5]}), "deg", "run")
    >>> d.deg.tolist(), d.density.tolist()
    ([2.0, 3.0, 4.0, 5.0], [0.5, 0.25, 0.0, 0.25])
    """
    import pandas as pd

    v = data[value].to_numpy(float)
    v = v[np.isfinite(v)]
    lo, hi = range if range is not None else ((float(v.min()), float(v.max())) if len(v) else (0.0, 1.0))
    if range is None and len(v) and np.all(v == np.round(v)) and hi - lo <= 4 * bins:
        edges = np.arange(lo - 0.5, hi + 1.0)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    rows = []
    for g, sub in data.groupby(by, sort=False):
        s = sub[value].to_numpy(float)
        h, _ = np.histogram(s[np.isfinite(s)], bins=edges, density=True)
        rows.append(pd.DataFrame({by: g, value: (edges[:-1] + edges[1:]) / 2, "density": h}))
    return pd.concat(rows, ignore_index=True)


def _grid(panels: list, cols: int, titles: dict | None, x_title: str, y_title: str, shared_y: bool = False):
    from plotly.subplots import make_subplots

    n = max(len(panels), 1)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    names = [str(titles.get(p, p)) if titles else str(p) for p in panels] if panels != [None] else None
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, x_title=x_title or None,
                        y_title=y_title or None, shared_yaxes=shared_y, horizontal_spacing=0.22 / cols + 0.04,
                        vertical_spacing=min(0.3 / rows + 0.06, 0.9 / max(rows - 1, 1)))
    fig.update_annotations(font_size=11)
    fig.update_layout(height=140 + 260 * rows, width=None, margin=dict(l=70, r=20, t=50, b=60),
                      legend=dict(font_size=10))
    return fig, cols


def lines(data, x: str, y: str, *, by: str | None = None, key="{}", panel: str | None = None,
          band: str | None = None, mode: str = "lines+markers", x_title: str = "", y_title: str = "",
          log_x: bool = False, log_y: bool = False, hover: tuple = (), cols: int = 3, titles: dict | None = None,
          ref: dict | None = None, diagonal: bool = False, colour: dict | None = None, order: list | None = None):
    """Traces of ``y`` against ``x``, one per value of ``by``, in one panel per value of ``panel``.

    Parameters
    ----------
    data : long-format DataFrame.
    by : column whose values are the traces; each trace's ``legendgroup`` and name are ``key.format(value)``
        (``"layer {}"``; or ``key(value)`` for a function), the key the report colours page-wide (so no colour is
        set here unless ``colour`` maps the value to one: for traces that are not a model, layer, epoch or run).
    panel : column whose values are the subplots (in order of appearance, or ``order``); ``titles`` maps a value to
        its subplot title.
    band : column with a half-width drawn as a shaded band (lines) or error bar (bars) around each trace.
    mode : ``"lines+markers"``, ``"lines"``, ``"markers"`` (a scatter) or ``"bar"``.
    hover : more columns shown, with their names, when hovering a point.
    ref : ``{label: y}`` horizontal dotted reference lines (chance levels) in every panel.
    diagonal : draw ``y = x`` in every panel (one quantity against itself: seed A vs seed B).

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"k": [5, 10, 5, 10], "error": [0.2, 0.25, 0.3, 0.31], "graph": ["nnk", "nnk", "knn", "knn"]})
    >>> fig = lines(t, "k", "error", by="graph", key="graph {}", x_title="K", y_title="error")
    >>> [(tr.legendgroup, list(tr.y)) for tr in fig.data]
    [('graph nnk', [0.2, 0.25]), ('graph knn', [0.3, 0.31])]
    """
    import plotly.graph_objects as go

    panels = order or (list(dict.fromkeys(data[panel])) if panel else [None])
    fig, ncols = _grid(panels, cols, titles, x_title, y_title, shared_y=mode == "bar" and panel is not None)
    shown: set = set()
    for i, p in enumerate(panels):
        row, col = i // ncols + 1, i % ncols + 1
        sub = data[data[panel] == p] if panel else data
        groups = sub.groupby(by, sort=False) if by else [(None, sub)]
        for g, s in groups:
            name = (key(g) if callable(key) else key.format(g)) if by else y
            tip = "".join(f"<br>{h}: %{{customdata[{j}]}}" for j, h in enumerate(hover))
            common = dict(legendgroup=name, name=name, showlegend=bool(by) and name not in shown,
                          customdata=np.array([rounded(s[h]) for h in hover], dtype=object).T if hover else None,
                          hovertemplate=f"{name}<br>{x_title or x}: %{{x}}<br>{y_title or y}: %{{y}}{tip}"
                                        "<extra></extra>")
            shown.add(name)
            colour_of = (colour or {}).get(g)
            xs, ys = rounded(s[x]), rounded(s[y])
            spread = band is not None and bool(s[band].notna().any())  # one seed: no spread to draw
            if mode == "bar":
                err = dict(type="data", array=rounded(s[band])) if spread else None
                fig.add_trace(go.Bar(x=xs, y=ys, error_y=err, marker_color=colour_of, **common), row=row, col=col)
                continue
            if spread:
                lo = rounded(s[y] - s[band].fillna(0))
                hi = rounded(s[y] + s[band].fillna(0))
                fig.add_trace(go.Scatter(x=xs + xs[::-1], y=hi + lo[::-1], fill="toself", line_width=0,
                                         opacity=0.2, legendgroup=name, showlegend=False, hoverinfo="skip",
                                         fillcolor=colour_of), row=row, col=col)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode=mode, marker_size=5 if mode == "markers" else 6,
                                     marker_opacity=0.6 if mode == "markers" else 1.0,  # piled points show
                                     line_color=colour_of, marker_color=colour_of, **common), row=row, col=col)
        for label, value in (ref or {}).items():
            note = dict(annotation_text=label, annotation_font_size=9) if i == 0 else {}  # named once
            fig.add_hline(y=value, line_dash="dot", line_color="grey", line_width=1, row=row, col=col, **note)
        if diagonal and len(sub):
            both = np.r_[sub[x].to_numpy(float), sub[y].to_numpy(float)]
            both = both[np.isfinite(both)]
            if len(both):
                lo, hi = float(both.min()), float(both.max())
                fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="grey", dash="dash",
                                                                                         width=1),
                                         showlegend=False, hoverinfo="skip"), row=row, col=col)
    if mode == "bar":
        fig.update_layout(barmode="group")
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    fig.update_xaxes(automargin=True)  # long category names wrap into the margin instead of overlapping
    return fig


def heatmap(panels: dict, rows: list, cols: list, *, x_title: str = "", y_title: str = "",
            zmin: float | None = None, zmax: float | None = None, ncols: int = 2, value: str = "value"):
    """One heatmap per ``{title: matrix}`` (rows x cols), values written in the cells when there are few.

    Examples
    --------
    >>> fig = heatmap({"CKA": np.eye(2)}, ["a", "b"], ["a", "b"], zmin=0, zmax=1)
    >>> fig.data[0].type, fig.data[0].z
    ('heatmap', ([1.0, 0.0], [0.0, 1.0]))
    """
    import plotly.graph_objects as go

    titles = list(panels)
    fig, nc = _grid(titles, ncols, None, x_title, y_title)
    few = len(rows) * len(cols) <= 144
    for i, (title, M) in enumerate(panels.items()):
        z = [rounded(r) for r in np.asarray(M, float)]
        fig.add_trace(go.Heatmap(z=z, x=[str(c) for c in cols], y=[str(r) for r in rows], zmin=zmin, zmax=zmax,
                                 colorscale="Viridis", showscale=i == 0, texttemplate="%{z:.2f}" if few else None,
                                 hovertemplate=f"{y_title or 'row'}: %{{y}}<br>{x_title or 'column'}: %{{x}}<br>"
                                               f"{title}: %{{z}}<extra></extra>", name=title),
                      row=i // nc + 1, col=i % nc + 1)
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(tickangle=-45, automargin=True)
    side = 160 + 22 * max(len(rows), 4)
    fig.update_layout(height=80 + side * (-(-len(titles) // nc)))
    return fig


def spearman(a, b) -> float:
    """Spearman's rho over the pairs where both are finite; NaN with fewer than 3 or a constant side.

    Examples
    --------
    >>> round(spearman([1, 2, 3, 4], [1, 3, 2, 4]), 6), spearman([1, 1, 1], [1, 2, 3])
    (0.8, nan)
    """
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


SUFFIXES = {
    "_ci_low": "lower end of the 95% percentile-bootstrap interval (over points) of ",
    "_ci_high": "upper end of the 95% percentile-bootstrap interval (over points) of ",
    "_p_value": "permutation p-value (the pairing of the two representations' points shuffled; small = above "
                "chance) of ",
}


def resolve(column: str, table: dict) -> Term | None:
    """The term of ``column`` in ``table``, or built from the term of its base: ``mean_``/``median_`` prefixes
    and the :data:`SUFFIXES` (intervals, p-values) resolved; None when unknown.

    Examples
    --------
    >>> t = {"jaccard": Term("neighbour overlap", "[0, 1]")}
    >>> resolve("jaccard_ci_low", t).definition
    'lower end of the 95% percentile-bootstrap interval (over points) of neighbour overlap'
    >>> resolve("cka", t) is None
    True
    """
    if column in table:
        return table[column]
    base, note = column, ""
    for suffix, text in SUFFIXES.items():
        if base.endswith(suffix):
            base, note = base[: -len(suffix)], text
    for prefix in ("", "mean_", "median_"):
        if base.startswith(prefix) and base[len(prefix):] in table:
            t = table[base[len(prefix):]]
            what = f"the layer {prefix[:-1]} of: " if prefix else ""
            return Term(note + what + t.definition, t.range, t.direction, t.source) if note or what else t
    return None


def glossary(columns, own: dict) -> dict:
    """The section's glossary: the entry of every shown column that is not a generic key, from ``own`` (the
    kind's) or :data:`TERMS` (shared by several kinds), with the ``mean_``/``median_`` prefixes and the
    interval/p-value suffixes resolved (:func:`resolve`); a column with none is left out (the tests catch it)."""
    out = {}
    for c in dict.fromkeys(columns):
        if c in GENERIC:
            continue
        term = resolve(c, {**TERMS, **own})
        if term is not None:
            out[c] = term
    return out


def section(title: str, takeaways: list, figures: list, table, own: dict) -> dict:
    """A section in the report's contract; its glossary covers the table's columns and the figures' terms."""
    shown = columns(table) + [t for f in figures for t in f.terms]
    return {"title": title, "takeaways": takeaways, "figures": figures, "table": table,
            "glossary": glossary(shown, own)}


def columns(table) -> list:
    """Every column of a section table (a DataFrame or ``{name: DataFrame}``)."""
    frames = table.values() if isinstance(table, dict) else [table]
    return [c for t in frames for c in t.columns]


TERMS = {
    "auroc": Term("area under the ROC curve of the NNK score separating the positives (flipped labels, unseen "
                  "classes, attacked inputs) from the rest", "[0, 1]", "0.5 = chance, 1 = perfect", "nnkscope"),
    "baseline_auroc": Term("the same AUROC with the kNN baseline score on the same candidates", "[0, 1]",
                           "0.5 = chance, 1 = perfect", "nnkscope"),
    "nnk_degree": Term("number of NNK neighbours of a sample (non-zero NNK weights among its K candidates)",
                       "[1, K]", "higher = the sample sits inside a wider, flatter neighbourhood",
                       "Shekkizhar & Ortega, NNK graphs"),
    "diameter": Term("largest distance between two of a sample's NNK neighbours (its NNK polytope's diameter)",
                     "[0, 2] on unit-norm features", "lower = tighter neighbourhood", "Shekkizhar & Ortega, DeepNNK"),
    "jaccard": Term("mean Jaccard overlap of each sample's NNK-neighbour sets in the two representations", "[0, 1]",
                    "higher = the same neighbours", "nnkscope"),
    "jaccard_shuffled": Term("the same overlap against a node-shuffled graph: the chance level", "[0, 1]",
                             "the floor to compare with", "nnkscope"),
    "jaccard_ratio": Term("jaccard / jaccard_shuffled: neighbour overlap in multiples of chance", "[0, inf)",
                          "1 = chance; higher = shared structure", "nnkscope"),
    "linear_cka": Term("linear centred kernel alignment of the two feature matrices", "[0, 1]",
                       "1 = the same up to rotation and scale", "Kornblith et al. 2019"),
    "spearman": Term("Spearman rank correlation across models", "[-1, 1]", "0 = no monotone relation", ""),
    "ci_low": Term("lower end of the bootstrap confidence interval of the correlation", "[-1, 1]",
                   "interval excluding 0 = a reliable sign", "nnkscope"),
    "ci_high": Term("upper end of the bootstrap confidence interval of the correlation", "[-1, 1]",
                    "interval excluding 0 = a reliable sign", "nnkscope"),
    "loo_error_nnk": Term("leave-one-out error of the NNK interpolation classifier on the training features",
                          "[0, 1]", "lower = labels are smooth on the NNK graph", "Shekkizhar & Ortega, DeepNNK"),
    "test_error": Term("the model's error on the test split", "[0, 1]", "lower = better", ""),
    "train_error": Term("the model's error on the training split", "[0, 1]", "0 = interpolates", ""),
    "test_accuracy": Term("the model's accuracy on the test split", "[0, 1]", "higher = better", ""),
    "accuracy": Term("the model's accuracy on the (perturbed) evaluation points", "[0, 1]", "higher = better", ""),
    "k": Term("number of nearest-neighbour candidates the NNK graph starts from (K)", "integer >= 1",
              "", "nnkscope"),
}
