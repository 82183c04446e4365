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
from ..figures import Figure, Term, fmt, heatmap, lines, section, spearman
from ..own import Prepared, eval_rows

# bootstrap resamples and permutations per compared pair (0 = off); pairs with more points than intervals_max_n get
# NaN intervals (cost: n_boot + n_perm similarity evaluations per pair and measure)
INTERVAL_DEFAULTS = {"bootstrap": 200, "permutations": 199, "intervals_max_n": 2000}
INTERVAL_CHECKS = {"bootstrap": integer(0), "permutations": integer(0), "intervals_max_n": integer(0)}


def run_compare(cfg: dict, store: RunStore, progress=None, prepared: Prepared | None = None, executor=None):
    """Train each listed model, capture its layers on the same evaluation points, compare every pair.  The models
    train here, one after another; the pairs are units, on ``executor``'s workers when one is given."""
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
                            n_perm=cfg["permutations"], max_n=cfg["intervals_max_n"], executor=executor)


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


CHANCE_MULTIPLE = 2.0  # NNK-neighbour overlap at least this many times its shuffled chance level counts as shared
AGREE = 0.7  # Spearman of two measures across pairs at least this counts as ranking the pairs alike

GLOSSARY = {
    "a_model": Term("model of the first representation of the pair"),
    "a_layer": Term("layer of the first representation of the pair"),
    "b_model": Term("model of the second representation of the pair"),
    "b_layer": Term("layer of the second representation of the pair"),
    "edge_agreement": Term("weighted agreement of the two NNK graphs' edges", "[0, 1]", "higher = the same graph",
                           "nnkscope"),
    "edge_agreement_shuffled": Term("the same against a node-shuffled graph: the chance level", "[0, 1]",
                                    "the floor to compare with", "nnkscope"),
    "degree_spearman": Term("Spearman correlation of each sample's NNK degree in the two representations",
                            "[-1, 1]", "higher = the same samples sit in wide neighbourhoods", "nnkscope"),
    "degree_spearman_shuffled": Term("the same with one side's samples shuffled: the chance level (~0)", "[-1, 1]",
                                     "the floor to compare with", "nnkscope"),
    "a_dim": Term("feature dimension of the first representation", "integer >= 1"),
    "b_dim": Term("feature dimension of the second representation", "integer >= 1"),
}


def _compare_section(store: RunStore) -> dict:
    t = store.read("compare")
    names = sorted(set(zip(t.a_model, t.a_layer, strict=True)) | set(zip(t.b_model, t.b_layer, strict=True)))
    pos = {n: i for i, n in enumerate(names)}
    labels = [f"{m}:{layer}" for m, layer in names]
    panels = {}
    for col in ("jaccard", "linear_cka"):
        M = np.eye(len(names))
        for a, b, v in zip(zip(t.a_model, t.a_layer, strict=True), zip(t.b_model, t.b_layer, strict=True), t[col],
                           strict=True):
            M[pos[a], pos[b]] = M[pos[b], pos[a]] = v
        panels[col] = M
    heat = heatmap(panels, labels, labels, x_title="model:layer", y_title="model:layer", zmin=0, zmax=1)
    pairs = t.assign(pair=[f"{am}:{al} vs {bm}:{bl}" for am, al, bm, bl in
                           zip(t.a_model, t.a_layer, t.b_model, t.b_layer, strict=True)])
    agree = lines(pairs, "linear_cka", "jaccard", mode="markers", x_title="linear CKA",
                  y_title="NNK-neighbour Jaccard", hover=("pair", "jaccard_ratio", "degree_spearman"))
    best = t.sort_values("jaccard_ratio", ascending=False).iloc[0]
    shared = int((t.jaccard_ratio >= CHANCE_MULTIPLE).sum())
    takeaways = [f"Most similar pair: {best.a_model}:{best.a_layer} vs {best.b_model}:{best.b_layer}, NNK "
                 f"neighbourhoods overlap {fmt(best.jaccard)} = {fmt(best.jaccard_ratio, 2)}x the shuffled chance "
                 f"level (>= {CHANCE_MULTIPLE:g}x counts as shared neighbourhoods), linear CKA "
                 f"{fmt(best.linear_cka)}.",
                 f"{shared} of {len(t)} pairs share NNK neighbourhoods (Jaccard >= {CHANCE_MULTIPLE:g}x chance)."]
    rho = spearman(t.jaccard, t.linear_cka)
    if np.isfinite(rho):
        takeaways.append(f"NNK Jaccard and linear CKA rank the {len(t)} pairs "
                         f"{'alike' if rho >= AGREE else 'differently'}: Spearman {fmt(rho, 2)} (>= {AGREE:g} "
                         "counts as alike; below, the neighbourhoods and the global alignment tell different "
                         "stories).")
    return section("Representation comparison", takeaways, [Figure("Pairwise similarity of every model:layer", heat,
                               "Each cell is one pair; the diagonal is 1 by definition. Blocks of bright cells are "
                               "groups of layers that see the data alike.", ("jaccard", "linear_cka")),
                        Figure("Neighbourhoods vs global alignment", agree,
                               "One point per pair: points far from the trend are pairs that CKA calls similar "
                               "but whose NNK neighbourhoods differ, or the reverse.",
                               ("jaccard", "linear_cka", "jaccard_ratio", "degree_spearman"))],
                   t, GLOSSARY)


COMPARE = StudyKind(
    name="compare", run=run_compare, section=_compare_section, tables=("compare",),
    defaults={"data": OWN_DATA, "train": TRAIN, "k": 25, "eval_per_class": 60, "pooling": "flatten",
              "models": [{"name": "mlp_bn", "seed": 0, "layers": "blocks.*", "model": OWN_MODEL}],
              **INTERVAL_DEFAULTS},
    open_lists={"models": {"name": "model", "seed": 0, "layers": "blocks.*", "model": OWN_MODEL}},
    refine=_refine, prepare=_prepare,
    checks={"models": each(lambda e: None if isinstance(e, dict) else "a mapping"), **INTERVAL_CHECKS},
    summary="models/layers pairwise: NNK Jaccard, edge agreement, degree Spearman, linear CKA")
