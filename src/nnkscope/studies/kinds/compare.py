"""Study kind ``compare``: models and layers against each other, across dimensions (NNK Jaccard, edge
agreement, degree Spearman, linear CKA)."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, each
from ..common import build_model, eval_subset, load_data, train
from ..figures import html_table, png


def run_compare(cfg: dict, store: RunStore, progress=None):
    """Train each listed model, capture its layers on the same evaluation points, compare every pair."""
    from ..comparison import compare_features

    data = load_data(cfg["data"])
    Xe, ye = eval_subset(data.X_test, data.y_test, cfg["eval_per_class"], 0)
    features = {("input", "input"): Xe.astype(np.float64)}
    for entry in cfg["models"]:
        model = build_model(entry["model"], data, entry["seed"])
        train(model, data.X_train, data.y_train, cfg["train"], entry["seed"])
        from ...nn.capture import capture

        for layer, H in capture(model, Xe, entry["layers"], pooling=cfg["pooling"]).items():
            features[(entry["name"], layer)] = np.asarray(H, np.float64).reshape(len(Xe), -1)
    return compare_features(features, store, k=cfg["k"], progress=progress)


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
    return {"title": "Representation comparison", "figures": [("Pairwise similarity", png(fig))],
            "summary": summary, "table": html_table(t)}


COMPARE = StudyKind(
    name="compare", run=run_compare, section=_compare_section, tables=("compare",),
    defaults={"data": DATA, "train": TRAIN, "k": 25, "eval_per_class": 60, "pooling": "flatten",
              "models": [{"name": "mlp_bn", "seed": 0, "layers": "blocks.*", "model": MODEL}]},
    open_lists={"models": {"name": "model", "seed": 0, "layers": "blocks.*", "model": MODEL}},
    checks={"models": each(lambda e: None if isinstance(e, dict) else "a mapping")},
    summary="models/layers pairwise: NNK Jaccard, edge agreement, degree Spearman, linear CKA")
