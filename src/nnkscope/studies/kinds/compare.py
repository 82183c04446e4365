"""Study kind ``compare``: models and layers against each other, across dimensions (NNK Jaccard, edge
agreement, degree Spearman, linear CKA).

Each entry of ``models`` is a built-in kind or the user's own model (``model.factory`` / ``model.checkpoint``, see
:mod:`nnkscope.studies.own`), on a built-in dataset or the user's own ``data.X`` / ``data.y``."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import OWN_DATA, OWN_MODEL, TRAIN, StudyKind, each, integer
from ..common import build_model, eval_subset, load_data, train
from ..figures import html_table, png
from ..own import Prepared, eval_rows

# bootstrap resamples and permutations per compared pair (0 = off); pairs with more points than intervals_max_n get
# NaN intervals (cost: n_boot + n_perm similarity evaluations per pair and measure)
INTERVAL_DEFAULTS = {"bootstrap": 200, "permutations": 199, "intervals_max_n": 2000}
INTERVAL_CHECKS = {"bootstrap": integer(0), "permutations": integer(0), "intervals_max_n": integer(0)}


def run_compare(cfg: dict, store: RunStore, progress=None, prepared: Prepared | None = None):
    """Train each listed model, capture its layers on the same evaluation points, compare every pair."""
    from ...nn.capture import capture
    from ..comparison import compare_features

    own = prepared is not None and prepared.data is not None
    data = prepared.data if own else load_data(cfg["data"])
    if own:
        pos = eval_rows(data.y_test, cfg["eval_per_class"], 0)
        Xe = data.X_test[pos]
    else:
        Xe, ye = eval_subset(data.X_test, data.y_test, cfg["eval_per_class"], 0)
    features = {("input", "input"): np.asarray(Xe, np.float64).reshape(len(Xe), -1)}
    built = prepared.model if prepared is not None else {}
    for entry in cfg["models"]:
        model = built.get(entry["name"]) or build_model(entry["model"], data, entry["seed"])
        if cfg["train"]["epochs"] > 0:
            train(model, data.X_train, data.y_train, cfg["train"], entry["seed"])
        for layer, H in capture(model, Xe, entry["layers"], pooling=cfg["pooling"]).items():
            features[(entry["name"], layer)] = np.asarray(H, np.float64).reshape(len(Xe), -1)
    return compare_features(features, store, k=cfg["k"], progress=progress, n_boot=cfg["bootstrap"],
                            n_perm=cfg["permutations"], max_n=cfg["intervals_max_n"])


def _refine(cfg: dict, overrides: dict) -> dict:
    """Own data replaces the built-in dataset (all test rows measured unless eval_per_class is set)."""
    data = cfg["data"]
    if data["text"]:
        raise InvalidParameterError("compare: data.text is for study layerwise with model.huggingface")
    for i, entry in enumerate(cfg["models"]):
        if entry["model"]["huggingface"]:
            raise InvalidParameterError(f"compare.models[{i}]: model.huggingface is analysed by study layerwise")
    if data["X"]:
        if isinstance(overrides.get("data"), dict) and overrides["data"].get("name"):
            raise InvalidParameterError("compare: data.name picks a built-in dataset and data.X gives your own; "
                                        "set one of them")
        data["name"] = ""
        if "eval_per_class" not in overrides:
            cfg["eval_per_class"] = 0
    elif not data["name"]:
        raise InvalidParameterError("compare: data.name is empty; name a built-in dataset or give data.X")
    names = [e["name"] for e in cfg["models"]]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"compare: model names must differ; got {names}")
    return cfg


def _prepare(cfg: dict) -> Prepared | None:
    """Load own data and own models (each seeded by its entry) and check them before anything is written."""
    from ..own import prepare_own

    own = [e for e in cfg["models"] if e["model"]["factory"] or e["model"]["checkpoint"]]
    if not own and not cfg["data"]["X"]:
        return None
    trains = cfg["train"]["epochs"] > 0
    first = None
    models, inputs = {}, {}
    for entry in cfg["models"]:
        sub = {"data": cfg["data"], "model": entry["model"], "seed": entry["seed"], "layers": entry["layers"],
               "train": cfg["train"]}
        p = prepare_own(sub, trains=trains)
        if p is None:
            continue
        first = first or p
        models[entry["name"]] = p.model
        inputs.update({f"models[{entry['name']}].{k}" if k.startswith("model") else k: v
                       for k, v in p.inputs.items()})
    return Prepared("torch", "compare", model=models, data=first.data, inputs=inputs)


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
    defaults={"data": OWN_DATA, "train": TRAIN, "k": 25, "eval_per_class": 60, "pooling": "flatten",
              "models": [{"name": "mlp_bn", "seed": 0, "layers": "blocks.*", "model": OWN_MODEL}],
              **INTERVAL_DEFAULTS},
    open_lists={"models": {"name": "model", "seed": 0, "layers": "blocks.*", "model": OWN_MODEL}},
    refine=_refine, prepare=_prepare,
    checks={"models": each(lambda e: None if isinstance(e, dict) else "a mapping"), **INTERVAL_CHECKS},
    summary="models/layers pairwise: NNK Jaccard, edge agreement, degree Spearman, linear CKA")
