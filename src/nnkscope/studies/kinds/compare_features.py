"""Study kind ``compare-features`` (``nnkscope compare a.npz b.npz``): every layer of one saved feature set
against every layer of another, one row per (model_a, layer_a, model_b, layer_b, measure) in table
``similarity``, and a layer x layer heatmap per measure in the report.

Measures are looked up by name in :data:`MEASURES` (linear CKA, NNK-neighbourhood Jaccard, weighted edge
agreement; the last two with their node-shuffled chance level in ``chance``), then in the similarity registry
(:data:`nnkscope.similarity.MEASURES`: CKA variants, CCA, RSA, Procrustes, mutual kNN, ...), so a measure added
there is usable here by name with no change to this module.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from ...errors import InputShapeError, InvalidParameterError
from ...store import RunStore
from ..base import StudyKind, choice, each, integer
from ..common import run_units
from ..figures import Figure, Term, fmt, heatmap, section
from ..own import Prepared
from .compare import INTERVAL_CHECKS, INTERVAL_DEFAULTS

__all__ = ["COMPARE_FEATURES", "MEASURES", "available_measures", "run_compare_features"]


def _linear_cka(A, B, pair) -> tuple[float, float]:
    from ...measures.compare import linear_cka

    return linear_cka(A, B), np.nan


def _nnk_jaccard(A, B, pair) -> tuple[float, float]:
    g = pair()
    return g["jaccard"], g["jaccard_shuffled"]


def _edge_agreement(A, B, pair) -> tuple[float, float]:
    g = pair()
    return g["edge_agreement"], g["edge_agreement_shuffled"]


# name -> fn(A, B, graphs) -> (value, chance level or NaN); ``graphs()`` compares the two layers' NNK graphs once
MEASURES = {"linear_cka": _linear_cka, "nnk_jaccard": _nnk_jaccard, "edge_agreement": _edge_agreement}


def available_measures() -> list[str]:
    """Every measure name ``compare-features`` accepts: :data:`MEASURES`, then the similarity registry's."""
    from ...similarity import MEASURES as REGISTRY

    return list(MEASURES) + [m for m in REGISTRY if m not in MEASURES]


def _higher_is_similar(name: str) -> bool:
    """False for a distance of the similarity registry (Procrustes, say): its most similar pair is its minimum."""
    from ...similarity import MEASURES as REGISTRY

    return True if name in MEASURES else REGISTRY[name].higher_is_similar


def _measure(name: str):
    from ...similarity import MEASURES as REGISTRY
    from ...similarity import similarity

    if name in MEASURES:
        return MEASURES[name]
    if name not in REGISTRY:
        raise InvalidParameterError(f"unknown similarity measure {name!r}; choose from {available_measures()}")
    return lambda A, B, pair: (float(similarity(A, B, name)), np.nan)


def _prepare(cfg: dict) -> Prepared:
    """Check every feature file (headers only) and the labels before anything is written."""
    from ...nn.loaders import feature_files
    from ..own import _digest, _labels

    if not cfg["features"]:
        raise InvalidParameterError("compare-features: give one or two feature files (features: [a.npz, b.npz])")
    names = cfg["names"] or _default_names(cfg["features"])
    if len(names) != len(cfg["features"]) or len(set(names)) != len(names):
        raise InvalidParameterError(f"compare-features: names must give one distinct name per feature file; got "
                                    f"{names} for {len(cfg['features'])} file(s)")
    models, n = {}, None
    for name, path in zip(names, cfg["features"], strict=True):
        loaders, rows = feature_files([path], what=f"features[{name}]")
        if n is not None and rows != n:
            raise InputShapeError(f"compare-features: {path} has {rows} rows but {cfg['features'][0]} has {n}; "
                                  "both must describe the same points in the same order")
        models[name], n = loaders, rows
    for m in cfg["measures"]:
        _measure(m)
    inputs = {f"features[{name}]": _digest(p, None) for name, p in zip(names, cfg["features"], strict=True)}
    y = None
    if cfg["labels"]:
        classes, codes = _labels(cfg["labels"], n, None, what="labels")
        y = classes[codes]
        inputs["labels"] = _digest(cfg["labels"], None) if isinstance(cfg["labels"], str) else ""
    return Prepared("features", names[0], features=models, y=y, inputs=inputs)


def _default_names(paths) -> list[str]:
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{s}_{i}" for i, s in enumerate(stems)]  # a/feats.npz vs b/feats.npz


