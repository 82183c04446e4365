"""Explanations of test points in ``layerwise`` and ``training`` runs, and their report section.

After training, a bounded number of test points (``explain.n_queries``, default 20) are explained at one layer
(``explain.layer``; default the last measured layer) by the NNK classifier fit on the training rows' features
(``explain.n_train`` of them, seeded; 0 = all) at that layer: :func:`nnkscope.measures.explain.explain` lists each
query's NNK neighbours with their weights, and the prediction is exactly their weighted vote.  The table
``explanations`` has one row per (query, neighbour); for images it keeps a small PNG thumbnail of each query and
neighbour (at most ``n_queries * k`` of them) so the report can show them.

The report draws :func:`explanations_section` whenever a run folder holds the table (it is registered by table in
:data:`nnkscope.studies.registry.SECTIONS`, not as a study kind: no study writes it alone).
"""

from __future__ import annotations

import base64

import numpy as np

from ..errors import InvalidParameterError
from ..store import RunStore
from .base import integer
from .figures import Figure, Term

__all__ = ["DEFAULTS", "CHECKS", "explain_layer", "write_explanations", "explanations_section", "GLOSSARY"]

DEFAULTS = {"n_queries": 20, "layer": "", "n_train": 2000}
CHECKS = {"explain.n_queries": integer(0), "explain.n_train": integer(0)}
MAX_SHOWN = 8  # queries drawn with thumbnails in the report
MAX_NEIGHBOURS_SHOWN = 6


def explain_layer(cfg: dict, model, layers) -> str | None:
    """The layer whose features explain the test points (None when ``explain.n_queries`` is 0), checked against
    the model's measured layers before anything is trained or written."""
    from .layerwise import _layer_names

    ex = cfg["explain"]
    if ex["n_queries"] == 0:
        return None
    names = ["input", *_layer_names(model, layers)]
    if not ex["layer"]:
        return names[-1]
    if ex["layer"] not in names:
        raise InvalidParameterError(f"explain.layer {ex['layer']!r} is not one of the measured layers {names}; "
                                    "choose one of them or leave it empty (the last one)")
    return ex["layer"]


def _features(model, X, layer: str, pooling: str) -> np.ndarray:
    from ..nn.capture import capture

    if layer == "input":
        return np.asarray(X, np.float64).reshape(len(X), -1)
    device = next((p.device for p in model.parameters()), "cpu")
    return np.asarray(capture(model, X, [layer], pooling=pooling, device=device)[layer], np.float64).reshape(len(X),
                                                                                                          -1)


def _thumbnails(rows: np.ndarray, shape, lo: float, hi: float) -> list[str] | None:
    """Base64 PNGs of image rows (None for signals and feature rows: nothing to look at)."""
    from ..measures.explain import _png_gray

    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        return None
    span = hi - lo if hi > lo else 1.0
    out = []
    for r in np.asarray(rows, np.float64):
        img = r.reshape(shape)
        img = img.reshape(-1, *shape[-2:]).mean(0) if img.ndim > 2 else img  # channels: their mean
        v = np.clip((img - lo) / span, 0.0, 1.0)
        out.append(base64.b64encode(_png_gray((255 * (1.0 - v)).round().astype(np.uint8))).decode())
    return out


def write_explanations(cfg: dict, store: RunStore, model, data, layer: str | None, *, model_name: str,
                       epoch: int) -> None:
    """Explain ``explain.n_queries`` seeded test points of ``data`` at ``layer`` (see the module docstring) into
    the table ``explanations`` (keys ``model``, ``epoch``); nothing when ``layer`` is None or it is there."""
    from ..measures.explain import explain

    if layer is None or store.has("explanations", model=model_name, epoch=int(epoch)):
        return
    ex = cfg["explain"]
    rng = np.random.default_rng(cfg["seed"])
    q = np.sort(rng.choice(len(data.X_test), min(ex["n_queries"], len(data.X_test)), replace=False))
    n_train = len(data.X_train)
    t = np.sort(rng.choice(n_train, ex["n_train"], replace=False)) if 0 < ex["n_train"] < n_train else \
        np.arange(n_train)
    labels = (lambda c: data.classes[c]) if data.classes is not None else (lambda c: c)
    F_train = _features(model, data.X_train[t], layer, cfg["pooling"])
    F_query = _features(model, data.X_test[q], layer, cfg["pooling"])
    table = explain(F_train, labels(data.y_train[t]), F_query, k=min(cfg["k"], len(t) - 1))
    table = table.drop(columns=[c for c in table.columns if c.startswith("proba_")])
    query_ids = data.samples_test[q] if data.samples_test is not None else q
    train_ids = data.samples_train[t] if data.samples_train is not None else t
    qpos, npos = table["query"].to_numpy(), table["neighbor"].to_numpy()
    table["label"] = labels(data.y_test[q])[qpos]
    table["correct"] = table["prediction"].to_numpy() == table["label"].to_numpy()
    thumbs_q = _thumbnails(data.X_test[q], data.shape, float(np.min(data.X_train)), float(np.max(data.X_train)))
    if thumbs_q is not None:
        used = np.unique(npos)
        thumbs_n = dict(zip(used.tolist(), _thumbnails(data.X_train[t][used], data.shape, float(np.min(
            data.X_train)), float(np.max(data.X_train))), strict=True))
        table["query_thumbnail"] = [thumbs_q[i] for i in qpos]
        table["neighbor_thumbnail"] = [thumbs_n[i] for i in npos.tolist()]
    table["query"] = np.asarray(query_ids)[qpos]
    table["neighbor"] = np.asarray(train_ids)[npos]
    table.insert(0, "layer", layer)
    store.write("explanations", table, model=model_name, epoch=int(epoch))


