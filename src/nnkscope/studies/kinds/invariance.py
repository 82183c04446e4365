"""Study kind ``invariance``: the NNK polytope diameter of each sample among its rotated copies."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer
from ..common import build_model, layer_features, load_data, run_units, train
from ..figures import Figure, Term, density, fmt, lines, long, section


def run_invariance(cfg: dict, store: RunStore, progress=None, executor=None):
    """Rotation invariance: diameters of each evaluation image among its rotations, with / without augmentation.
    Each (augment, seed) model is a unit (:func:`~nnkscope.studies.common.run_units`), on ``executor``'s workers
    when one is given."""
    todo = [{"augment": bool(a), "seed": int(s)} for a in cfg["augment"] for s in cfg["seeds"]]
    todo = [keys for keys in todo if not store.has("invariance", **keys)]
    run_units(_invariance_unit, _rotated, cfg, store, todo, executor=executor, progress=progress, desc="models")
    t = store.read("invariance")
    return t.groupby(["augment", "seed"], as_index=False).agg(
        mean_diameter=("diameter", "mean"), mean_nnk_degree=("nnk_degree", "mean"),
        accuracy_upright=("accuracy_upright", "first"), accuracy_rot90=("accuracy_rot90", "first"))


def _rotated(cfg: dict) -> dict:
    """What every unit reads: the data, the evaluation images at every angle, the test images at 90 degrees."""
    from ...nn.datasets import rotate_images

    data = load_data(cfg["data"])
    side = data.shape[0]
    angles = list(range(0, 360, cfg["angle_step"]))
    n_eval = min(cfg["n_eval"], len(data.X_test))
    return {"data": data, "side": side, "angles": angles, "n_eval": n_eval,
            "rot_eval": rotate_images(data.X_test[:n_eval], side, angles),  # (n, A, pixels)
            "rot90": rotate_images(data.X_test, side, [90])[:, 0]}


def _invariance_unit(cfg: dict, store: RunStore, shared: dict, augment: bool, seed: int) -> None:
    import pandas as pd

    from ...nn.datasets import rotate_images
    from ...nn.models import predict
    from ..invariance import augmentation_diameters

    data, side, angles, n_eval = shared["data"], shared["side"], shared["angles"], shared["n_eval"]
    hooks = {}
    if augment:  # each draw of a training image: a fresh seeded random angle of the grid (0 included)
        r = np.random.default_rng(seed)
        grid = rotate_images(data.X_train, side, angles)
        hooks["inputs"] = lambda idx: grid[idx, r.integers(len(angles), size=len(idx))]
    model = build_model(cfg["model"], data, seed)
    train(model, data.X_train, data.y_train, cfg["train"], seed, **hooks)
    F = layer_features(model, shared["rot_eval"].reshape(-1, side * side), cfg["layer"]).reshape(n_eval, len(angles),
                                                                                                -1)
    diam, deg = augmentation_diameters(F[:, 0], F[:, 1:])
    df = pd.DataFrame({"sample": np.arange(n_eval), "diameter": diam, "nnk_degree": deg})
    df["accuracy_upright"] = float((predict(model, data.X_test) == data.y_test).mean())
    df["accuracy_rot90"] = float((predict(model, shared["rot90"]) == data.y_test).mean())
    store.write("invariance", df, augment=augment, seed=seed)


CHANGE = 0.1  # a relative change of the mean diameter at least this counts as augmentation making a difference
GLOSSARY = {
    "augment": Term("whether the model was trained with randomly rotated copies of its training images"),
    "sample": Term("index of the evaluation image"),
    "diameter": Term("diameter of the sample's NNK polytope among its rotated copies (cosine geometry)",
                     "[0, 2]", "0 = all rotations land on the same point: invariant", "Shekkizhar & Ortega"),
    "nnk_degree": Term("number of rotated copies that are NNK neighbours of the upright sample", "[0, angles - 1]",
                       "", "Shekkizhar & Ortega"),
    "mean_diameter": Term("mean of the per-sample diameters", "[0, 2]", "lower = more rotation-invariant",
                          "nnkscope"),
    "mean_nnk_degree": Term("mean of the per-sample NNK degrees among the rotations", "[0, angles - 1]", "",
                            "nnkscope"),
    "accuracy_upright": Term("test accuracy on the upright test images", "[0, 1]", "higher = better"),
    "accuracy_rot90": Term("test accuracy on the test images rotated by 90 degrees", "[0, 1]",
                           "close to accuracy_upright = invariant in its predictions"),
}


def _arm(augment) -> str:
    return "with augmentation" if augment else "without augmentation"


def _invariance_section(store: RunStore) -> dict:
    import pandas as pd

    t = store.read("invariance")
    table = t.groupby(["augment", "seed"], as_index=False).agg(
        mean_diameter=("diameter", "mean"), mean_nnk_degree=("nnk_degree", "mean"),
        accuracy_upright=("accuracy_upright", "first"), accuracy_rot90=("accuracy_rot90", "first"))
    d = density(t.assign(run=[f"{_arm(a)}, seed {s}" for a, s in zip(t.augment, t.seed, strict=True)]),
                "diameter", "run", bins=30, range=(0.0, 2.0))
    dist = lines(d, "diameter", "density", by="run", key="run {}", mode="lines", x_title="polytope diameter among "
                 "the rotated copies (0 = invariant)", y_title="density")
    acc = long(table.assign(arm=table.augment.map(_arm)), ["accuracy_upright", "accuracy_rot90"], name="test",
               labels={"accuracy_upright": "upright", "accuracy_rot90": "rotated 90 degrees"})
    accf = lines(acc.groupby(["arm", "test"], as_index=False, sort=False).value.agg(["mean", "std"]), "arm", "mean",
                 by="test", band="std", mode="bar", colour={"upright": "#4477AA", "rotated 90 degrees": "#EE6677"},
                 x_title="training", y_title="test accuracy (mean over seeds)")
    agg = table.groupby("augment").agg(d=("mean_diameter", "mean"), up=("accuracy_upright", "mean"),
                                       rot=("accuracy_rot90", "mean"))
    takeaways = [f"{_arm(aug).capitalize()}: mean diameter {fmt(r.d)}, accuracy {fmt(r.up)} upright and "
                 f"{fmt(r.rot)} rotated by 90 degrees." for aug, r in agg.iterrows()]
    if {False, True} <= set(agg.index):
        change = (agg.d[True] - agg.d[False]) / agg.d[False] if agg.d[False] > 0 else np.nan
        verdict = ("more invariant" if change <= -CHANGE else "less invariant" if change >= CHANGE
                   else "no clear change")
        takeaways.insert(0, f"Training with rotations changes the mean diameter by {100 * change:+.0f}% "
                            f"({fmt(agg.d[False])} -> {fmt(agg.d[True])}): {verdict} (a change of at least "
                            f"{100 * CHANGE:.0f}% counts).")
    return section("Invariance", takeaways, [
        Figure("Diameters among rotated copies", dist, "Each run's distribution of per-sample diameters: mass "
               "near 0 means the rotations of a sample stay together in the layer.", ("diameter",)),
        Figure("Accuracy upright vs rotated", accf, "Error bars: standard deviation over seeds. Invariant "
               "geometry should come with a small gap between the bars.", ("accuracy_upright", "accuracy_rot90"))],
        pd.DataFrame(table), GLOSSARY)


INVARIANCE = StudyKind(
    name="invariance", run=run_invariance, section=_invariance_section, tables=("invariance",),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seeds": [0, 1, 2], "layer": "blocks.1",
              "angle_step": 10, "n_eval": 200, "augment": [False, True]},
    checks={"angle_step": integer(1, 180), "augment": each(choice(False, True)),
            "data.name": choice("digits", "mnist")},
    summary="diameter of each sample's NNK polytope among its rotations, with and without augmentation")
