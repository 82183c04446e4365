"""One runner per study kind: config in, Parquet tables out (each finished unit is a resumable part).

Called through :func:`nnkscope.studies.config.run_study` (``nnkscope study KIND --config FILE``).  Every runner
returns the study's headline table as a DataFrame.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from ..nn.datasets import per_class_subset
from ..store import RunStore
from .common import build_model, layer_features, load_data, train

__all__ = ["run_layerwise", "run_training", "run_compare", "run_stability", "run_invariance", "run_early_stopping",
           "run_width_sweep"]


def _eval_subset(X, y, per_class: int, seed: int):
    """A seeded class-balanced subset: ``per_class`` samples of every class (fewer if the smallest class is)."""
    idx = per_class_subset(y, min(per_class, int(np.bincount(y).min())), seed=seed)
    return X[idx], y[idx]


def _test_error(model, X, y) -> float:
    from ..nn.models import predict

    return float((predict(model, X) != y).mean())


def _measure_training(cfg: dict, store: RunStore, epochs, progress) -> object:
    from .layerwise import TrainingCallback

    data = load_data(cfg["data"])
    if cfg["eval_on"] not in ("test", "train"):
        raise InvalidParameterError(f"eval_on must be 'test' or 'train'; got {cfg['eval_on']!r}")
    X, y = (data.X_train, data.y_train) if cfg["eval_on"] == "train" else (data.X_test, data.y_test)  # train: R11
    Xe, ye = _eval_subset(X, y, cfg["eval_per_class"], cfg["seed"])
    name = cfg["model"]["kind"]
    if store.has("train_history", model=name) and all(
            store.has("points", layer="input", model=name, epoch=int(e)) for e in epochs):
        return store.read("layers")
    model = build_model(cfg["model"], data, cfg["seed"])
    cb = TrainingCallback(store, Xe, ye, cfg["layers"], every=0, epochs=epochs, model_name=name, k=cfg["k"],
                          pooling=cfg["pooling"], progress=progress)
    if 0 in epochs:
        cb(0, model)
    spec = dict(cfg["train"], epochs=max(epochs))
    hist = train(model, data.X_train, data.y_train, spec, cfg["seed"], callback=cb) if max(epochs) > 0 else []
    import pandas as pd

    store.write("train_history", pd.DataFrame(hist or [{"epoch": 0, "loss": np.nan, "train_error": np.nan}]),
                model=name)
    return store.read("layers")


def _measure_minilm(cfg: dict, store: RunStore, progress) -> None:
    """The packaged MiniLM encoder (pretrained, no training) on offline topic-labelled sentences."""
    from ..nn.capture import hidden_states
    from ..nn.datasets import topic_sentences
    from ..nn.models import load_minilm
    from .layerwise import measure_layers

    if cfg["data"]["name"] != "sentences":
        raise InvalidParameterError("model kind 'minilm' reads text: set data.name to 'sentences'")
    texts, y, _ = topic_sentences(cfg["eval_per_class"], seed=cfg["data"]["seed"])
    if all(store.has("points", layer=f"layer{i}", model="minilm", epoch=0) for i in range(1, 7)):
        return
    bert, tokenizer, _ = load_minilm()
    measure_layers(hidden_states(bert, tokenizer, texts), y, store, model_name="minilm", epoch=0, k=cfg["k"],
                   progress=progress)


def run_layerwise(cfg: dict, store: RunStore, progress=None):
    """Train for ``train.epochs`` epochs, then measure every layer once (epoch = the last one).  With model kind
    ``minilm`` the pretrained sentence encoder's hidden states are measured instead (epoch 0)."""
    if cfg["model"]["kind"] == "minilm":
        _measure_minilm(cfg, store, progress)
        layers = store.read("layers")
    else:
        layers = _measure_training(cfg, store, [cfg["train"]["epochs"]], progress)
    return layers[["model", "epoch", "layer", "layer_index", "mean_nnk_degree", "loo_error_nnk",
                   "homogeneous_fraction_H", "separation_fuzziness", "label_variation", "nc1"]]


def run_training(cfg: dict, store: RunStore, progress=None):
    """Measure every layer at the listed epochs of one training run (epoch 0 = initialisation)."""
    layers = _measure_training(cfg, store, sorted(set(cfg["epochs"])), progress)
    return layers[["model", "epoch", "layer", "layer_index", "mean_nnk_degree", "loo_error_nnk",
                   "separation_fuzziness", "label_variation"]]


