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

__all__ = ["Figure", "Term", "png", "grid", "html_table"]


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
