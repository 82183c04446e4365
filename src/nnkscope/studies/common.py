"""What every study shares: a dataset, a model built from a small spec, a seeded training run, features of a layer.

Specs are plain dicts (the sections ``data``, ``model`` and ``train`` of a study config; see
:mod:`nnkscope.studies.base` for the defaults), so a study is reproducible from its config alone.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["Data", "load_data", "build_model", "train", "layer_features", "MODEL_KINDS", "eval_subset", "error_rate",
           "run_units", "config_data"]

from .base import MODEL_KINDS  # noqa: E402


class Data:
    """A train/test split with the sample shape; ``X_*`` are (N, features) float32 rows (the built-in datasets)
    or the user's inputs as the model takes them.  ``y_*`` are int class codes; for the user's own data
    ``classes`` maps them back to the labels and ``samples_*`` are the rows' positions in the user's data."""

    def __init__(self, X_train, y_train, X_test, y_test, shape):
        self.X_train, self.y_train, self.X_test, self.y_test, self.shape = X_train, y_train, X_test, y_test, shape
        self.classes = self.samples_train = self.samples_test = None

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_data(spec: dict) -> Data:
    """``spec``: ``name`` (digits, mnist1d, mnist), ``seed``, ``test_size`` (digits, MNIST), ``n_train`` /
    ``n_test`` (0 = all; the first n after the seeded split)."""
    from ..nn.datasets import load_dataset

    Xtr, ytr, Xte, yte, shape = load_dataset(spec["name"], seed=spec.get("seed", 0),
                                             test_size=spec.get("test_size", 0.2))
    ntr, nte = spec.get("n_train", 0) or len(Xtr), spec.get("n_test", 0) or len(Xte)
    return Data(Xtr[:ntr], ytr[:ntr], Xte[:nte], yte[:nte], shape)


def config_data(cfg: dict) -> Data:
    """The dataset of a study config (its ``data`` section): the ``prepare`` of units that share only the data
    (:func:`run_units`)."""
    return load_data(cfg["data"])


def build_model(spec: dict, data: Data, seed: int):
    """A fresh model (seeded initialisation) of kind ``mlp``, ``cnn1d``, ``cnn2d`` or ``channel_convnet``."""
    from ..nn.models import CNN1D, CNN2D, MLP, ChannelConvNet, require_torch

    torch = require_torch()
    torch.manual_seed(seed)
    kind, d_in, k = spec["kind"], data.X_train.shape[1], data.n_classes
    if kind == "mlp":
        model = MLP(d_in, spec["width"], spec["depth"], k, batchnorm=spec["batchnorm"])
        if spec.get("dropout", 0):
            for block in model.blocks:
                block.append(torch.nn.Dropout(spec["dropout"]))
        return model
    if kind == "cnn1d":
        return CNN1D(d_in, k, channels=spec["channels"], batchnorm=spec["batchnorm"])
    if kind == "cnn2d":
        side = int(round(np.sqrt(d_in)))
        if side * side != d_in:
            raise InvalidParameterError(f"cnn2d needs square images; the data has {d_in} features")
        return CNN2D(side, k, channels=spec["channels"], batchnorm=spec["batchnorm"])
    if kind == "channel_convnet":
        return ChannelConvNet(d_in, k, n_channels=spec["n_channels"], width=spec["channels"])
    raise InvalidParameterError(f"model kind must be one of {MODEL_KINDS}; got {kind!r}")


def train(model, X, y, spec: dict, seed: int, **hooks) -> list[dict]:
    """:func:`nnkscope.nn.models.train_classifier` with the ``train`` section of a config."""
    from ..nn.models import require_torch, train_classifier

    require_torch().set_num_threads(spec.get("threads", 1))
    return train_classifier(model, X, y, epochs=spec["epochs"], batch_size=spec["batch_size"],
                            optimizer=spec["optimizer"], lr=spec["lr"], weight_decay=spec["weight_decay"],
                            milestones=spec.get("milestones", ()), seed=seed, **hooks)


def layer_features(model, X, layer: str, pooling: str = "flatten") -> np.ndarray:
    """(N, d) float64 activations of one named layer (eval mode)."""
    from ..nn.capture import capture

    return np.asarray(capture(model, X, [layer], pooling=pooling)[layer], np.float64).reshape(len(X), -1)


def eval_subset(X, y, per_class: int, seed: int):
    """A seeded class-balanced subset: ``per_class`` samples of every class (fewer if the smallest class is);
    ``per_class = 0`` keeps every row."""
    from ..nn.datasets import per_class_subset

    if per_class == 0:
        return X, y
    idx = per_class_subset(y, min(per_class, int(np.bincount(y).min())), seed=seed)
    return X[idx], y[idx]


def error_rate(model, X, y) -> float:
    """The model's classification error on ``(X, y)``."""
    from ..nn.models import predict

    return float((predict(model, X) != y).mean())