def run_compare(cfg: dict, store: RunStore, progress=None):
    """Train each listed model, capture its layers on the same evaluation points, compare every pair."""
    from .comparison import compare_features

    data = load_data(cfg["data"])
    Xe, ye = _eval_subset(data.X_test, data.y_test, cfg["eval_per_class"], 0)
    features = {("input", "input"): Xe.astype(np.float64)}
    for entry in cfg["models"]:
        model = build_model(entry["model"], data, entry["seed"])
        train(model, data.X_train, data.y_train, cfg["train"], entry["seed"])
        from ..nn.capture import capture

        for layer, H in capture(model, Xe, entry["layers"], pooling=cfg["pooling"]).items():
            features[(entry["name"], layer)] = np.asarray(H, np.float64).reshape(len(Xe), -1)
    return compare_features(features, store, k=cfg["k"], progress=progress)


def run_stability(cfg: dict, store: RunStore, progress=None):
    """Train one model per seed (and, with ``shuffled_labels``, per seed on permuted labels), compare the runs."""
    import pandas as pd

    from .stability import run_metrics, stability_table

    if store.has("stability"):
        return store.read("stability")
    data = load_data(cfg["data"])
    n_eval = min(cfg["n_eval"], len(data.X_test))
    Xe = data.X_test[:n_eval]
    variants = [False, True] if cfg["shuffled_labels"] else [False]
    rows = []
    for shuffled_labels in variants:
        runs = {}
        for seed in cfg["seeds"]:
            ytr = np.random.default_rng(seed).permutation(data.y_train) if shuffled_labels else data.y_train
            model = build_model(cfg["model"], data, seed)
            train(model, data.X_train, ytr, cfg["train"], seed)
            runs[f"seed{seed}"] = run_metrics(layer_features(model, Xe, cfg["layer"]), cfg["k"])
        t = stability_table(runs)
        t.insert(0, "labels", "shuffled" if shuffled_labels else "true")
        rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    store.write("stability", table)
    return table


def run_invariance(cfg: dict, store: RunStore, progress=None):
    """Rotation invariance: diameters of each evaluation image among its rotations, with / without augmentation."""
    import pandas as pd

    from ..nn.datasets import rotate_images
    from ..nn.models import predict
    from .invariance import augmentation_diameters

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


def run_early_stopping(cfg: dict, store: RunStore, progress=None):
    """``method: deepnnk`` -- DeepNNK LOO of ``layer`` at each checkpoint for every arm (``model``: as configured,
    ``regularised``: dropout 0.3 + weight decay 1e-4), with model and NNK-classifier test errors.
    ``method: cw-deepnnk`` -- arms ``cw`` (channel-wise freezing on all training data), ``validation`` (hold out
    ``validation_fraction``, stop after ``patience`` epochs without validation improvement, restore the best) and
    ``fixed`` (``train.epochs`` epochs)."""
    runner = {"deepnnk": _deepnnk_arms, "cw-deepnnk": _cw_arms}.get(cfg["method"])
    if runner is None:
        raise InvalidParameterError(f"method must be 'deepnnk' or 'cw-deepnnk'; got {cfg['method']!r}")
    data = load_data(cfg["data"])
    for seed in cfg["seeds"]:
        for arm in cfg["arms"]:
            if not store.has("early_stopping", seed=int(seed), arm=arm):
                runner(cfg, data, seed, arm, store)
    return store.read("early_stopping")


def _deepnnk_arms(cfg, data, seed, arm, store):
    import pandas as pd

    from ..measures.interpolation import NNKClassifier
    from .early_stopping import DeepNNKMonitor

    mspec, tspec = dict(cfg["model"]), dict(cfg["train"])
    if arm == "regularised":
        mspec["dropout"], tspec["weight_decay"] = 0.3, 1e-4
    elif arm != "model":
        raise InvalidParameterError(f"deepnnk arms are 'model' and 'regularised'; got {arm!r}")
    model = build_model(mspec, data, seed)
    checkpoints = set(cfg["checkpoints"]) or set(range(1, tspec["epochs"] + 1))

    def extra(m):
        Ftr = layer_features(m, data.X_train, cfg["layer"])
        Fte = layer_features(m, data.X_test, cfg["layer"])
        clf = NNKClassifier(k=cfg["k"]).fit(Ftr, data.y_train)
        return {"train_error": _test_error(m, data.X_train, data.y_train),
                "test_error": _test_error(m, data.X_test, data.y_test),
                "nnk_test_error": float((clf.predict(Fte) != data.y_test).mean())}

    mon = DeepNNKMonitor(data.X_train, data.y_train, lambda m, X: layer_features(m, X, cfg["layer"]), k=cfg["k"],
                         extra=extra)
    train(model, data.X_train, data.y_train, tspec, seed,
          callback=lambda e, m: mon(e, m) if e in checkpoints else False)
    store.write("early_stopping", pd.DataFrame(mon.history), seed=int(seed), arm=arm)


