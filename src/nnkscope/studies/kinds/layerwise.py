"""Study kinds ``layerwise`` (every layer once, after training) and ``training`` (every layer at chosen
epochs of one run): NNK, label and class-geometry metrics per layer.

Both take the built-in models and datasets or the user's own (:mod:`nnkscope.studies.own`: a model factory and
checkpoint, arrays, a local Hugging Face encoder on sentences); ``layerwise`` also takes saved per-layer features
(``features: feats.npz``, ``nnkscope study layerwise --features``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...engine.neighbors import resolve_search
from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import OWN_DATA, OWN_MODEL, TRAIN, StudyKind, choice, each, integer
from ..common import build_model, eval_subset, load_data, train
from ..explanations import CHECKS as EXPLAIN_CHECKS
from ..explanations import DEFAULTS as EXPLAIN
from ..explanations import explain_layer, write_explanations
from ..figures import Figure
from ..own import Prepared, eval_rows, prepare_own, refine_own

LAYER_METRICS = [("mean_nnk_degree", "mean NNK degree", False), ("loo_error_nnk", "NNK leave-one-out error", False),
                 ("separation_fuzziness", "separation fuzziness D (log)", True), ("nc1", "NC1 (log)", True),
                 ("homogeneous_fraction_H", "homogeneous nodes H", False), ("mean_diameter", "mean diameter", False),
                 ("label_variation", "label variation (10-NN graph)", False),
                 ("id_twonn", "intrinsic dimension (TwoNN)", False), ("rankme", "effective rank (RankMe)", False)]


SEARCHES = ("exact", "hnsw", "ivf")  # the engine's CPU searches a config may name (resolve_search builds them)


def search_spec(search: dict):
    """The neighbour search of a study config's ``search`` mapping: ``{}`` (exact), or ``method`` (``exact``,
    ``hnsw``, ``ivf``) with that search's parameters, e.g. ``{method: hnsw, M: 32, ef_search: 256}``.

    Examples
    --------
    >>> search_spec({}).name, search_spec({"method": "hnsw", "ef_search": 256}).ef_search
    ('exact', 256)
    """
    params = dict(search)
    return dataclasses.replace(resolve_search(params.pop("method", "exact")), **params)


def _search_check(v) -> str | None:
    if not isinstance(v, dict) or v.get("method", "exact") not in SEARCHES:
        return f"a mapping with a method of {list(SEARCHES)} and its parameters, e.g. {{method: hnsw, ef_search: 256}}"
    allowed = {f.name for f in dataclasses.fields(resolve_search(v.get("method", "exact")))}
    unknown = sorted(set(v) - allowed - {"method"})
    if unknown:
        return f"a mapping whose keys are method and those of its search {sorted(allowed)}; unknown: {unknown}"
    bad = [key for key, x in v.items() if key != "method" and (isinstance(x, bool) or not isinstance(x, int)
                                                               or x < (0 if key == "seed" else 1))]
    return f"a mapping of positive integers (seed >= 0); not: {bad}" if bad else None


def _measuring(cfg: dict) -> dict:
    """The config's measuring options as :func:`~nnkscope.studies.layerwise.measure_layers` takes them:
    ``bootstrap`` (replicates of every layer-table interval, 0 = none; at 200 2.5-5 s per layer of 5,000 x 128
    on two busy cores, mostly the weighted covariance spectra), ``view`` (``spectral`` or ``umap``; UMAP's numba
    compilation adds about 15 s once per process) and ``search`` (the neighbour search: :func:`search_spec`; an
    approximate one records its recall in the layer table's ``knn_recall``)."""
    from ...engine.settings import GraphSettings

    settings = GraphSettings(k=cfg["k"], kernel="cosine", duplicates="keep", knn=search_spec(cfg["search"]))
    return {"n_boot": cfg["bootstrap"], "view": cfg["view"], "settings": settings}


def _measure_training(cfg: dict, store: RunStore, epochs, progress, prepared: Prepared | None = None,
                      executor=None) -> object:
    from ..layerwise import TrainingCallback

    own = prepared is not None and prepared.data is not None
    data = prepared.data if own else load_data(cfg["data"])
    if cfg["eval_on"] not in ("test", "train"):
        raise InvalidParameterError(f"eval_on must be 'test' or 'train'; got {cfg['eval_on']!r}")
    X, y = (data.X_train, data.y_train) if cfg["eval_on"] == "train" else (data.X_test, data.y_test)  # train: R11
    samples = None
    if own:  # the user's rows keep their identity (position in data.X) and their own labels
        pos = eval_rows(y, cfg["eval_per_class"], cfg["seed"])
        rows = data.samples_train if cfg["eval_on"] == "train" else data.samples_test
        Xe, ye, samples = X[pos], data.classes[y[pos]], rows[pos]
    else:
        Xe, ye = eval_subset(X, y, cfg["eval_per_class"], cfg["seed"])
    name = prepared.model_name if prepared is not None else cfg["model"]["kind"]
    if store.has("train_history", model=name) and all(
            store.has("points", layer="input", model=name, epoch=int(e)) for e in epochs):
        return store.read("layers")
    _write_samples(store, name, ye, samples if samples is not None else np.arange(len(Xe)), rows=Xe,
                   shape=None if own else data.shape)
    model = prepared.model if prepared is not None else build_model(cfg["model"], data, cfg["seed"])
    layers = prepared.layers if prepared is not None else cfg["layers"]
    explain_at = explain_layer(cfg, model, layers)  # checked before the first epoch is measured
    cb = TrainingCallback(store, Xe, ye, layers, every=0, epochs=epochs, model_name=name, k=cfg["k"],
                          pooling=cfg["pooling"], progress=progress, samples=samples, executor=executor,
                          **_measuring(cfg))
    if 0 in epochs:
        cb(0, model)
    spec = dict(cfg["train"], epochs=max(epochs))
    hist = train(model, data.X_train, data.y_train, spec, cfg["seed"], callback=cb) if max(epochs) > 0 else []
    # before train_history: a folder with train_history is finished, explanations included
    write_explanations(cfg, store, model, data, explain_at, model_name=name, epoch=max(epochs))
    import pandas as pd

    store.write("train_history", pd.DataFrame(hist or [{"epoch": 0, "loss": np.nan, "train_error": np.nan}]),
                model=name)
    return store.read("layers")


def _measure_minilm(cfg: dict, store: RunStore, progress, executor=None) -> None:
    """The packaged MiniLM encoder (pretrained, no training) on offline topic-labelled sentences."""
    from ...nn.capture import hidden_states
    from ...nn.datasets import topic_sentences
    from ...nn.models import load_minilm
    from ..layerwise import measure_layers

    if cfg["data"]["name"] != "sentences":
        raise InvalidParameterError("model kind 'minilm' reads text: set data.name to 'sentences'")
    texts, y, _ = topic_sentences(cfg["eval_per_class"], seed=cfg["data"]["seed"])
    if all(store.has("points", layer=f"layer{i}", model="minilm", epoch=0) for i in range(1, 7)):
        return
    _write_samples(store, "minilm", y, np.arange(len(texts)), texts=texts)
    bert, tokenizer, _ = load_minilm()
    measure_layers(hidden_states(bert, tokenizer, texts), y, store, model_name="minilm", epoch=0, k=cfg["k"],
                   executor=executor, progress=progress, **_measuring(cfg))


def _measure_precomputed(cfg: dict, store: RunStore, prepared: Prepared, progress, executor=None) -> None:
    """Saved features, or a Hugging Face encoder's hidden states (computed once, only if a layer is missing)."""
    from ..layerwise import measure_layers

    n = len(prepared.y)
    if prepared.kind == "features":
        first = next(iter(prepared.features.values()))
        _write_samples(store, prepared.model_name, prepared.y, np.arange(n),
                       rows=first if isinstance(first, np.ndarray) else None)
        measure_layers(prepared.features, prepared.y, store, model_name=prepared.model_name, epoch=0, k=cfg["k"],
                       progress=progress, samples=np.arange(n), executor=executor, **_measuring(cfg))
        return
    from ...nn.capture import hidden_states

    pooling = "cls" if cfg["pooling"] == "cls" else "mean"
    cache: dict = {}

    def state(name):
        if not cache:
            cache.update(hidden_states(prepared.model, prepared.tokenizer, prepared.texts, pooling=pooling))
        return cache[name]

    _write_samples(store, prepared.model_name, prepared.y, np.arange(n), texts=prepared.texts)
    source = {"texts": prepared.inputs["texts_fingerprint"], "model": prepared.inputs["model_fingerprint"],
              "pooling": pooling}
    measure_layers({name: (lambda name=name: state(name)) for name in prepared.layers}, prepared.y, store,
                   model_name=prepared.model_name, epoch=0, k=cfg["k"], progress=progress, samples=np.arange(n),
                   executor=executor, _source=source, **_measuring(cfg))


SAMPLE_FEATURES = 12  # values of a feature row the report shows (the rest is elided)


def _write_samples(store: RunStore, model: str, labels, keys, *, rows=None, shape=None, texts=None) -> None:
    """The evaluated samples themselves, for the report's point explorer: table ``samples`` (one part per model)
    keyed by ``sample`` (the points' ``sample`` column where they have one, else their ``node``), with ``label``
    and one of ``thumbnail`` (a base64 greyscale PNG, for images), ``text`` (sentences) or ``features`` (the
    first :data:`SAMPLE_FEATURES` values of the row)."""
    import pandas as pd

    if store.has("samples", model=model):
        return
    df = pd.DataFrame({"sample": np.asarray(keys).astype(np.int64) if np.asarray(keys).dtype.kind in "iu"
                       else np.asarray(keys).astype(str), "label": np.asarray(labels).astype(str)})
    if texts is not None:
        df["text"] = [str(t)[:300] for t in texts]
    elif rows is not None and shape is not None and len(shape) == 2:
        imgs = np.asarray(rows, dtype=np.float64).reshape(len(rows), *shape)
        lo, hi = float(imgs.min()), float(imgs.max())
        grey = np.round(255 * (imgs - lo) / (hi - lo or 1.0)).astype(np.uint8)
        df["thumbnail"] = [_png(g) for g in grey]
    elif rows is not None:
        flat = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        df["features"] = [" ".join(f"{v:.3g}" for v in r[:SAMPLE_FEATURES]) + (" …" if len(r) > SAMPLE_FEATURES
                                                                                else "") for r in flat]
    else:
        return
    store.write("samples", df, model=model)


def _png(grey: np.ndarray) -> str:
    """A greyscale uint8 image as base64 PNG (no imaging library: one IDAT chunk of unfiltered rows)."""
    import base64
    import struct
    import zlib

    h, w = grey.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in grey)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def run_layerwise(cfg: dict, store: RunStore, progress=None, executor=None, prepared: Prepared | None = None):
    """Train for ``train.epochs`` epochs, then measure every layer once (epoch = the last one).  With model kind
    ``minilm`` the pretrained sentence encoder's hidden states are measured instead (epoch 0); saved features and
    a Hugging Face folder are measured as they are (epoch 0)."""
    if prepared is not None and prepared.kind in ("features", "huggingface"):
        _measure_precomputed(cfg, store, prepared, progress, executor)
        layers = store.read("layers")
    elif prepared is None and cfg["model"]["kind"] == "minilm":
        _measure_minilm(cfg, store, progress, executor)
        layers = store.read("layers")
    else:
        layers = _measure_training(cfg, store, [cfg["train"]["epochs"]], progress, prepared, executor)
    layers = layers.sort_values(["model", "epoch", "layer_index"], kind="stable").reset_index(drop=True)
    return layers[["model", "epoch", "layer", "layer_index", "mean_nnk_degree", "loo_error_nnk",
                   "homogeneous_fraction_H", "separation_fuzziness", "label_variation", "nc1"]]


