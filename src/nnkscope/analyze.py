"""One call from Python: the layer-wise study of your own model or features, written to a run folder with its
report (``nnkscope.analyze``).

It sits above :mod:`nnkscope.report` (it writes the report) at the level of the CLI, and is exported lazily by the
package (importing ``nnkscope`` does not import torch or matplotlib).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validate import check_choice, check_labels
from .errors import InvalidParameterError

__all__ = ["analyze", "Analysis"]

SETTINGS = {"k": 20, "kernel": "cosine", "pooling": "flatten", "model_name": None, "epoch": 0,
            "include_input": True, "on_change": "error", "progress": False, "report": True, "samples": None}


@dataclass
class Analysis:
    """What :func:`analyze` wrote: the run folder, its report (None with ``report=False``) and the ``layers`` table
    (one row per layer in depth order: NNK degree, leave-one-out error, class geometry, ...)."""

    run_dir: Path
    report: Path | None
    layers: object

    def points(self):
        """Table ``points``: per-point metrics, with ``sample`` = the row of the input they belong to."""
        from .store import RunStore

        return RunStore(self.run_dir, create=False).read("points")


def analyze(model_or_features, X=None, y=None, layers=None, out="run", **settings) -> Analysis:
    """Measure every layer of a torch model on ``(X, y)``, or every array of ``{layer: (N, d) array}`` (or a saved
    ``.npz``), into the run folder ``out`` and write its ``report.html``.

    Everything is checked before the run folder is made: the labels' length, layer names, and (models) that the
    model runs on the first rows of ``X``.

    Parameters
    ----------
    model_or_features : a ``torch.nn.Module`` (with ``X``), a mapping ``{layer name: (N, ...) array}`` in depth
        order, or the path of an ``.npz`` with one array per layer.
    X : the model's inputs (array or tensor, N rows); floating arrays are cast to the model's dtype.
    y : N labels of any hashable type.
    layers : module names, globs (``"blocks.*"``), a module type or a predicate (models; default: the model's
        direct children), or names/globs of the mapping's keys (default: all).
    out : the run folder (created; an existing one with the same settings resumes).
    **settings : ``k`` (20), ``kernel`` ("cosine"), ``pooling`` ("flatten", "mean", "channels"), ``model_name``
        (default: the model's class name, or "features"), ``epoch`` (0), ``include_input`` (True, models),
        ``on_change`` ("error" or "replace"), ``progress`` (False), ``report`` (True), ``samples`` (an
        identifier per row for the ``sample`` column; default the row number).

    Examples
    --------
    >>> import tempfile
    >>> r = np.random.default_rng(0); y = np.repeat(["a", "b", "c"], 30)
    >>> feats = {"raw": r.normal(size=(90, 5)), "separated": np.eye(3)[np.repeat([0, 1, 2], 30)] * 5 +
    ...          r.normal(size=(90, 3))}
    >>> res = analyze(feats, y=y, out=tempfile.mkdtemp() + "/run", k=8, report=False)
    >>> res.layers[["layer", "layer_index"]].values.tolist()
    [['raw', 0], ['separated', 1]]
    >>> bool(res.layers.loo_error_nnk.iloc[1] < res.layers.loo_error_nnk.iloc[0])
    True
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise InvalidParameterError(f"unknown setting(s) {unknown} for analyze; valid: {sorted(SETTINGS)}")
    s = {**SETTINGS, **settings}
    check_choice(s["on_change"], "on_change", ("error", "replace"))
    if y is None:
        raise InvalidParameterError("analyze needs labels: y=... (one per row)")
    if isinstance(model_or_features, (str, Path)):
        from .nn.loaders import feature_files

        model_or_features = feature_files([model_or_features])[0]
    if isinstance(model_or_features, Mapping):
        run = _features(model_or_features, X, y, layers, out, s)
    else:
        run = _model(model_or_features, X, y, layers, out, s)
    store, name = run
    path = None
    if s["report"]:
        from .report import write_report

        path = write_report(store.root)
    table = store.read("layers")
    table = table[table.model == name].sort_values(["epoch", "layer_index"]).reset_index(drop=True)
    return Analysis(Path(store.root), path, table)


def _params(kind: str, names: list, s: dict, name: str) -> dict:
    keep = ("k", "kernel", "pooling", "epoch", "include_input")
    return {"study": "layerwise", "source": kind, "model": name, "layers": names, **{k: s[k] for k in keep}}


def _samples(s: dict, n: int):
    return np.arange(n) if s["samples"] is None else np.asarray(s["samples"])


def _features(features: Mapping, X, y, layers, out, s):
    from .nn.capture import select_names
    from .store import RunStore
    from .studies.layerwise import measure_layers

    if X is not None:
        raise InvalidParameterError("X goes with a model; features are already the layers' activations")
    if not features:
        raise InvalidParameterError("features must map at least one layer name to an (N, d) array")
    names = select_names(list(features), "**" if layers is None else layers)
    first = features[names[0]]
    n = len(first() if callable(first) else first)
    check_labels(y, n)
    name = s["model_name"] or "features"
    store = RunStore(out, params=_params("features", names, s, name))
    measure_layers({k: features[k] for k in names}, y, store, model_name=name, epoch=s["epoch"], k=s["k"],
                   kernel=s["kernel"], on_change=s["on_change"], progress=s["progress"], samples=_samples(s, n))
    return store, name


def _model(model, X, y, layers, out, s):
    from .nn.capture import select_modules
    from .nn.loaders import model_input, probe_forward
    from .nn.models import require_torch
    from .store import RunStore
    from .studies.layerwise import layerwise

    torch = require_torch()
    if not isinstance(model, torch.nn.Module):
        raise InvalidParameterError(f"analyze takes a torch.nn.Module, a {{layer: array}} mapping or an .npz path; "
                                    f"got {type(model).__name__}")
    if X is None:
        raise InvalidParameterError("analyze(model, X=..., y=...) needs the inputs X to run the model on")
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    X = model_input(model, X)
    check_labels(y, len(X))
    names = list(select_modules(model, "*" if layers is None else layers))
    probe_forward(model, X)
    name = s["model_name"] or type(model).__name__
    store = RunStore(out, params=_params("model", names, s, name))
    layerwise(model, X, y, names, store, model_name=name, epoch=s["epoch"], k=s["k"], kernel=s["kernel"],
              pooling=s["pooling"], include_input=s["include_input"], on_change=s["on_change"],
              progress=s["progress"], samples=_samples(s, len(X)))
    return store, name


class _CallableModule(types.ModuleType):
    """``import nnkscope.analyze`` binds the package attribute ``analyze`` to this module; calling it still runs
    :func:`analyze`, so ``nnkscope.analyze(...)`` works however the name was first reached."""

    def __call__(self, *args, **kwargs):
        return analyze(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