def _cw_arms(cfg, data, seed, arm, store):
    import pandas as pd

    from .early_stopping import ChannelwiseEarlyStopping

    model = build_model(cfg["model"], data, seed)
    row = {"epochs_trained": cfg["train"]["epochs"], "freeze_epochs": "", "best_epochs": ""}
    if arm == "cw":
        cb = ChannelwiseEarlyStopping(data.X_train, data.y_train, k=cfg["k"], every=cfg["every"],
                                      patience=cfg["patience"])
        hist = train(model, data.X_train, data.y_train, cfg["train"], seed, callback=cb, after_step=cb.after_step)
        store.write("channel_loo", pd.DataFrame(cb.history), seed=int(seed))
        row.update(epochs_trained=len(hist), n_frozen=len(cb.frozen_at),
                   freeze_epochs=",".join(str(cb.frozen_at.get(c, "-")) for c in range(cfg["model"]["n_channels"])),
                   best_epochs=",".join(str(v) for _, v in sorted(cb.best_epochs().items())))
    elif arm == "validation":
        import copy

        from ..nn.models import predict

        n = len(data.X_train)
        perm = np.random.default_rng(seed).permutation(n)
        n_val = int(round(cfg["validation_fraction"] * n))
        val, fit = perm[:n_val], perm[n_val:]
        state = {"best": -1.0, "since": 0, "weights": None, "epoch": 0}

        def cb(epoch, m):
            acc = float((predict(m, data.X_train[val]) == data.y_train[val]).mean())
            if acc > state["best"]:
                state.update(best=acc, since=0, weights=copy.deepcopy(m.state_dict()), epoch=epoch)
                return False
            state["since"] += 1
            return state["since"] >= cfg["patience"]

        hist = train(model, data.X_train[fit], data.y_train[fit], cfg["train"], seed, callback=cb)
        model.load_state_dict(state["weights"])
        row.update(epochs_trained=len(hist), best_epochs=str(state["epoch"]))
    elif arm == "fixed":
        train(model, data.X_train, data.y_train, cfg["train"], seed)
    else:
        raise InvalidParameterError(f"cw-deepnnk arms are 'cw', 'validation' and 'fixed'; got {arm!r}")
    row["test_accuracy"] = 1.0 - _test_error(model, data.X_test, data.y_test)
    store.write("early_stopping", pd.DataFrame([row]), seed=int(seed), arm=arm)


def run_width_sweep(cfg: dict, store: RunStore, progress=None):
    """Train an MLP per width until 100% training accuracy has held ``hold_epochs`` epochs (or ``max_epochs``);
    NNK leave-one-out geometry of its last hidden layer on the training set."""
    import pandas as pd

    from .width_sweep import interpolation_geometry

    data = load_data(cfg["data"])
    for width in cfg["widths"]:
        if store.has("width_sweep", width=int(width)):
            continue
        model = build_model(dict(cfg["model"], width=int(width)), data, cfg["seed"])
        held = {"n": 0}

        def cb(epoch, m, held=held):
            held["n"] = held["n"] + 1 if _test_error(m, data.X_train, data.y_train) == 0 else 0
            return held["n"] >= cfg["hold_epochs"]

        hist = train(model, data.X_train, data.y_train, dict(cfg["train"], epochs=cfg["max_epochs"]), cfg["seed"],
                     callback=cb)
        last = f"blocks.{cfg['model']['depth']}"
        row = interpolation_geometry(layer_features(model, data.X_train, last), data.y_train, cfg["k"])
        row.update(epochs=len(hist), train_error=hist[-1]["train_error"],
                   test_error=_test_error(model, data.X_test, data.y_test))
        store.write("width_sweep", pd.DataFrame([row]), width=int(width))
    return store.read("width_sweep").sort_values("width")
