"""Study kind ``stability``: the same model trained with several seeds, compared sample by sample."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, each, integer
from ..common import build_model, layer_features, load_data, train
from ..figures import html_table, png


def run_stability(cfg: dict, store: RunStore, progress=None):
    """Train one model per seed (and, with ``shuffled_labels``, per seed on permuted labels), compare the runs."""
    import pandas as pd

    from ..stability import run_metrics, stability_table

    if store.has("stability"):
        return store.read("stability")
    data = load_data(cfg["data"])
    n_eval = min(cfg["n_eval"], len(data.X_test))
    Xe = data.X_test[:n_eval]
    variants = [False, True] if cfg["shuffled_labels"] else [False]
    rows = []
    for shuffled_labels in variants:
        runs = {}
        for seed in cfg["seeds"]:
            ytr = np.random.default_rng(seed).permutation(data.y_train) if shuffled_labels else data.y_train
            model = build_model(cfg["model"], data, seed)
            train(model, data.X_train, ytr, cfg["train"], seed)
            runs[f"seed{seed}"] = run_metrics(layer_features(model, Xe, cfg["layer"]), cfg["k"])
        t = stability_table(runs)
        t.insert(0, "labels", "shuffled" if shuffled_labels else "true")
        rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    store.write("stability", table)
    return table


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
    return {"title": "Stability across runs", "figures": [("Run pairs", png(fig))], "summary": summary,
            "table": html_table(t)}


STABILITY = StudyKind(
    name="stability", run=run_stability, section=_stability_section, tables=("stability",),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seeds": [0, 1, 2], "layer": "blocks.1", "k": 25,
              "n_eval": 1000, "shuffled_labels": False},
    checks={"seeds": lambda v: each(integer(0))(v) or (None if len(set(v)) >= 2 else "at least two distinct seeds")},
    summary="seeds against each other: KS, per-sample Spearman, neighbour Jaccard vs shuffled")