# --------------------------------------------------------------------------------------------------------------
# report section (the report's contract: nnkscope.studies.figures)

GLOSSARY = {
    "query": Term("the explained test point (its row in the test split, or in your data)", "row id", "",
                  "nnkscope"),
    "label": Term("the test point's true label", "", "", ""),
    "prediction": Term("the NNK classifier's prediction: the weighted vote of the neighbours listed", "a class",
                       "", "Shekkizhar & Ortega, DeepNNK"),
    "correct": Term("prediction == label", "True / False", "", ""),
    "reliability": Term("min(1, typical polytope diameter of the predicted class / the query's polytope diameter)",
                        "[0, 1]", "1 = interpolated like a typical training point; below 0.5 = from far-apart "
                        "neighbours: do not trust", "nnkscope, after DeepNNK"),
    "diameter": Term("largest distance between two points of the query and its NNK neighbours", "[0, 2] (cosine)",
                     "lower = a tighter neighbourhood", "Shekkizhar & Ortega, DeepNNK"),
    "class_diameter": Term("median diameter of the predicted class's training points, each interpolated from the "
                           "others", "[0, 2] (cosine)", "the yardstick of reliability", "nnkscope"),
    "relative_diameter": Term("diameter / class_diameter", "[0, inf)", "above 1 = wider than typical", "nnkscope"),
    "rank": Term("the neighbour's place by weight (0 = largest)", "integer >= 0", "", "nnkscope"),
    "neighbor": Term("the training point (its row in the training split, or in your data)", "row id", "",
                     "nnkscope"),
    "neighbor_label": Term("the training point's label", "", "", ""),
    "weight": Term("the neighbour's NNK weight theta (non-negative least squares on the kernel)", "[0, inf)",
                   "larger = more of the vote", "Shekkizhar & Ortega, NNK graphs"),
    "share": Term("weight / the query's total weight: the neighbour's part of the vote", "[0, 1]", "", "nnkscope"),
    "fallback": Term("no positive weight: the nearest training point's label is the prediction", "True / False",
                     "", "nnkscope"),
    "n_neighbors": Term("number of NNK neighbours of the query (positive weights among its k candidates)",
                        "[1, k]", "", "Shekkizhar & Ortega, NNK graphs"),
    "query_text": Term("the test point's sentence", "", "", ""),
    "neighbor_text": Term("the training point's sentence", "", "", ""),
    "interpolation_error": Term("relative error of the NNK interpolation of the query from its neighbours",
                                "[0, 1]", "lower = the query lies inside its neighbours' polytope", "nnkscope"),
}


def _latest(t):
    last = t.groupby("model")["epoch"].transform("max")
    return t[t["epoch"] == last]


def _vote_figure(t) -> Figure:
    """Per query, the neighbours' shares of the vote as a stacked bar, one colour per neighbour label."""
    import plotly.graph_objects as go

    t = t.copy()
    t["row"] = [f"{m} q{q} (label {lab}, pred {p})" for m, q, lab, p in zip(t["model"], t["query"], t["label"],
                                                                          t["prediction"], strict=True)]
    fig = go.Figure()
    for lab, sub in t.groupby("neighbor_label", sort=True):
        text = [f"neighbour {n}<br>label {lab}<br>weight {w:.3g}<br>share {s:.0%}" + (
            f"<br>{str(x)[:80]}" if x is not None else "") for n, w, s, x in zip(
            sub["neighbor"], sub["weight"], sub["share"],
            sub["neighbor_text"] if "neighbor_text" in sub else [None] * len(sub), strict=True)]
        fig.add_trace(go.Bar(x=[round(float(s), 4) for s in sub["share"]], y=sub["row"].tolist(), orientation="h",
                             name=f"neighbour label {lab}", legendgroup=f"label {lab}", hovertext=text,
                             hoverinfo="text"))
    fig.update_layout(barmode="stack", height=120 + 22 * t["row"].nunique(), xaxis_title="share of the vote",
                      yaxis=dict(autorange="reversed", automargin=True), margin=dict(l=20, r=20, t=30, b=50))
    return Figure("Why each test point got its prediction", fig,
                  "Each bar is one explained test point; its segments are the NNK neighbours among the training "
                  "points, sized by their share of the vote and coloured by their label: the prediction is the "
                  "colour with the largest total. Hover a segment for the neighbour.",
                  ("share", "neighbor_label", "prediction", "label"))