def run_compare_features(cfg: dict, store: RunStore, progress=None, prepared: Prepared | None = None,
                         executor=None):
    """Compare every layer of each feature set with every layer of the other (one file: with itself).  Each layer
    pair is a unit (:func:`~nnkscope.studies.common.run_units`), on ``executor``'s workers when one is given (each
    worker reads the files and builds the NNK graphs its pairs need, once); with labels, each feature set's own
    layer-wise metrics are units too."""
    prepared = prepared if prepared is not None else _prepare(cfg)
    models = prepared.features
    names = list(models)
    pairs = [(names[0], names[0])] if len(names) == 1 else list(combinations(names, 2))
    todo = [{"model_a": ma, "layer_a": la, "model_b": mb, "layer_b": lb, "index_a": ia, "index_b": ib}
            for ma, mb in pairs for ia, la in enumerate(models[ma]) for ib, lb in enumerate(models[mb])
            if not store.has("similarity", model_a=ma, layer_a=la, model_b=mb, layer_b=lb)]
    run_units(_pair_unit, _layers, cfg, store, todo, executor=executor, progress=progress, desc="layer pairs",
              shared=_cache(prepared))
    if prepared.y is not None:  # with labels, each feature set's own layer-wise metrics too
        from ..layerwise import measure_layers

        for model in names:
            measure_layers(models[model], prepared.y, store, model_name=model, epoch=0, k=cfg["k"],
                           kernel=cfg["kernel"], progress=progress, samples=np.arange(len(prepared.y)),
                           executor=executor)
    t = store.read("similarity").sort_values(["model_a", "model_b", "index_a", "index_b"], kind="stable")
    cols = ["model_a", "layer_a", "model_b", "layer_b", "measure", "value", "chance", "dim_a", "dim_b", "n",
            "ci_low", "ci_high", "p_value"]
    return t[[c for c in cols if c in t.columns]].reset_index(drop=True)  # a run folder from before intervals


def _cache(prepared: Prepared) -> dict:
    """The feature loaders and, filled as pairs need them, the loaded layers and their NNK graphs."""
    return {"models": prepared.features, "arrays": {}, "graphs": {}}


def _layers(cfg: dict) -> dict:
    return _cache(_prepare(cfg))


def _pair_unit(cfg: dict, store: RunStore, shared: dict, model_a: str, layer_a: str, model_b: str, layer_b: str,
               index_a: int, index_b: int) -> None:
    import pandas as pd

    from ...engine.pipeline import nnk_graph
    from ...measures.compare import compare_graphs

    arrays, graphs = shared["arrays"], shared["graphs"]

    def array(model, layer):
        if (model, layer) not in arrays:
            arrays[(model, layer)] = shared["models"][model][layer]()
        return arrays[(model, layer)]

    def graph(model, layer):
        if (model, layer) not in graphs:
            graphs[(model, layer)] = nnk_graph(array(model, layer), cfg["k"], kernel=cfg["kernel"],
                                               duplicates="keep", progress=False)
        return graphs[(model, layer)]

    A, B = array(model_a, layer_a), array(model_b, layer_b)
    cache: dict = {}

    def pair():
        if not cache:
            cache.update(compare_graphs(graph(model_a, layer_a), graph(model_b, layer_b), seed=cfg["seed"]))
        return cache

    rows = []
    for name in cfg["measures"]:
        value, chance = _measure(name)(A, B, pair)
        rows.append({"measure": name, "value": float(value), "chance": float(chance), "dim_a": int(A.shape[1]),
                     "dim_b": int(B.shape[1]), "n": int(len(A)), "index_a": index_a, "index_b": index_b,
                     **_interval(name, A, B, lambda: (graph(model_a, layer_a), graph(model_b, layer_b)), cfg)})
    store.write("similarity", pd.DataFrame(rows), model_a=model_a, layer_a=layer_a, model_b=model_b, layer_b=layer_b)


# this kind's measure names -> the similarity registry's (the NNK ones take the graphs built here)
_REGISTRY_NAME = {"nnk_jaccard": "nnk_jaccard", "edge_agreement": "nnk_edge_agreement"}


