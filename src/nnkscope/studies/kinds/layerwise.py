"""Study kinds ``layerwise`` (every layer once, after training) and ``training`` (every layer at chosen
epochs of one run): NNK, label and class-geometry metrics per layer.

Both take the built-in models and datasets or the user's own (:mod:`nnkscope.studies.own`: a model factory and
checkpoint, arrays, a local Hugging Face encoder on sentences); ``layerwise`` also takes saved per-layer features
(``features: feats.npz``, ``nnkscope study layerwise --features``)."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import OWN_DATA, OWN_MODEL, TRAIN, StudyKind, choice, each, integer
from ..common import build_model, eval_subset, load_data, train
from ..explanations import CHECKS as EXPLAIN_CHECKS
from ..explanations import DEFAULTS as EXPLAIN
from ..explanations import explain_layer, write_explanations
from ..figures import grid, html_table, png
from ..own import Prepared, eval_rows, prepare_own, refine_own

LAYER_METRICS = [("mean_nnk_degree", "mean NNK degree", False), ("loo_error_nnk", "NNK leave-one-out error", False),
                 ("separation_fuzziness", "separation fuzziness D (log)", True), ("nc1", "NC1 (log)", True),
                 ("homogeneous_fraction_H", "homogeneous nodes H", False), ("mean_diameter", "mean diameter", False),
                 ("label_variation", "label variation (10-NN graph)", False),
                 ("id_twonn", "intrinsic dimension (TwoNN)", False), ("rankme", "effective rank (RankMe)", False)]


def _measuring(cfg: dict) -> dict:
    """The config's interval and picture options as :func:`~nnkscope.studies.layerwise.measure_layers` takes them:
    ``bootstrap`` (replicates of every layer-table interval, 0 = none; at 200 2.5-5 s per layer of 5,000 x 128
    on two busy cores, mostly the weighted covariance spectra) and ``view`` (``spectral`` or ``umap``; UMAP's numba
    compilation adds about 15 s once per process)."""
    return {"n_boot": cfg["bootstrap"], "view": cfg["view"]}


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
    bert, tokenizer, _ = load_minilm()
    measure_layers(hidden_states(bert, tokenizer, texts), y, store, model_name="minilm", epoch=0, k=cfg["k"],
                   executor=executor, progress=progress, **_measuring(cfg))


def _measure_precomputed(cfg: dict, store: RunStore, prepared: Prepared, progress, executor=None) -> None:
    """Saved features, or a Hugging Face encoder's hidden states (computed once, only if a layer is missing)."""
    from ..layerwise import measure_layers

    n = len(prepared.y)
    if prepared.kind == "features":
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

    source = {"texts": prepared.inputs["texts_fingerprint"], "model": prepared.inputs["model_fingerprint"],
              "pooling": pooling}
    measure_layers({name: (lambda name=name: state(name)) for name in prepared.layers}, prepared.y, store,
                   model_name=prepared.model_name, epoch=0, k=cfg["k"], progress=progress, samples=np.arange(n),
                   executor=executor, _source=source, **_measuring(cfg))


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