def _reliability_figure(per_query) -> Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    for model, sub in per_query.groupby("model", sort=False):
        for ok, name, symbol in ((True, "correct", "circle"), (False, "wrong", "x")):
            s = sub[sub["correct"] == ok]
            if len(s):
                fig.add_trace(go.Scatter(
                    x=[round(float(v), 4) for v in s["reliability"]], y=[round(float(v), 4) for v in s["diameter"]],
                    mode="markers", marker_symbol=symbol, marker_size=9, name=f"model {model}: {name}",
                    legendgroup=f"model {model}", hovertext=[f"query {q}<br>label {lab}, prediction {p}" for q, lab, p
                                                            in zip(s["query"], s["label"], s["prediction"],
                                                                   strict=True)]))
    fig.add_vline(x=0.5, line_dash="dot", line_color="grey")
    fig.update_layout(height=360, xaxis_title="reliability", yaxis_title="polytope diameter",
                      margin=dict(l=60, r=20, t=30, b=50))
    return Figure("Reliability of each explanation", fig,
                  "Left of the dotted line (reliability < 0.5) a test point is interpolated from neighbours more "
                  "than twice as far apart as a typical training point of its predicted class: its prediction "
                  "deserves less trust. Crosses are wrong predictions.", ("reliability", "diameter", "correct"))


def _thumbnail_figure(t) -> Figure | None:
    """The first queries and their largest-weight neighbours as small images (hover: id, label, weight)."""
    import plotly.graph_objects as go

    if "query_thumbnail" not in t:
        return None
    queries = list(dict.fromkeys(zip(t["model"], t["query"], strict=True)))[:MAX_SHOWN]
    fig = go.Figure()
    xs, ys, text = [], [], []
    for row, (model, q) in enumerate(queries):
        sub = t[(t["model"] == model) & (t["query"] == q)].sort_values("rank").head(MAX_NEIGHBOURS_SHOWN)
        first = sub.iloc[0]
        cells = [(first["query_thumbnail"], f"query {q}<br>label {first['label']}<br>prediction "
                  f"{first['prediction']}<br>reliability {first['reliability']:.2f}")]
        cells += [(r["neighbor_thumbnail"], f"neighbour {r['neighbor']}<br>label {r['neighbor_label']}<br>weight "
                   f"{r['weight']:.3g} ({r['share']:.0%})") for _, r in sub.iterrows()]
        for col, (png, tip) in enumerate(cells):
            x = col + (0.3 if col else 0)  # a gap between the query and its neighbours
            fig.add_layout_image(source=f"data:image/png;base64,{png}", x=x, y=-row, xref="x", yref="y",
                                 sizex=0.9, sizey=0.9, xanchor="center", yanchor="middle", layer="above")
            xs.append(x)
            ys.append(-row)
            text.append(tip)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=30, opacity=0), hovertext=text,
                             hoverinfo="text", showlegend=False))
    fig.update_xaxes(visible=False, range=[-0.6, MAX_NEIGHBOURS_SHOWN + 0.9])
    fig.update_yaxes(visible=False, range=[-len(queries) + 0.4, 0.6], scaleanchor="x")
    fig.update_layout(height=60 + 70 * len(queries), margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white")
    return Figure("Test points and their heaviest neighbours", fig,
                  f"First column: the test point; then its {MAX_NEIGHBOURS_SHOWN} largest-weight NNK neighbours "
                  "among the training points, left to right. Hover for labels and weights.",
                  ("query", "neighbor", "weight"))


def explanations_section(store: RunStore) -> dict:
    """The report section of the ``explanations`` table (contract: :mod:`nnkscope.studies.figures`)."""
    t = _latest(store.read("explanations"))
    per_query = t.sort_values("rank").groupby(["model", "query"], sort=False).first().reset_index()
    takeaways = []
    for model, sub in per_query.groupby("model", sort=False):
        n, low = len(sub), sub["reliability"] < 0.5
        takeaways.append(
            f"{model}, layer {sub['layer'].iloc[0]}, epoch {int(sub['epoch'].iloc[0])}: {int(sub['correct'].sum())} "
            f"of {n} explained test points are predicted correctly by the NNK classifier, from "
            f"{sub['n_neighbors'].mean():.1f} NNK neighbours on average.")
        takeaways.append(
            f"{model}: {int(low.sum())} of {n} explanations have reliability below 0.5 (polytope more than twice "
            f"as wide as its predicted class's typical one); {int((~sub['correct'][low]).sum())} of those are "
            f"wrong, against {int((~sub['correct'][~low]).sum())} of the other {int((~low).sum())}.")
    figures = [_vote_figure(t), _reliability_figure(per_query)]
    thumbs = _thumbnail_figure(t)
    if thumbs is not None:
        figures.append(thumbs)
    shown = [c for c in ("model", "epoch", "layer", "query", "label", "prediction", "correct", "reliability",
                         "diameter", "class_diameter", "rank", "neighbor", "neighbor_label", "weight", "share",
                         "query_text", "neighbor_text") if c in t.columns]
    table = t[shown].reset_index(drop=True)
    return {"title": "Explanations: test points and their NNK neighbours", "takeaways": takeaways,
            "figures": figures, "table": table, "glossary": {c: GLOSSARY[c] for c in shown if c in GLOSSARY}}
