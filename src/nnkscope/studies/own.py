"""The user's own model, data or saved features in a study config: checked, loaded and fingerprinted before
anything is written.

Config keys (kinds ``layerwise`` and ``training``; ``compare`` takes the model keys per entry of ``models``)::

    model:
      factory: path/to/net.py:TinyCNN   # or "package.module:callable"; called with kwargs (seeded by `seed`)
      kwargs: {width: 16}
      checkpoint: tiny.pt               # a state_dict, read with torch.load(weights_only=True)
      checkpoint_trusted: false         # true: also unpickle a whole model saved with torch.save(model)
      huggingface: path/to/folder       # a local Hugging Face encoder and its tokenizer (text)
    data:
      X: x.npy                          # model inputs (.npy/.npz/.pt) or a factory "file.py:fn" -> X or (X, y)
      y: y.npy                          # labels of any hashable type (.npy/.npz/.pt/.txt or an inline list)
      text: sentences.txt               # one sentence per line (with model.huggingface), or an inline list
    features: feats.npz                 # saved per-layer features instead of a model (layerwise only)

Rows are identified by their position in the user's data: every per-point table gets a ``sample`` column.
Which rows are measured: with ``train.epochs: 0`` (the model as loaded) every row; when the study trains, a seeded
stratified split (``data.test_size``, ``data.seed``) gives the training rows, and ``eval_on`` (test by default)
the measured ones.  ``eval_per_class`` (0 = all, the default for own data) takes a balanced subset of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validate import check_labels
from ..errors import InputShapeError, InvalidParameterError
from ..io import fingerprint
from .common import Data

__all__ = ["Prepared", "own_source", "refine_own", "prepare_own", "stratified_split", "eval_rows"]


@dataclass
class Prepared:
    """What :func:`prepare_own` loaded and checked: the inputs of one study, and their fingerprints.

    ``kind`` is ``"torch"`` (a model on arrays), ``"huggingface"`` (an encoder on sentences) or ``"features"``.
    ``inputs`` goes into the run manifest: content hashes of every file the config names and the fingerprints of
    the data, labels and model weights as loaded, so a changed file at the same path is never taken for the old.
    """

    kind: str
    model_name: str
    model: object = None
    tokenizer: object = None
    data: Data | None = None
    texts: list | None = None
    features: dict | None = None
    y: np.ndarray | None = None
    layers: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)


def own_source(cfg: dict) -> str | None:
    """``"features"``, ``"huggingface"``, ``"torch"`` or None (the built-in zoo) for a resolved config."""
    model, data = cfg.get("model", {}), cfg.get("data", {})
    if cfg.get("features"):
        return "features"
    if model.get("huggingface"):
        return "huggingface"
    if model.get("factory") or model.get("checkpoint") or data.get("X"):
        return "torch"
    return None


def refine_own(cfg: dict, overrides: dict, *, kind: str) -> dict:
    """Cross-key checks and source-dependent defaults of a config that may name the user's own inputs.

    Own data (``data.X``, ``data.text``, ``features``) replaces the built-in dataset (``data.name`` becomes "")
    and is measured whole unless ``eval_per_class`` is set; features and Hugging Face hidden states are all
    measured unless ``layers`` is set.
    """
    source = own_source(cfg)
    data, model = cfg["data"], cfg["model"]
    raw_data = overrides.get("data", {}) if isinstance(overrides.get("data"), dict) else {}
    own_data = bool(data["X"] or data["text"] or cfg.get("features"))
    if own_data:
        if raw_data.get("name"):
            raise InvalidParameterError(f"{kind}: data.name picks a built-in dataset and data.X / data.text / "
                                        "features give your own; set one of them")
        data["name"] = ""
        if "eval_per_class" not in overrides:
            cfg["eval_per_class"] = 0
    elif not data["name"]:
        raise InvalidParameterError(f"{kind}: data.name is empty; name a built-in dataset or give data.X")
    if source in ("features", "huggingface") and "layers" not in overrides:
        cfg["layers"] = "**"
    epochs = max(cfg["epochs"]) if kind == "training" else cfg["train"]["epochs"]
    model_keys = [k for k in ("factory", "checkpoint", "huggingface") if model[k]]
    if source == "features":
        if kind != "layerwise":
            raise InvalidParameterError(f"{kind}: saved features have no epochs; run study layerwise on them")
        if model_keys or data["X"] or data["text"]:
            raise InvalidParameterError(f"{kind}: features replace the model and its inputs; drop "
                                        f"{[f'model.{k}' for k in model_keys] + (['data.X'] if data['X'] else [])}")
        if not data["y"]:
            raise InvalidParameterError(f"{kind}: features need labels: set data.y (--labels on the command line)")
    elif source == "huggingface":
        if model["factory"] or model["checkpoint"] or data["X"]:
            raise InvalidParameterError(f"{kind}: model.huggingface reads sentences (data.text); it cannot be "
                                        "combined with model.factory, model.checkpoint or data.X")
        if not data["text"] or not data["y"]:
            raise InvalidParameterError(f"{kind}: model.huggingface needs data.text (sentences) and data.y (labels)")
        if epochs > 0:
            raise InvalidParameterError(f"{kind}: a Hugging Face model is analysed as loaded (train.epochs: 0); to "
                                        "follow fine-tuning use nnkscope.studies.integrations.TrainerCallback")
    else:
        if data["text"]:
            raise InvalidParameterError(f"{kind}: data.text (sentences) needs model.huggingface (or model.kind "
                                        "minilm with data.name sentences)")
        if model["kind"] == "minilm" and (data["X"] or model["factory"] or model["checkpoint"]):
            raise InvalidParameterError(f"{kind}: model.kind minilm reads the built-in sentences; for your own "
                                        "encoder use model.huggingface")
        if source is None and cfg["eval_per_class"] == 0 and model["kind"] == "minilm":
            raise InvalidParameterError(f"{kind}: eval_per_class sets how many built-in sentences per topic "
                                        "MiniLM reads; give a positive number")
        if model["checkpoint_trusted"] and not model["checkpoint"]:
            raise InvalidParameterError(f"{kind}: model.checkpoint_trusted applies to model.checkpoint, which is "
                                        "not set")
        if data["X"] and not data["y"] and not _is_factory(data["X"]):
            raise InvalidParameterError(f"{kind}: data.X needs labels: set data.y")
    return cfg


def _is_factory(spec) -> bool:
    from ..nn.loaders import is_factory

    return is_factory(spec)


def stratified_split(codes: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified ``(train rows, test rows)``, each sorted: per class, ``round(test_size * n_c)`` rows
    (at least one when the class has two or more) go to the test side.

    Examples
    --------
    >>> tr, te = stratified_split(np.repeat([0, 1], 10), 0.2, seed=0)
    >>> len(tr), len(te), np.bincount(np.repeat([0, 1], 10)[te]).tolist()
    (16, 4, [2, 2])
    """
    r = np.random.default_rng(seed)
    test = []
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        n_test = min(len(idx) - 1, max(1, int(round(test_size * len(idx))))) if len(idx) > 1 else 0
        test.append(r.choice(idx, size=n_test, replace=False))
    te = np.sort(np.concatenate(test)).astype(np.int64)
    return np.setdiff1d(np.arange(len(codes)), te), te