def run_training(cfg: dict, store: RunStore, progress=None, executor=None, prepared: Prepared | None = None):
    """Measure every layer at the listed epochs of one training run (epoch 0 = initialisation, or the model as
    loaded from its checkpoint)."""
    layers = _measure_training(cfg, store, sorted(set(cfg["epochs"])), progress, prepared, executor)
    layers = layers.sort_values(["model", "epoch", "layer_index"], kind="stable").reset_index(drop=True)
    return layers[["model", "epoch", "layer", "layer_index", "mean_nnk_degree", "loo_error_nnk",
                   "separation_fuzziness", "label_variation"]]


CHANGE = 0.01  # smaller absolute changes of an error rate read as "stays"
LOO_NEAR = 0.005  # "reaches" its last-layer value: within this absolute LOO error (half of CHANGE: never the input)
HIST_POINTS = 5000  # per layer in the per-point histograms (a seeded subset above)
EQUI_R = -0.95  # Pearson r of log D against the layer at or below which the law of equi-separation holds


def _layers_section(store: RunStore) -> dict:
    """The report section: takeaways, Plotly figures (across layers, through training, per-point distributions,
    training curve) and the layers table.  Traces carry ``legendgroup`` keys ``epoch E`` / ``layer L`` (prefixed
    by the model when a run holds several), so the report colours them consistently."""
    layers = store.read("layers").sort_values(["model", "epoch", "layer_index"]).reset_index(drop=True)
    metrics = [(c, t, log) for c, t, log in LAYER_METRICS if c in layers.columns]
    several = layers.model.nunique() > 1
    figs = [Figure("Metrics across layers", _across(layers, metrics, several),
                   "One line per recorded epoch; bars: 95% bootstrap intervals over points where measured. Log axes "
                   "for separation fuzziness and NC1, as in He & Su (2023).", tuple(c for c, _, _ in metrics))]
    if layers.epoch.nunique() > 1:
        figs.append(Figure("Metrics through training", _through(layers, metrics, several),
                           "One line per layer: how each layer's geometry moves as training proceeds.",
                           tuple(c for c, _, _ in metrics)))
    if "points" in store.tables():
        figs.append(Figure("Per-point distributions at the last epoch", _distributions(store, several),
                           f"Histograms (probability density) over the evaluated points (a seeded {HIST_POINTS} per "
                           "layer where there are more), one per layer.",
                           ("nnk_degree", "diameter", "homogeneity")))
    if "train_history" in store.tables():
        hist = store.read("train_history").sort_values(["model", "epoch"])
        if hist["loss"].notna().any():
            figs.append(Figure("Training curve", _history(hist),
                               "Loss and training error per epoch of the measured run.", ("loss", "train_error")))
    table = layers.drop(columns=[c for c in layers.columns if layers[c].dtype == object and c not in (
        "model", "layer", "kernel", "undefined", "view")])
    tables = {"layers": table}
    if "fits" in store.tables():
        tables["fits"] = store.read("fits").sort_values(["model", "epoch"]).reset_index(drop=True)
    return {"title": "Layers and epochs", "takeaways": _takeaways(store, layers), "figures": figs,
            "table": tables, "glossary": {}}