def run_units(unit, prepare, cfg: dict, store, todo: list[dict], *, executor=None, progress=None,
              desc: str = "units", shared=None) -> list:
    """Run one study's units: ``unit(cfg, store, shared, **keys)`` for every ``keys`` dict of ``todo``, where
    ``shared = prepare(cfg)`` is what the units read in common (the dataset, say); returns their results in order.

    ``executor`` None: one after another in this process, ``prepare`` called once, every CPU for each unit.  A
    ``concurrent.futures`` pool or a Dask client: each unit is a task (the same executor abstraction as the blocked
    graph pipeline), on one thread; every worker process calls ``prepare`` once per call of this function (never
    reusing one call's value in another), and must reach the run folder, where each unit writes its own atomic
    parts, so a study stopped anywhere resumes with the units not yet written.  ``unit`` and ``prepare`` are
    module-level functions (tasks are pickled) and must not modify ``shared`` (a cache of values it determines is
    fine); a unit's ``NNKScopeError`` names its keys.  ``shared``: ``prepare(cfg)`` when the caller holds it
    already (used in this process; workers still call ``prepare``).

    Examples
    --------
    >>> import tempfile
    >>> from nnkscope.store import RunStore
    >>> store = RunStore(tempfile.mkdtemp() + "/run")
    >>> run_units(_doc_unit, _doc_prepare, {"base": 10}, store, [{"i": 1}, {"i": 2}])
    [11, 12]
    """
    from .._runtime import progress_bar
    from ..engine.pipeline import run_tasks
    from ..executor import as_executor, is_inline

    if not todo:
        return []
    if not is_inline(executor):
        call = (prepare.__module__, prepare.__qualname__, uuid.uuid4().hex)  # this call's units share a prepare
        jobs = [(unit, (prepare, call), cfg, str(store.root), keys, 1) for keys in todo]
        return run_tasks(as_executor(executor), _unit_task, jobs, desc, progress, unit="units")
    shared = prepare(cfg) if shared is None else shared
    out = []
    with progress_bar(len(todo), desc, progress, unit="units") as bar:
        for keys in todo:
            out.append(_unit_task(unit, None, cfg, store, keys, None, shared))
            bar.update(1)
    return out


# per worker thread: (run_units call id, its prepared value).  Never reused by a later call (a long-lived cluster
# must not serve one study's data to the next, whose files may have changed under the same config), and never
# shared between threads (a thread pool's or a multi-threaded Dask worker's tasks would share a mutable model)
_PREPARED = threading.local()


def _unit_task(unit, prepare, cfg: dict, store, keys: dict, threads, shared=None):
    """One unit; on a worker, ``prepare`` is ``(function, call id)``, ``store`` the run folder's path and the task
    allowed ``threads`` CPUs (:func:`~nnkscope._runtime.cpu_budget`); in this process (``threads`` None) it runs
    with whatever thread limits the caller set."""
    from .._runtime import cpu_budget
    from ..errors import NNKScopeError
    from ..store import RunStore

    budget = contextlib.nullcontext() if threads is None else cpu_budget(threads)
    try:
        with budget:
            if prepare is not None:
                prepare, call = prepare
                memo = getattr(_PREPARED, "value", None)
                if memo is None or memo[0] != call:
                    _PREPARED.value = None  # the last call's value is freed before this one's is made
                    _PREPARED.value = (call, prepare(cfg))
                shared = _PREPARED.value[1]
                store = RunStore(store, create=False)
            return unit(cfg, store, shared, **keys)
    except NNKScopeError as exc:  # name the unit: a study runs many
        where = ", ".join(f"{k}={v!r}" for k, v in keys.items())
        raise type(exc)(f"unit {where}: {exc}") from exc


def _doc_prepare(cfg: dict) -> int:
    return cfg["base"]


def _doc_unit(cfg: dict, store, shared: int, i: int) -> int:
    return shared + i
