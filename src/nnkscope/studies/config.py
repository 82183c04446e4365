"""Study configs (YAML) and the runner behind ``nnkscope study KIND --config study.yaml``.

A config is the defaults of its kind (``DEFAULTS[kind]``) overridden by the file; a key the kind does not know, or a
value of the wrong type, is refused with the list of valid keys -- a typo never silently runs the default.  Every
study writes into a run folder (:class:`~nnkscope.store.RunStore`, manifest = the full resolved config), skips the
parts already there (resume), prints a table and writes ``report.html``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..errors import FileFormatError, InvalidParameterError

__all__ = ["DEFAULTS", "KINDS", "load_config", "resolve_config", "run_study"]

_DATA = {"name": "digits", "seed": 0, "n_train": 0, "n_test": 0, "test_size": 0.2}
_MODEL = {"kind": "mlp", "width": 64, "depth": 2, "batchnorm": True, "dropout": 0.0, "channels": 16,
          "n_channels": 5}
_TRAIN = {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "milestones": [],
          "threads": 1}

DEFAULTS: dict[str, dict] = {
    "layerwise": {"data": _DATA, "model": _MODEL, "train": _TRAIN, "seed": 0, "layers": "blocks.*", "k": 20,
                  "eval_per_class": 60, "eval_on": "test", "pooling": "flatten"},
    "training": {"data": _DATA, "model": _MODEL, "train": _TRAIN, "seed": 0, "layers": "blocks.*", "k": 20,
                 "eval_per_class": 60, "eval_on": "test", "pooling": "flatten", "epochs": [1, 5, 10, 30]},
    "compare": {"data": _DATA, "train": _TRAIN, "k": 25, "eval_per_class": 60, "pooling": "flatten",
                "models": [{"name": "mlp_bn", "seed": 0, "layers": "blocks.*", "model": _MODEL}]},
    "stability": {"data": _DATA, "model": _MODEL, "train": _TRAIN, "seeds": [0, 1, 2], "layer": "blocks.1", "k": 25,
                  "n_eval": 1000, "shuffled_labels": False},
    "invariance": {"data": _DATA, "model": _MODEL, "train": _TRAIN, "seeds": [0, 1, 2], "layer": "blocks.1",
                   "angle_step": 10, "n_eval": 200, "augment": [False, True]},
    "early-stopping": {"data": _DATA, "model": _MODEL, "train": _TRAIN, "seeds": [0], "method": "deepnnk",
                       "layer": "blocks.1", "k": 25, "every": 1, "patience": 20, "arms": ["model"],
                       "validation_fraction": 0.2, "checkpoints": []},
    "width-sweep": {"data": _DATA, "model": _MODEL, "train": _TRAIN, "seed": 0, "widths": [8, 16, 32, 64, 256, 1024],
                    "k": 25, "hold_epochs": 20, "max_epochs": 500},
}
KINDS = tuple(DEFAULTS)
_OPEN = {"models"}  # list entries merged with their own defaults (below)
_MODEL_ENTRY = {"name": "model", "seed": 0, "layers": "blocks.*", "model": _MODEL}


def _merge(default, value, where: str):
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise InvalidParameterError(f"{where} must be a mapping; got {value!r}")
        unknown = sorted(set(value) - set(default))
        if unknown:
            raise InvalidParameterError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(default)}")
        out = copy.deepcopy(default)
        for key, v in value.items():
            out[key] = [_merge(_MODEL_ENTRY, e, f"{where}.{key}[{i}]") for i, e in enumerate(v)] \
                if key in _OPEN and isinstance(v, list) else _merge(default[key], v, f"{where}.{key}")
        return out
    if where.endswith(".width") and isinstance(value, list) and all(isinstance(v, int) for v in value):
        return list(value)  # per-layer widths
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(default, int) and not isinstance(default, bool) and float(value) != int(value):
            ok = False
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, str) or (isinstance(default, str) and isinstance(value, list))  # layer lists
    if not ok:
        raise InvalidParameterError(f"{where} must be like {default!r} ({type(default).__name__}); got {value!r}")
    return copy.deepcopy(value)


def resolve_config(kind: str, overrides: dict | None = None) -> dict:
    """The full config of a study kind: its defaults overridden by ``overrides`` (validated).

    Examples
    --------
    >>> resolve_config("width-sweep", {"widths": [8, 64]})["widths"]
    [8, 64]
    >>> resolve_config("width-sweep", {"widht": [8]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: unknown key(s) ['widht'] in width-sweep; valid keys: ['data', ...]
    """
    if kind not in DEFAULTS:
        raise InvalidParameterError(f"unknown study kind {kind!r}; choose one of {list(KINDS)}")
    overrides = dict(overrides or {})
    declared = overrides.pop("study", kind)
    if declared != kind:
        raise InvalidParameterError(f"the config declares study {declared!r} but {kind!r} was asked for")
    return _merge(DEFAULTS[kind], overrides, kind)


def load_config(kind: str, path) -> dict:
    """Read a YAML config file and resolve it for ``kind``."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FileFormatError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise FileFormatError(f"{path}: a study config is a mapping of keys to values; got {type(raw).__name__}")
    return resolve_config(kind, raw)


def run_study(kind: str, config: dict, out, *, progress: bool | None = None):
    """Run a resolved study config into the run folder ``out``; returns ``(store, table)``."""
    from ..store import RunStore
    from . import runners

    store = RunStore(out, params={"study": kind, **config})
    table = getattr(runners, "run_" + kind.replace("-", "_"))(config, store, progress=progress)
    return store, table