def _key(model: str, what: str, several: bool) -> str:
    return f"{model} {what}" if several else what


def _subplots(metrics, xtitle: str):
    from plotly.subplots import make_subplots

    cols = 3
    rows = int(np.ceil(len(metrics) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for _, t, _ in metrics], horizontal_spacing=0.07,
                        vertical_spacing=0.5 / rows)
    for i, (_, _, log) in enumerate(metrics):
        r, c = i // cols + 1, i % cols + 1
        fig.update_xaxes(title_text=xtitle, row=r, col=c)
        if log:
            fig.update_yaxes(type="log", row=r, col=c)
    fig.update_layout(height=260 * rows + 80, margin=dict(l=50, r=20, t=60, b=40), hovermode="closest")
    return fig


def _across(layers, metrics, several: bool):
    import plotly.graph_objects as go

    fig = _subplots(metrics, "layer")
    names = layers.drop_duplicates("layer_index").set_index("layer_index")["layer"]
    for i, (col, _title, _) in enumerate(metrics):
        r, c = i // 3 + 1, i % 3 + 1
        for (model, epoch), sub in layers.groupby(["model", "epoch"]):
            key = _key(model, f"epoch {int(epoch)}", several)
            err = None
            if f"{col}_ci_low" in sub and sub[f"{col}_ci_low"].notna().any():
                err = dict(type="data", symmetric=False, array=(sub[f"{col}_ci_high"] - sub[col]).to_numpy(),
                           arrayminus=(sub[col] - sub[f"{col}_ci_low"]).to_numpy(), thickness=1, width=3)
            fig.add_trace(go.Scatter(
                x=sub.layer_index, y=sub[col], mode="lines+markers", name=key, legendgroup=key,
                showlegend=i == 0, error_y=err, customdata=sub[["layer"]].to_numpy(),
                hovertemplate=f"{key}<br>%{{customdata[0]}}<br>{col} = %{{y:.4g}}<extra></extra>"), row=r, col=c)
        fig.update_xaxes(tickmode="array", tickvals=list(names.index), ticktext=list(names), row=r, col=c)
    return fig


