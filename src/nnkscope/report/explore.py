"""The per-point explorer's data: each (model, epoch, layer) view's 2-D picture, per-point metrics, NNK
neighbours and the samples themselves, as one compact JSON-able dict; and the worst points."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from ..store import RunStore

__all__ = ["explorer_data", "POINT_METRICS", "NEIGHBORS_SHOWN", "WORST"]

POINT_METRICS = ["loo_soft_error_nnk", "loo_error_nnk", "diameter", "nnk_degree", "local_id", "curvature",
                 "homogeneity", "interpolation_error"]
NEIGHBORS_SHOWN = 8  # all the study keeps (studies.layerwise.NEIGHBORS_KEPT)
WORST = 8  # points listed per criterion
MAX_VIEW_POINTS = 30_000  # points over all views the page carries (~150 bytes each): keeps the page under 10 MB


def _r(values, digits: int = 4) -> list:
    """Numbers rounded to ``digits`` significant digits, NaN as None (JSON null): the page stays small."""
    a = np.asarray(values, dtype=np.float64)
    out = []
    for v in a:
        out.append(None if not np.isfinite(v) else float(f"{v:.{digits}g}"))
    return out


def explorer_data(store: RunStore) -> dict | None:
    """The explorer's data for one run, or None when its points carry no 2-D view.

    Keys: ``views`` (model, epoch, layer of each view, in model/epoch/layer order), ``x``/``y`` (per view, indexed
    by node), ``lab`` (label codes per view) with ``labels`` (their names), ``metrics`` (name -> per view values),
    ``nbr``/``nbw`` (per view, per node: NNK neighbours heaviest first and their weights; empty without a
    ``neighbors`` table), ``samples`` (per model, per node: a thumbnail, text or feature row; None without a
    ``samples`` table), ``sample_kind``, ``worst`` (lists of the worst points at each model's last view).

    Examples
    --------
    >>> import tempfile
    >>> from nnkscope.studies.layerwise import measure_layers
    >>> y, r = np.repeat([0, 1, 2], 20), np.random.default_rng(0)
    >>> store = RunStore(tempfile.mkdtemp() + "/run")
    >>> _ = measure_layers({f"l{i}": np.eye(3)[y] * (i + 1) + r.normal(size=(60, 3)) for i in range(2)}, y, store, k=5)
    >>> d = explorer_data(store)
    >>> [v["layer"] for v in d["views"]], len(d["x"][0]), d["labels"]
    (['l0', 'l1'], 60, ['0', '1', '2'])
    >>> all(1 <= len(n) <= 8 for n in d["nbr"][0])
    True
    """
    tables = store.tables()
    if "points" not in tables:
        return None
    pts = store.read("points")
    if "view_x" not in pts.columns:
        return None
    if len(pts) > MAX_VIEW_POINTS:  # keep each model's last epoch only, or give up with the reason
        last = pts.groupby("model")["epoch"].transform("max")
        pts = pts[pts["epoch"] == last]
        if len(pts) > MAX_VIEW_POINTS:
            raise InvalidParameterError(
                f"{len(pts)} points over the last epoch's layers exceed the explorer's {MAX_VIEW_POINTS} (the page "
                "would be too large to open); query the points table instead: nnkscope query RUN \"SELECT ... "
                "FROM points\"")
    order = store.read("layers")[["model", "layer", "layer_index"]].drop_duplicates(["model", "layer"])
    pts = pts.merge(order, on=["model", "layer"], how="left").sort_values(
        ["model", "epoch", "layer_index", "node"], kind="stable")
    metrics = [m for m in POINT_METRICS if m in pts.columns]
    labels = sorted(pts["label"].astype(str).unique())
    code = {name: i for i, name in enumerate(labels)}
    nbrs = store.read("neighbors") if "neighbors" in tables else None
    groups = {}
    if nbrs is not None:
        for key, sub in nbrs.sort_values(["node", "rank"]).groupby(["model", "epoch", "layer"]):
            groups[(str(key[0]), int(key[1]), str(key[2]))] = sub
    data = {"views": [], "x": [], "y": [], "lab": [], "labels": labels, "metrics": {m: [] for m in metrics},
            "nbr": [], "nbw": [], "pred": []}
    sets = {}  # (model, layer) -> [(epoch, per-node neighbour sets)] for instability
    for (model, epoch, _idx, layer), sub in pts.groupby(["model", "epoch", "layer_index", "layer"], sort=False):
        sub = sub.sort_values("node")
        n = len(sub)
        data["views"].append({"model": str(model), "epoch": int(epoch), "layer": str(layer), "n": n})
        data["x"].append(_r(sub["view_x"]))
        data["y"].append(_r(sub["view_y"]))
        data["lab"].append([code[str(v)] for v in sub["label"]])
        data["pred"].append([str(v) for v in sub["loo_prediction"]] if "loo_prediction" in sub else [])
        for m in metrics:
            data["metrics"][m].append(_r(sub[m].astype(np.float64)))
        g = groups.get((str(model), int(epoch), str(layer)))
        nb, nw = [[] for _ in range(n)], [[] for _ in range(n)]
        if g is not None:
            for node, nsub in g.groupby("node"):
                if 0 <= node < n:
                    nb[int(node)] = [int(v) for v in nsub["neighbor"].to_numpy()[:NEIGHBORS_SHOWN]]
                    nw[int(node)] = _r(nsub["weight"].to_numpy()[:NEIGHBORS_SHOWN], 3)
        data["nbr"].append(nb)
        data["nbw"].append(nw)
        sets.setdefault((str(model), str(layer)), []).append((int(epoch), [set(v) for v in nb]))
    if groups:
        data["metrics"]["instability"] = _instability(data["views"], sets)
    data["samples"], data["sample_kind"] = _samples(store, pts, tables)
    data["worst"] = _worst(data)
    return data


def _instability(views: list[dict], sets: dict) -> list:
    """1 - Jaccard overlap of each point's NNK neighbours with the previous recorded epoch (same layer); None at a
    layer's first epoch."""
    out = []
    for v in views:
        hist = sets[(v["model"], v["layer"])]
        pos = [e for e, _ in hist].index(v["epoch"])
        if pos == 0:
            out.append([None] * v["n"])
            continue
        prev, cur = hist[pos - 1][1], hist[pos][1]
        out.append([round(1 - len(a & b) / len(a | b), 4) if (a | b) else None for a, b in zip(cur, prev,
                                                                                                  strict=False)])
    return out


def _samples(store: RunStore, pts, tables) -> tuple[dict | None, str]:
    """Per model, the sample of each node (thumbnail, text or feature row), from the ``samples`` table."""
    if "samples" not in tables:
        return None, ""
    s = store.read("samples")
    kind = next((c for c in ("thumbnail", "text", "features") if c in s.columns), "")
    if not kind:
        return None, ""
    out = {}
    for model, sub in pts.groupby("model"):
        first = sub[(sub.epoch == sub.epoch.iloc[0]) & (sub.layer == sub.layer.iloc[0])].sort_values("node")
        keys = first["sample"] if "sample" in first.columns else first["node"]
        lookup = s[s["model"] == model] if "model" in s.columns else s
        lookup = dict(zip(lookup["sample"].astype(str), lookup[kind], strict=False))
        out[str(model)] = [lookup.get(str(k)) for k in keys]
    return out, kind


def _worst(data: dict) -> list[dict]:
    """For each model's last view (last epoch, deepest layer): the points with the highest soft LOO error,
    diameter and instability."""
    out = []
    last = {}
    for i, v in enumerate(data["views"]):
        last[v["model"]] = i  # views are in model/epoch/layer order: the last one per model is the deepest
    for model, i in last.items():
        for metric, what in (("loo_soft_error_nnk", "LOO error (soft)"), ("diameter", "diameter"),
                             ("instability", "instability")):
            values = data["metrics"].get(metric)
            if values is None:
                continue
            vals = np.array([np.nan if v is None else v for v in values[i]], dtype=np.float64)
            if not np.isfinite(vals).any():
                continue
            top = np.argsort(-np.nan_to_num(vals, nan=-np.inf), kind="stable")[:WORST]
            top = top[np.nan_to_num(vals[top], nan=0.0) > 0]  # a point with value 0 is not "worst"
            out.append({"model": model, "view": i, "metric": metric, "what": what,
                        "nodes": [int(t) for t in top], "values": _r(vals[top])})
    return out
