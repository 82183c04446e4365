"""Study kind ``invariance``: the NNK polytope diameter of each sample among its rotated copies."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer
from ..common import build_model, layer_features, load_data, train
from ..figures import html_table, png


def run_invariance(cfg: dict, store: RunStore, progress=None):
    """Rotation invariance: diameters of each evaluation image among its rotations, with / without augmentation."""
    import pandas as pd

    from ...nn.datasets import rotate_images
    from ...nn.models import predict
    from ..invariance import augmentation_diameters

    data = load_data(cfg["data"])
    side = data.shape[0]
    angles = list(range(0, 360, cfg["angle_step"]))
    n_eval = min(cfg["n_eval"], len(data.X_test))
    rot_eval = rotate_images(data.X_test[:n_eval], side, angles)  # (n, A, pixels)
    rot90 = rotate_images(data.X_test, side, [90])[:, 0]
    for augment in cfg["augment"]:
        for seed in cfg["seeds"]:
            keys = {"augment": bool(augment), "seed": int(seed)}
            if store.has("invariance", **keys):
                continue
            hooks = {}
            if augment:  # each draw of a training image: a fresh seeded random angle of the grid (0 included)
                r = np.random.default_rng(seed)
                grid = rotate_images(data.X_train, side, angles)
                hooks["inputs"] = lambda idx, grid=grid, r=r: grid[idx, r.integers(len(angles), size=len(idx))]
            model = build_model(cfg["model"], data, seed)
            train(model, data.X_train, data.y_train, cfg["train"], seed, **hooks)
            F = layer_features(model, rot_eval.reshape(-1, side * side), cfg["layer"]).reshape(n_eval, len(angles),
                                                                                              -1)
            diam, deg = augmentation_diameters(F[:, 0], F[:, 1:])
            df = pd.DataFrame({"sample": np.arange(n_eval), "diameter": diam, "nnk_degree": deg})
            df["accuracy_upright"] = float((predict(model, data.X_test) == data.y_test).mean())
            df["accuracy_rot90"] = float((predict(model, rot90) == data.y_test).mean())
            store.write("invariance", df, **keys)
    t = store.read("invariance")
    return t.groupby(["augment", "seed"], as_index=False).agg(
        mean_diameter=("diameter", "mean"), mean_nnk_degree=("nnk_degree", "mean"),
        accuracy_upright=("accuracy_upright", "first"), accuracy_rot90=("accuracy_rot90", "first"))


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
    return {"title": "Invariance", "figures": [("Diameters", png(fig))], "summary": summary,
            "table": html_table(t.groupby(["augment", "seed"], as_index=False).mean(numeric_only=True))}


INVARIANCE = StudyKind(
    name="invariance", run=run_invariance, section=_invariance_section, tables=("invariance",),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seeds": [0, 1, 2], "layer": "blocks.1",
              "angle_step": 10, "n_eval": 200, "augment": [False, True]},
    checks={"angle_step": integer(1, 180), "augment": each(choice(False, True)),
            "data.name": choice("digits", "mnist")},
    summary="diameter of each sample's NNK polytope among its rotations, with and without augmentation")