def _through(layers, metrics, several: bool):
    import plotly.graph_objects as go

    fig = _subplots(metrics, "epoch")
    for i, (col, _title, _) in enumerate(metrics):
        r, c = i // 3 + 1, i % 3 + 1
        for (model, _idx, layer), sub in layers.groupby(["model", "layer_index", "layer"]):
            key = _key(model, f"layer {layer}", several)
            fig.add_trace(go.Scatter(x=sub.epoch, y=sub[col], mode="lines+markers", name=key, legendgroup=key,
                                     showlegend=i == 0,
                                     hovertemplate=f"{key}<br>epoch %{{x}}<br>{col} = %{{y:.4g}}<extra></extra>"),
                          row=r, col=c)
    return fig


def _distributions(store: RunStore, several: bool):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pts = store.query("SELECT p.model, p.layer, p.nnk_degree, p.diameter, p.homogeneity FROM points p JOIN "
                      "(SELECT model, max(epoch) AS e FROM points GROUP BY model) m ON p.model = m.model AND "
                      "p.epoch = m.e")
    order = store.read("layers").drop_duplicates(["model", "layer"]).sort_values(["model", "layer_index"])
    cols = ["nnk_degree", "diameter", "homogeneity"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{c} at the last epoch" for c in cols])
    for i, col in enumerate(cols):
        for model, layer in order[["model", "layer"]].itertuples(index=False):
            sub = pts[(pts.model == model) & (pts.layer == layer)]
            if sub.empty:
                continue
            if len(sub) > HIST_POINTS:  # the page carries the raw values: a seeded subset keeps it small
                sub = sub.sample(n=HIST_POINTS, random_state=0)
            key = _key(model, f"layer {layer}", several)
            fig.add_trace(go.Histogram(x=sub[col], name=key, legendgroup=key, showlegend=i == 0, opacity=0.55,
                                       histnorm="probability density", nbinsx=30,
                                       hovertemplate=f"{key}<br>{col} %{{x}}<br>density %{{y:.3g}}<extra></extra>"),
                          row=1, col=i + 1)
        fig.update_xaxes(title_text=col, row=1, col=i + 1)
    fig.update_layout(barmode="overlay", height=340, margin=dict(l=50, r=20, t=60, b=40))
    return fig


def _history(hist):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["training loss", "training error"])
    several = hist.model.nunique() > 1
    for i, col in enumerate(["loss", "train_error"]):
        for model, sub in hist.groupby("model"):
            key = _key(model, "training", several)
            fig.add_trace(go.Scatter(x=sub.epoch, y=sub[col], mode="lines+markers", name=key, legendgroup=key,
                                     showlegend=i == 0,
                                     hovertemplate=f"{key}<br>epoch %{{x}}<br>{col} = %{{y:.4g}}<extra></extra>"),
                          row=1, col=i + 1)
        fig.update_xaxes(title_text="epoch", row=1, col=i + 1)
    fig.update_layout(height=320, margin=dict(l=50, r=20, t=60, b=40))
    return fig