def _layers_section(store: RunStore) -> dict:
    layers = store.read("layers").sort_values(["model", "epoch", "layer_index"])
    metrics = [(c, t, log) for c, t, log in LAYER_METRICS if c in layers.columns]
    last_epoch = layers.groupby("model")["epoch"].max()
    figs = []
    fig, axes = grid(len(metrics))  # across layers, one line per recorded epoch
    for ax, (col, title, log) in zip(axes, metrics, strict=False):
        for (model, epoch), sub in layers.groupby(["model", "epoch"]):
            line, = ax.plot(sub.layer_index, sub[col], "o-", label=f"{model} ep {epoch}", alpha=0.4 + 0.6 * (
                epoch == last_epoch[model]))
            if f"{col}_ci_low" in sub:  # 95% bootstrap band over points
                ax.fill_between(sub.layer_index, sub[f"{col}_ci_low"], sub[f"{col}_ci_high"], color=line.get_color(),
                                alpha=0.15, lw=0)
        ax.set(title=title, xlabel="layer (0 = input)", yscale="log" if log else "linear")
        ax.set_xticks(sorted(layers.layer_index.unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figs.append(("Metrics across layers", png(fig)))
    if layers.epoch.nunique() > 1:  # across epochs, one line per layer
        fig, axes = grid(len(metrics))
        for ax, (col, title, log) in zip(axes, metrics, strict=False):
            for (model, layer), sub in layers.groupby(["model", "layer"], sort=False):
                ax.plot(sub.epoch, sub[col], "o-", label=f"{model}: {layer}")
            ax.set(title=title, xlabel="epoch", yscale="log" if log else "linear")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        figs.append(("Metrics through training", png(fig)))
    pts = store.query("SELECT p.layer, p.nnk_degree, p.diameter, p.homogeneity FROM points p JOIN "
                      "(SELECT model, max(epoch) AS e FROM points GROUP BY model) m ON p.model = m.model AND "
                      "p.epoch = m.e")
    fig, axes = grid(3)
    for ax, col in zip(axes, ["nnk_degree", "diameter", "homogeneity"], strict=False):
        for layer, sub in pts.groupby("layer", sort=False):
            ax.hist(sub[col], bins=30, histtype="step", label=layer, density=True)
        ax.set(title=f"{col} at the last epoch")
    axes[0].legend(fontsize=7)
    figs.append(("Per-point distributions", png(fig)))
    if "view_x" in store.read("points").columns:
        how = ("UMAP on its NNK graph's kNN candidates" if "umap" in set(layers.get("view", ())) else
               "spectral embedding of its NNK graph; PCA for large layers")
        figs.append((f"Each layer in 2-D ({how}), last epoch, coloured by label", _views(store)))
    table = layers.drop(columns=[c for c in layers.columns if layers[c].dtype == object and c not in (
        "model", "layer", "kernel")])
    return {"title": "Layers and epochs", "figures": figs, "summary": _summary(store, layers),
            "table": html_table(table)}


def _summary(store: RunStore, layers) -> list[str]:
    lines = []
    for model, sub in layers.groupby("model"):
        last = sub[sub.epoch == sub.epoch.max()].sort_values("layer_index")
        first_row, last_row = last.iloc[0], last.iloc[-1]
        lines.append(f"{model}, epoch {int(last_row.epoch)}: NNK leave-one-out error {first_row.loo_error_nnk:.3f} "
                     f"on the {first_row.layer} and {last_row.loo_error_nnk:.3f} on {last_row.layer}; mean NNK "
                     f"degree {first_row.mean_nnk_degree:.1f} -> {last_row.mean_nnk_degree:.1f}.")
    if "fits" in store.tables():
        fits = store.read("fits").sort_values(["model", "epoch"])
        for _, f in fits.groupby("model").tail(1).iterrows():
            verdict = "follows" if f.r <= -0.95 else "does not follow"
            lines.append(f"{f.model}, epoch {int(f.epoch)}: separation fuzziness changes by a factor rho = "
                         f"{f.rho:.3f} per layer (Pearson r = {f.r:.3f}); the net {verdict} the law of "
                         "equi-separation.")
    return lines


_LAYER_CHECKS = {"eval_on": choice("test", "train"), "bootstrap": integer(0), "view": choice("spectral", "umap"),
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
              "view": "spectral", "explain": EXPLAIN},
    checks={**_LAYER_CHECKS, **EXPLAIN_CHECKS, "features": _features_check},
    refine=lambda cfg, raw: refine_own(cfg, raw, kind="layerwise"),
    prepare=lambda cfg: prepare_own(cfg, trains=cfg["train"]["epochs"] > 0),
    summary="every NNK, label and class-geometry metric of every layer, after training (or of saved features)")

TRAINING = StudyKind(
    name="training", run=run_training, section=_layers_section, tables=("layers", "points", "fits"),
    defaults={"data": OWN_DATA, "model": OWN_MODEL, "train": TRAIN, "seed": 0, "layers": "blocks.*", "k": 20,
              "eval_per_class": 60, "eval_on": "test", "pooling": "flatten", "epochs": [1, 5, 10, 30],
              "bootstrap": 200, "view": "spectral", "explain": EXPLAIN},
    checks={**_LAYER_CHECKS, **EXPLAIN_CHECKS, "epochs": each(integer(0))},
    refine=lambda cfg, raw: refine_own(cfg, raw, kind="training"),
    prepare=lambda cfg: prepare_own(cfg, trains=max(cfg["epochs"]) > 0),
    summary="the same at chosen epochs of one training run (0 = initialisation)")


def _views(store: RunStore) -> str:
    """One scatter per layer of the last epoch of the first model, points coloured by label."""
    pts = store.read("points")
    model = sorted(pts["model"].unique())[0]
    pts = pts[(pts["model"] == model) & (pts["epoch"] == pts[pts["model"] == model]["epoch"].max())]
    layers = store.read("layers")
    order = layers[layers["model"] == model].drop_duplicates("layer").sort_values("layer_index")["layer"].tolist()
    order = [name for name in order if name in set(pts["layer"])]
    fig, axes = grid(len(order))
    codes = {c: i for i, c in enumerate(sorted(pts["label"].astype(str).unique()))}
    for ax, name in zip(axes, order, strict=False):
        sub = pts[pts["layer"] == name]
        ax.scatter(sub["view_x"], sub["view_y"], c=[codes[str(v)] for v in sub["label"]], cmap="tab10", s=4,
                   alpha=0.7, lw=0)
        ax.set(title=f"{model}: {name}", xticks=[], yticks=[])
    return png(fig)
