"""A self-contained HTML report of a run folder: curves across layers and epochs, distributions, a summary."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .io import atomic_path
from .store import RunStore

__all__ = ["write_report"]

LAYER_METRICS = [("mean_nnk_degree", "mean NNK degree", False), ("loo_error_nnk", "NNK leave-one-out error", False),
                 ("separation_fuzziness", "separation fuzziness D (log)", True), ("nc1", "NC1 (log)", True),
                 ("homogeneous_fraction_H", "homogeneous nodes H", False), ("mean_diameter", "mean diameter", False)]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _grid(n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def write_report(run_dir, out: str | None = None) -> Path:
    """Write ``report.html`` into the run folder (or ``out``) and return its path."""
    store = RunStore(run_dir, create=False)
    layers = store.read("layers").sort_values(["model", "epoch", "layer_index"])
    metrics = [(c, t, log) for c, t, log in LAYER_METRICS if c in layers.columns]
    last_epoch = layers.groupby("model")["epoch"].max()
    figs = []
    # 1. across layers at each model's last epoch, one line per recorded epoch
    fig, axes = _grid(len(metrics))
    for ax, (col, title, log) in zip(axes, metrics, strict=False):
        for (model, epoch), sub in layers.groupby(["model", "epoch"]):
            ax.plot(sub.layer_index, sub[col], "o-", label=f"{model} ep {epoch}", alpha=0.4 + 0.6 * (
                epoch == last_epoch[model]))
        ax.set(title=title, xlabel="layer (0 = input)", yscale="log" if log else "linear")
        ax.set_xticks(sorted(layers.layer_index.unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figs.append(("Metrics across layers", _png(fig)))
    # 2. across epochs, one line per layer
    if layers.epoch.nunique() > 1:
        fig, axes = _grid(len(metrics))
        for ax, (col, title, log) in zip(axes, metrics, strict=False):
            for (model, layer), sub in layers.groupby(["model", "layer"], sort=False):
                ax.plot(sub.epoch, sub[col], "o-", label=f"{model}: {layer}")
            ax.set(title=title, xlabel="epoch", yscale="log" if log else "linear")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        figs.append(("Metrics through training", _png(fig)))
    # 3. distributions at the last epoch
    pts = store.query("SELECT p.layer, p.nnk_degree, p.diameter, p.homogeneity FROM points p JOIN "
                      "(SELECT model, max(epoch) AS e FROM points GROUP BY model) m ON p.model = m.model AND "
                      "p.epoch = m.e")
    fig, axes = _grid(3)
    for ax, col in zip(axes, ["nnk_degree", "diameter", "homogeneity"], strict=False):
        for layer, sub in pts.groupby("layer", sort=False):
            ax.hist(sub[col], bins=30, histtype="step", label=layer, density=True)
        ax.set(title=f"{col} at the last epoch")
    axes[0].legend(fontsize=7)
    figs.append(("Per-point distributions", _png(fig)))
    summary = _summary(store, layers)
    table = layers.drop(columns=[c for c in layers.columns if layers[c].dtype == object and c not in (
        "model", "layer", "kernel")]).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    body = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
                   for t, b in figs)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>nnkscope report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;color:#222}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:12px}}td,th{{padding:2px 6px;border-bottom:1px solid #ddd}}</style>
</head><body><h1>nnkscope report: {html.escape(Path(run_dir).name)}</h1>
<ul>{''.join(f'<li>{html.escape(s)}</li>' for s in summary)}</ul>{body}
<h2>All layers and epochs</h2>{table}</body></html>"""
    path = Path(out) if out else Path(run_dir) / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _summary(store: RunStore, layers) -> list[str]:
    lines = []
    for model, sub in layers.groupby("model"):
        last = sub[sub.epoch == sub.epoch.max()].sort_values("layer_index")
        first_row, last_row = last.iloc[0], last.iloc[-1]
        lines.append(f"{model}, epoch {int(last_row.epoch)}: NNK leave-one-out error {first_row.loo_error_nnk:.3f} "
                     f"on the {first_row.layer} and {last_row.loo_error_nnk:.3f} on {last_row.layer}; mean NNK "
                     f"degree {first_row.mean_nnk_degree:.1f} -> {last_row.mean_nnk_degree:.1f}.")
    if "fits" in store.tables():
        fits = store.read("fits").sort_values(["model", "epoch"])
        for _, f in fits.groupby("model").tail(1).iterrows():
            verdict = "follows" if f.r <= -0.95 else "does not follow"
            lines.append(f"{f.model}, epoch {int(f.epoch)}: separation fuzziness changes by a factor rho = "
                         f"{f.rho:.3f} per layer (Pearson r = {f.r:.3f}); the net {verdict} the law of "
                         "equi-separation.")
    return lines