def _takeaways(store: RunStore, layers) -> list[str]:
    """Sentences computed from the numbers, each stating its threshold."""
    lines = []
    for model, sub in layers.groupby("model"):
        last = sub[sub.epoch == sub.epoch.max()].sort_values("layer_index")
        a, b = last.iloc[0], last.iloc[-1]
        ep = int(b.epoch)
        if b.loo_error_nnk <= a.loo_error_nnk - CHANGE:
            reach = last.iloc[1:][last.loo_error_nnk.iloc[1:] <= b.loo_error_nnk + LOO_NEAR].iloc[0]
            lines.append(f"{model}, epoch {ep}: NNK LOO error falls from {a.loo_error_nnk:.3f} ({a.layer}) to "
                         f"{b.loo_error_nnk:.3f} by {reach.layer} (first layer within {LOO_NEAR} of the last).")
        elif b.loo_error_nnk >= a.loo_error_nnk + CHANGE:
            lines.append(f"{model}, epoch {ep}: NNK LOO error rises from {a.loo_error_nnk:.3f} ({a.layer}) to "
                         f"{b.loo_error_nnk:.3f} ({b.layer}): the labels get less predictable from neighbours "
                         f"(change > {CHANGE}).")
        else:
            lines.append(f"{model}, epoch {ep}: NNK LOO error stays at {a.loo_error_nnk:.3f} -> "
                         f"{b.loo_error_nnk:.3f} from {a.layer} to {b.layer} (change under {CHANGE}).")
        lines.append(f"{model}, epoch {ep}: mean NNK degree {a.mean_nnk_degree:.1f} ({a.layer}) -> "
                     f"{b.mean_nnk_degree:.1f} ({b.layer}).")
        if sub.epoch.nunique() > 1:
            first_ep = sub[sub.epoch == sub.epoch.min()].sort_values("layer_index").iloc[-1]
            delta = b.loo_error_nnk - first_ep.loo_error_nnk
            verb = "falls" if delta <= -CHANGE else "rises" if delta >= CHANGE else "stays (change under 0.01)"
            lines.append(f"{model}, {b.layer}: through training (epoch {int(first_ep.epoch)} -> {ep}) NNK LOO "
                         f"error {verb} {first_ep.loo_error_nnk:.3f} -> {b.loo_error_nnk:.3f}.")
    if "fits" in store.tables():
        fits = store.read("fits").sort_values(["model", "epoch"])
        for _, f in fits.groupby("model").tail(1).iterrows():
            trend = "decays" if f.rho < 1 else "grows"
            verdict = "follows" if f.r <= EQUI_R else "does not follow"
            lines.append(f"{f.model}, epoch {int(f.epoch)}: separation fuzziness {trend} geometrically, rho = "
                         f"{f.rho:.2f} per layer, r = {f.r:.2f}: {verdict} the law of equi-separation "
                         f"(threshold r <= {EQUI_R}).")
    return lines


