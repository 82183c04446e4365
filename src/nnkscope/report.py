"""A self-contained HTML report of a run folder: curves across layers and epochs, distributions, a summary."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .errors import InvalidParameterError
from .io import atomic_path
from .store import RunStore

__all__ = ["write_report"]

LAYER_METRICS = [("mean_nnk_degree", "mean NNK degree", False), ("loo_error_nnk", "NNK leave-one-out error", False),
                 ("separation_fuzziness", "separation fuzziness D (log)", True), ("nc1", "NC1 (log)", True),
                 ("homogeneous_fraction_H", "homogeneous nodes H", False), ("mean_diameter", "mean diameter", False),
                 ("label_variation", "label variation (10-NN graph)", False)]


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
    """Write ``report.html`` into the run folder (or ``out``) and return its path.

    One section per study table present (layers/epochs, compare, stability, invariance, early stopping, width
    sweep), each with figures, a few sentences of summary and its table; everything is inlined in one file.
    """
    store = RunStore(run_dir, create=False)
    tables = set(store.tables())
    sections = [fn(store) for name, fn in _SECTIONS if name in tables]
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


def _html_table(df) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def _layers_section(store: RunStore) -> dict:
    layers = store.read("layers").sort_values(["model", "epoch", "layer_index"])
    metrics = [(c, t, log) for c, t, log in LAYER_METRICS if c in layers.columns]
    last_epoch = layers.groupby("model")["epoch"].max()
    figs = []
    fig, axes = _grid(len(metrics))  # across layers, one line per recorded epoch
    for ax, (col, title, log) in zip(axes, metrics, strict=False):
        for (model, epoch), sub in layers.groupby(["model", "epoch"]):
            ax.plot(sub.layer_index, sub[col], "o-", label=f"{model} ep {epoch}", alpha=0.4 + 0.6 * (
                epoch == last_epoch[model]))
        ax.set(title=title, xlabel="layer (0 = input)", yscale="log" if log else "linear")
        ax.set_xticks(sorted(layers.layer_index.unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figs.append(("Metrics across layers", _png(fig)))
    if layers.epoch.nunique() > 1:  # across epochs, one line per layer
        fig, axes = _grid(len(metrics))
        for ax, (col, title, log) in zip(axes, metrics, strict=False):
            for (model, layer), sub in layers.groupby(["model", "layer"], sort=False):
                ax.plot(sub.epoch, sub[col], "o-", label=f"{model}: {layer}")
            ax.set(title=title, xlabel="epoch", yscale="log" if log else "linear")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        figs.append(("Metrics through training", _png(fig)))
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
    table = layers.drop(columns=[c for c in layers.columns if layers[c].dtype == object and c not in (
        "model", "layer", "kernel")])
    return {"title": "Layers and epochs", "figures": figs, "summary": _summary(store, layers),
            "table": _html_table(table)}


def _compare_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = store.read("compare")
    names = sorted(set(zip(t.a_model, t.a_layer, strict=True)) | set(zip(t.b_model, t.b_layer, strict=True)))
    pos = {n: i for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, 2, figsize=(6 + 0.5 * len(names), 3 + 0.25 * len(names)))
    for ax, (col, title) in zip(axes, [("jaccard", "NNK-neighbourhood Jaccard"), ("linear_cka", "linear CKA")],
                                strict=True):
        M = np.eye(len(names))
        for _, r in t.iterrows():
            i, j = pos[(r.a_model, r.a_layer)], pos[(r.b_model, r.b_layer)]
            M[i, j] = M[j, i] = r[col]
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
        labels = [f"{m}:{layer}" for m, layer in names]
        ax.set_xticks(range(len(names)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), labels, fontsize=7)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    best = t.sort_values("jaccard_ratio", ascending=False).iloc[0]
    summary = [f"Most similar pair: {best.a_model}:{best.a_layer} vs {best.b_model}:{best.b_layer}, NNK "
               f"neighbourhoods overlap {best.jaccard:.2f} ({best.jaccard_ratio:.0f}x the shuffled chance level), "
               f"linear CKA {best.linear_cka:.2f}."]
    return {"title": "Representation comparison", "figures": [("Pairwise similarity", _png(fig))],
            "summary": summary, "table": _html_table(t)}


def _stability_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = store.read("stability")
    cols = [("spearman_nnk_degree", "Spearman NNK degree"), ("spearman_diameter", "Spearman diameter"),
            ("jaccard", "NNK-neighbour Jaccard")]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(cols)
    for i, (c, label) in enumerate(cols):
        shuf = c.replace("jaccard", "jaccard_shuffled") if c == "jaccard" else f"{c}_shuffled"
        x = np.arange(len(t)) + i * width
        ax.bar(x, t[c], width, label=label)
        ax.scatter(x, t[shuf], color="k", marker="_", s=80, zorder=3)
    ax.set_xticks(np.arange(len(t)) + 0.4 - width / 2, [f"{a}-{b} ({lab})" for a, b, lab in
                                                       zip(t.run_a, t.run_b, t.labels, strict=True)], fontsize=7)
    ax.legend(fontsize=7)
    ax.set_title("across runs (black ticks: shuffled baseline)")
    real = t[t.labels == "true"]
    summary = [f"Across {len(real)} pairs of runs: Spearman of per-sample NNK degree "
               f"{real.spearman_nnk_degree.mean():.2f}, of diameter {real.spearman_diameter.mean():.2f}; NNK "
               "neighbourhoods overlap "
               f"{real.jaccard.mean():.2f} = {real.jaccard_ratio.mean():.0f}x chance; KS distances "
               f"{real.ks_nnk_degree.max():.3f} (degree) and {real.ks_diameter.max():.3f} (diameter) at most."]
    return {"title": "Stability across runs", "figures": [("Run pairs", _png(fig))], "summary": summary,
            "table": _html_table(t)}


def _invariance_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = store.read("invariance")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for aug, sub in t.groupby("augment"):
        ax.hist(sub.diameter, bins=40, range=(0, 2), histtype="step", density=True,
                label=f"{'with' if aug else 'without'} augmentation")
    ax.set(xlabel="polytope diameter among the transformed versions", title="invariance (0 = invariant)")
    ax.legend(fontsize=8)
    agg = t.groupby("augment").agg(d=("diameter", "mean"), up=("accuracy_upright", "mean"),
                                   rot=("accuracy_rot90", "mean"))
    summary = [f"{'With' if aug else 'Without'} augmentation: mean diameter {r.d:.3f}, accuracy {r.up:.3f} upright "
               f"and {r.rot:.3f} rotated by 90 degrees." for aug, r in agg.iterrows()]
    return {"title": "Invariance", "figures": [("Diameters", _png(fig))], "summary": summary,
            "table": _html_table(t.groupby(["augment", "seed"], as_index=False).mean(numeric_only=True))}


def _early_stopping_section(store: RunStore) -> dict:

    t = store.read("early_stopping")
    if "loo_error_nnk" not in t.columns:  # channel-wise arms: one row per (seed, arm)
        agg = t.groupby("arm").test_accuracy.mean()
        summary = ["Mean test accuracy: " + ", ".join(f"{a} {v:.3f}" for a, v in agg.items()) + "."]
        figs = []
        if "channel_loo" in store.tables():  # each channel's own LOO error, and where it froze
            h = store.read("channel_loo")
            fig, axes = _grid(h.seed.nunique())
            for ax, (seed, sub) in zip(axes, h.groupby("seed"), strict=False):
                for c, ch in sub.groupby("channel"):
                    line, = ax.plot(ch.epoch, ch.loo_error_nnk, lw=1, label=f"channel {c}")
                    ax.plot(ch.epoch.iloc[-1], ch.loo_error_nnk.iloc[-1], "x", color=line.get_color())
                ax.set(title=f"seed {seed} (x: last check, frozen or end)", xlabel="epoch", ylabel="NNK LOO error")
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=7)
            figs.append(("Channel-wise leave-one-out error", _png(fig)))
        return {"title": "Early stopping", "figures": figs, "summary": summary, "table": _html_table(t)}
    cols = [c for c in ("loo_error_nnk", "loo_error_wknn", "train_error", "test_error", "nnk_test_error")
            if c in t.columns]
    fig, axes = _grid(len(t.groupby(["arm", "seed"])))
    summary = []
    for ax, ((arm, seed), sub) in zip(axes, t.groupby(["arm", "seed"]), strict=False):
        for c in cols:
            ax.plot(sub.epoch, sub[c], "o-", ms=3, label=c)
        ax.set(title=f"{arm}, seed {seed}", xlabel="epoch", ylabel="error")
        ax.grid(alpha=0.3)
        last = sub.iloc[-1]
        summary.append(f"{arm} (seed {seed}), epoch {int(last.epoch)}: NNK LOO {last.loo_error_nnk:.3f}" + (
            f", model train/test error {last.train_error:.3f}/{last.test_error:.3f}, NNK classifier test error "
            f"{last.nnk_test_error:.3f}" if "test_error" in sub else "") + ".")
    axes[0].legend(fontsize=7)
    return {"title": "DeepNNK through training", "figures": [("Errors per checkpoint", _png(fig))],
            "summary": summary, "table": _html_table(t)}


def _width_section(store: RunStore) -> dict:
    import matplotlib.pyplot as plt

    t = store.read("width_sweep").sort_values("width")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(t.width, t.homogeneous_fraction_H, "o-")
    axes[0].set(xscale="log", xlabel="width", title="homogeneous nodes H")
    axes[1].plot(t.width, t.loo_error_weighted, "o-", label="weighted (NNK)")
    axes[1].plot(t.width, t.loo_error_unweighted, "o-", label="unweighted")
    axes[1].set(xscale="log", xlabel="width", title="leave-one-out error")
    axes[1].legend(fontsize=8)
    a, b = t.iloc[0], t.iloc[-1]
    summary = [f"Width {a.width} -> {b.width}: H {a.homogeneous_fraction_H:.2f} -> {b.homogeneous_fraction_H:.2f}, "
               f"weighted/unweighted LOO gap {a.gap:.4f} -> {b.gap:.4f}."]
    return {"title": "Width sweep", "figures": [("Interpolation geometry", _png(fig))], "summary": summary,
            "table": _html_table(t)}


_SECTIONS = [("layers", _layers_section), ("compare", _compare_section), ("stability", _stability_section),
             ("invariance", _invariance_section), ("early_stopping", _early_stopping_section),
             ("width_sweep", _width_section)]


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