def _interval(name: str, A, B, graphs, cfg: dict) -> dict:
    """``ci_low``, ``ci_high``, ``p_value`` of one value (:func:`nnkscope.similarity.similarity_ci`): NaN when
    ``bootstrap`` and ``permutations`` are 0, above ``intervals_max_n`` points, or where the measure has no interval
    (cknna: no interval, its p-value only)."""
    from ...similarity.intervals import NO_INTERVAL, similarity_ci

    nan = {"ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    n_boot, n_perm = cfg["bootstrap"], cfg["permutations"]
    reg = _REGISTRY_NAME.get(name, name)
    n_boot = 0 if reg in NO_INTERVAL else n_boot
    if not (n_boot or n_perm) or len(A) > cfg["intervals_max_n"]:
        return nan
    opts = {"k": cfg["k"], "kernel": cfg["kernel"]} if reg in ("nnk_jaccard", "nnk_edge_agreement") else {}
    a, b = graphs() if opts else (A, B)
    r = similarity_ci(a, b, reg, n_boot=n_boot, n_perm=n_perm, seed=cfg["seed"], **opts)
    return {key: float(r[key]) for key in nan}


def _matrix(sub, rows: list, cols: list) -> np.ndarray:
    M = np.full((len(rows), len(cols)), np.nan)
    ri, ci = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
    for la, lb, v in zip(sub.layer_a, sub.layer_b, sub.value, strict=True):
        if la in ri and lb in ci:
            M[ri[la], ci[lb]] = v
    return M


CHANCE_MULTIPLE = 2.0  # a graph measure at least this many times its node-shuffled chance level counts as shared
GLOSSARY = {
    "model_a": Term("the first feature set (file)"), "layer_a": Term("layer (array) of the first feature set"),
    "model_b": Term("the second feature set (file)"), "layer_b": Term("layer (array) of the second feature set"),
    "measure": Term("the similarity measure of the row: linear_cka, nnk_jaccard (NNK-neighbour Jaccard), "
                    "edge_agreement (weighted NNK edge agreement) or one of nnkscope.similarity's"),
    "value": Term("the measure's value for the two layers", "[0, 1] for the built-in measures",
                  "higher = more similar (lower for a distance of nnkscope.similarity)", "nnkscope"),
    "chance": Term("the measure against a node-shuffled graph: its chance level (NaN where none is defined)",
                   "[0, 1]", "the floor to compare with", "nnkscope"),
    "dim_a": Term("feature dimension of layer_a", "integer >= 1"),
    "dim_b": Term("feature dimension of layer_b", "integer >= 1"),
    "n": Term("number of points (rows) compared", "integer"),
}


def _section(store: RunStore) -> dict:
    t = store.read("similarity").sort_values(["model_a", "model_b", "index_a", "index_b"], kind="stable")
    figs, takeaways = [], []
    for (ma, mb), sub in t.groupby(["model_a", "model_b"], sort=False):
        rows = list(dict.fromkeys(sub.sort_values("index_a", kind="stable").layer_a))  # file (depth) order
        cols = list(dict.fromkeys(sub.sort_values("index_b", kind="stable").layer_b))
        measures = list(dict.fromkeys(sub.measure))
        panels = {m: _matrix(sub[sub.measure == m], rows, cols) for m in measures}
        finite = np.concatenate([M[np.isfinite(M)] for M in panels.values()])
        # [0, 1] unless a plugged-in measure reaches beyond (a distance, say)
        lo, hi = min(0.0, finite.min(initial=0.0)), max(1.0, finite.max(initial=1.0))
        figs.append(Figure(f"{ma} vs {mb}: layer x layer similarity",
                           heatmap(panels, rows, cols, x_title=f"{mb} layer", y_title=f"{ma} layer", zmin=lo,
                                   zmax=hi, ncols=min(3, len(panels))),
                           "One panel per measure, layers in file (depth) order; a bright diagonal means the "
                           "same-depth layers correspond.", ("value",)))
        for m in measures:
            M, ms = panels[m], sub[sub.measure == m]
            if not np.isfinite(M).any():
                continue
            best = np.nanargmax(M) if _higher_is_similar(m) else np.nanargmin(M)
            i, j = np.unravel_index(best, M.shape)
            line = f"{ma} vs {mb}, {m}: most similar {rows[i]} ~ {cols[j]} ({M[i, j]:.3f})"
            chance = ms.chance.to_numpy(float)
            if np.isfinite(chance).any() and _higher_is_similar(m):
                above = int((ms.value.to_numpy(float) >= CHANCE_MULTIPLE * chance).sum())
                line += (f"; {above} of {int(np.isfinite(chance).sum())} layer pairs reach >= {CHANCE_MULTIPLE:g}x "
                         "their shuffled chance level (counted as shared structure)")
            shared = [r for r in rows if r in cols]
            if shared and ma != mb:
                diag = [M[rows.index(r), cols.index(r)] for r in shared]
                off = M[[rows.index(r) for r in shared]][:, [c for c in range(len(cols)) if cols[c] not in shared]]
                line += f"; same-named layers {fmt(np.nanmean(diag))} on average"
                if off.size:
                    line += f" vs {fmt(np.nanmean(off))} for other layers"
            takeaways.append(line + ".")
    table = t[["model_a", "layer_a", "model_b", "layer_b", "measure", "value", "chance", "dim_a", "dim_b", "n"]]
    return section("Feature-set comparison", takeaways, figs, table.reset_index(drop=True), GLOSSARY)


COMPARE_FEATURES = StudyKind(
    name="compare-features", run=run_compare_features, section=_section, tables=("similarity",),
    defaults={"features": [], "names": [], "labels": "", "k": 25, "kernel": "cosine", "seed": 0,
              "measures": ["linear_cka", "nnk_jaccard", "edge_agreement"], **INTERVAL_DEFAULTS},
    checks={"features": each(lambda p: None if isinstance(p, str) and p else "a file path"),
            "names": each(lambda p: None if isinstance(p, str) and p else "a name", non_empty=False),
            "measures": each(lambda m: None if m in available_measures() else f"one of {available_measures()}"),
            "kernel": choice("cosine", "gaussian"), "k": integer(1), **INTERVAL_CHECKS},
    prepare=_prepare,
    summary="saved features of two models, layer x layer: linear CKA, NNK Jaccard, edge agreement")