_LAYER_CHECKS = {"eval_on": choice("test", "train"), "bootstrap": integer(0), "view": choice("spectral", "umap"),
                 "search": _search_check,
                 "model.width": lambda v: None if (
    isinstance(v, int) and v > 0 or isinstance(v, list) and v and all(isinstance(w, int) and w > 0 for w in v))
    else "a positive integer or a list of them"}

def _features_check(v):
    ok = isinstance(v, str) or isinstance(v, list) and v and all(isinstance(p, str) and p for p in v)
    return None if ok else "a .npz path, or a list of .npy paths"


LAYERWISE = StudyKind(
    name="layerwise", run=run_layerwise, section=_layers_section, tables=("layers", "points", "fits"),
    defaults={"data": OWN_DATA, "model": OWN_MODEL, "train": TRAIN, "seed": 0, "layers": "blocks.*", "k": 20,
              "eval_per_class": 60, "eval_on": "test", "pooling": "flatten", "features": "", "bootstrap": 200,
              "view": "spectral", "search": {}, "explain": EXPLAIN},
    checks={**_LAYER_CHECKS, **EXPLAIN_CHECKS, "features": _features_check},
    refine=lambda cfg, raw: refine_own(cfg, raw, kind="layerwise"),
    prepare=lambda cfg: prepare_own(cfg, trains=cfg["train"]["epochs"] > 0),
    summary="every NNK, label and class-geometry metric of every layer, after training (or of saved features)")

TRAINING = StudyKind(
    name="training", run=run_training, section=_layers_section, tables=("layers", "points", "fits"),
    defaults={"data": OWN_DATA, "model": OWN_MODEL, "train": TRAIN, "seed": 0, "layers": "blocks.*", "k": 20,
              "eval_per_class": 60, "eval_on": "test", "pooling": "flatten", "epochs": [1, 5, 10, 30],
              "bootstrap": 200, "view": "spectral", "search": {}, "explain": EXPLAIN},
    checks={**_LAYER_CHECKS, **EXPLAIN_CHECKS, "epochs": each(integer(0))},
    refine=lambda cfg, raw: refine_own(cfg, raw, kind="training"),
    prepare=lambda cfg: prepare_own(cfg, trains=max(cfg["epochs"]) > 0),
    summary="the same at chosen epochs of one training run (0 = initialisation)")