def eval_rows(codes: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of a seeded class-balanced subset (``per_class`` of each class, fewer if the smallest class has
    fewer); ``per_class = 0`` keeps every row."""
    from ..nn.datasets import per_class_subset

    if per_class == 0:
        return np.arange(len(codes))
    return per_class_subset(codes, min(per_class, int(np.bincount(codes).min())), seed=seed)


def _split_own(X, classes, codes, cfg: dict, trains: bool) -> Data:
    """A :class:`Data` of the user's arrays; ``samples_*`` are the rows' positions in the user's data."""
    n = len(codes)
    if trains:
        tr, te = stratified_split(codes, cfg["data"]["test_size"], cfg["data"]["seed"])
    else:  # analysed as loaded: nothing is fitted, so every row is measured
        tr = te = np.arange(n)
    ntr, nte = cfg["data"]["n_train"] or len(tr), cfg["data"]["n_test"] or len(te)
    tr, te = tr[:ntr], te[:nte]
    data = Data(X[tr], codes[tr], X[te], codes[te], tuple(X.shape[1:]))
    data.classes, data.samples_train, data.samples_test = classes, tr, te
    return data


def _labels(spec, n: int, base, what: str = "data.y"):
    from ..nn.loaders import load_source

    y, _ = load_source(spec, base=base, what=what)
    return check_labels(y, n, name=what)


def prepare_own(cfg: dict, *, trains: bool, base=None) -> Prepared | None:
    """Load and check the config's own model, data or features (None for the built-in zoo): every failure is an
    nnkscope error raised here, before a run folder is made."""
    from ..nn.loaders import feature_files, file_digest

    source = own_source(cfg)
    if source is None:
        return None
    data, model = cfg["data"], cfg["model"]
    inputs = {}
    for key, value in (("data.X", data["X"]), ("data.y", data["y"]), ("data.text", data["text"]),
                       ("model.checkpoint", model["checkpoint"]), ("model.huggingface", model["huggingface"])):
        if isinstance(value, str) and value:
            inputs[key] = _digest(value, base)
    if model["factory"]:
        inputs["model.factory"] = _digest(model["factory"], base)
    if source == "features":
        paths = cfg["features"] if isinstance(cfg["features"], list) else [cfg["features"]]
        loaders, n = feature_files(paths, base=base)
        inputs["features"] = [file_digest(_path(p, base)) for p in paths]
        classes, codes = _labels(data["y"], n, base)
        from ..nn.capture import select_names

        names = select_names(list(loaders), cfg["layers"])
        stem = Path(paths[0]).stem if len(paths) == 1 else "features"
        inputs["labels_fingerprint"] = fingerprint(codes[:, None])
        return Prepared("features", stem, features={k: loaders[k] for k in names}, y=classes[codes], layers=names,
                        inputs=inputs)
    if source == "huggingface":
        from ..nn.loaders import load_huggingface, load_texts, texts_fingerprint
        from ..nn.models import weights_fingerprint

        texts = load_texts(data["text"], base=base)
        classes, codes = _labels(data["y"], len(texts), base)
        hf, tokenizer = load_huggingface(model["huggingface"], base=base)
        names = ["embeddings"] + [f"layer{i}" for i in range(1, int(hf.config.num_hidden_layers) + 1)]
        from ..nn.capture import select_names

        layers = select_names(names, cfg["layers"], what="hidden state")
        inputs.update(texts_fingerprint=texts_fingerprint(texts), labels_fingerprint=fingerprint(codes[:, None]),
                      model_fingerprint=weights_fingerprint(hf))
        return Prepared("huggingface", Path(str(model["huggingface"])).name, model=hf, tokenizer=tokenizer,
                        texts=texts, y=classes[codes], layers=layers, inputs=inputs)
    X, y = _inputs(cfg, base)
    classes, codes = y
    split = _split_own(X, classes, codes, cfg, trains) if X is not None else None
    net, name = _torch_model(cfg, split, base)
    if X is not None:
        from ..nn.loaders import model_input, probe_forward

        X = model_input(net, X)
        split.X_train, split.X_test = model_input(net, split.X_train), model_input(net, split.X_test)
        probe_forward(net, X)
        if trains:
            _check_logits(net, X, len(classes))
    from ..nn.capture import select_modules
    from ..nn.models import weights_fingerprint

    layers = list(select_modules(net, cfg["layers"]))  # names are checked before any training or capture
    if X is not None:
        inputs.update(data_fingerprint=fingerprint(X.reshape(len(X), -1)), labels_fingerprint=fingerprint(
            codes[:, None]))
    inputs["model_fingerprint"] = weights_fingerprint(net)
    return Prepared("torch", name, model=net, data=split, layers=layers, inputs=inputs)


def _inputs(cfg: dict, base):
    """``(X, (classes, codes))`` of own data, or ``(None, (None, None))`` when the config uses a built-in dataset."""
    from ..nn.loaders import load_source

    data = cfg["data"]
    if not data["X"]:
        return None, (None, None)
    X, y_from_factory = load_source(data["X"], base=base, what="data.X")
    if X.ndim == 0 or len(X) < 2:
        raise InputShapeError(f"data.X must hold one input per row (at least 2 rows); got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise InvalidParameterError(f"data.X has dtype {X.dtype}; model inputs must be numbers (for sentences use "
                                    "data.text with model.huggingface)")
    if data["y"]:
        return X, _labels(data["y"], len(X), base)
    if y_from_factory is None:
        raise InvalidParameterError(f"data.X factory {data['X']} returned inputs only; set data.y or return (X, y)")
    return X, check_labels(y_from_factory, len(X), name="labels returned by data.X")


def _torch_model(cfg: dict, data: Data | None, base):
    """The model to analyse: the user's factory/checkpoint, or a built-in kind sized for the user's data."""
    from ..nn.loaders import build_user_model

    model = cfg["model"]
    if model["factory"] or model["checkpoint"]:
        net = build_user_model(model["factory"], model["kwargs"], checkpoint=model["checkpoint"],
                               trusted=model["checkpoint_trusted"], base=base, seed=cfg["seed"])
        name = model["factory"].rsplit(":", 1)[-1] if model["factory"] else Path(model["checkpoint"]).stem
        return net, name
    from .common import build_model, load_data

    if data is None:
        data = load_data(cfg["data"])
    if data.X_train.ndim != 2 and model["kind"] in ("mlp",):
        shape = ", ".join(map(str, data.shape))
        raise InputShapeError(f"model kind mlp takes (N, d) rows; data.X has shape (N, {shape}); reshape it or give "
                              "model.factory")
    return build_model(model, data, cfg["seed"]), model["kind"]


def _check_logits(net, X, n_classes: int) -> None:
    """Training uses cross-entropy on the model's output: it must be (batch, n_classes) logits."""
    import torch

    net.eval()
    with torch.no_grad():
        out = net(torch.as_tensor(np.ascontiguousarray(X[:2])))
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 2 or shape[1] != n_classes:
        raise InputShapeError(f"training needs the model to return (batch, {n_classes}) class scores for the "
                              f"{n_classes} label classes; it returned {type(out).__name__} of shape {shape}. Fix the "
                              "model's output size, or analyse it as loaded (train.epochs: 0)")


def _path(spec: str, base) -> Path:
    p = Path(spec).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p


def _digest(spec: str, base) -> str:
    """Content hash of the file a spec names (the ``.py`` of a factory, the ``.npz`` of ``file.npz:key``); an
    importable module's factory is identified by its name (its weights enter the model fingerprint)."""
    from ..nn.loaders import file_digest

    target, sep, attr = spec.rpartition(":")
    if sep and (target.endswith(".py") or target.lower().endswith(".npz")):
        spec = target
    elif sep and attr.isidentifier():
        return spec
    path = _path(spec, base)
    return file_digest(path) if path.exists() else ""
