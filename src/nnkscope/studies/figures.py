"""Figure helpers shared by the report sections of the study kinds (matplotlib, rendered to inline PNG)."""

from __future__ import annotations

import base64
import io

import numpy as np

__all__ = ["png", "grid", "html_table"]


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
