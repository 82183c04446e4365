"""What every study kind declares, and the config machinery they share (defaults, validation, YAML).

A study kind is a :class:`StudyKind`: its defaults, the values each key allows (checked before anything runs or is
written), the tables it writes, its runner and its report section.  The kinds live one per module in
:mod:`nnkscope.studies.kinds`; :mod:`nnkscope.studies.registry` lists them.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FileFormatError, InvalidParameterError

__all__ = ["StudyKind", "DATA", "MODEL", "TRAIN", "OWN_DATA", "OWN_MODEL", "merge", "resolve_paths", "check_config",
           "load_yaml", "choice", "each", "integer", "number", "DATASETS", "MODEL_KINDS", "OPTIMIZERS", "POOLINGS"]

DATASETS = ("digits", "mnist1d", "mnist", "sentences")
MODEL_KINDS = ("mlp", "cnn1d", "cnn2d", "channel_convnet", "minilm")
OPTIMIZERS = ("adam", "sgd")
POOLINGS = ("flatten", "mean", "channels", "cls")  # cls: the first token of a Hugging Face encoder

DATA = {"name": "digits", "seed": 0, "n_train": 0, "n_test": 0, "test_size": 0.2}
MODEL = {"kind": "mlp", "width": 64, "depth": 2, "batchnorm": True, "dropout": 0.0, "channels": 16, "n_channels": 5}
# the user's own data and model (kinds layerwise, training, compare): see nnkscope.studies.own
OWN_DATA = {**DATA, "X": "", "y": "", "text": ""}
OWN_MODEL = {**MODEL, "factory": "", "kwargs": {}, "checkpoint": "", "checkpoint_trusted": False, "huggingface": ""}
PATH_KEYS = ("X", "y", "text", "factory", "checkpoint", "huggingface", "features", "labels")

TRAIN = {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "milestones": [],
         "threads": 1}


# --------------------------------------------------------------------------------------------------------------
# value checks: each returns None when the value is fine, else a phrase saying what is allowed


def choice(*allowed) -> Callable:
    def check(v):
        return None if v in allowed else f"one of {list(allowed)}"
    return check


def each(check: Callable, *, non_empty: bool = True) -> Callable:
    def check_list(v):
        if not isinstance(v, list) or (non_empty and not v):
            return "a non-empty list"
        for item in v:
            problem = check(item)
            if problem:
                return f"a list of {problem} (bad entry {item!r})"
        return None
    return check_list


def integer(lo: int | None = None, hi: int | None = None) -> Callable:
    def check(v):
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi)
        return None if ok else f"an integer in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
    return check


def number(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False, open_hi: bool = False):
    def check(v):
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
        if ok and lo is not None:
            ok = v > lo if open_lo else v >= lo
        if ok and hi is not None:
            ok = v < hi if open_hi else v <= hi
        return None if ok else (f"a number in {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}")
    return check


COMMON_CHECKS: dict[str, Callable] = {
    "data.name": choice(*DATASETS, ""), "data.seed": integer(0), "data.n_train": integer(0), "data.n_test": integer(0),
    "data.test_size": number(0, 1, open_lo=True, open_hi=True),
    "model.kind": choice(*MODEL_KINDS), "model.depth": integer(1), "model.dropout": number(0, 1, open_hi=True),
    "model.channels": integer(1), "model.n_channels": integer(1),
    "train.epochs": integer(0), "train.batch_size": integer(1), "train.optimizer": choice(*OPTIMIZERS),
    "train.lr": number(0, open_lo=True), "train.weight_decay": number(0), "train.threads": integer(1),
    "train.milestones": each(integer(1), non_empty=False),
    "k": integer(1), "seed": integer(0), "seeds": each(integer(0)), "pooling": choice(*POOLINGS),
    "eval_per_class": integer(0), "n_eval": integer(2),
}


@dataclass(frozen=True)
class StudyKind:
    """One kind of study: ``nnkscope study NAME --config FILE``.

    Attributes
    ----------
    name : the kind's name on the command line and in YAML (``study: NAME``).
    defaults : the full config; a file overrides parts of it.
    tables : the tables it writes into the run folder (the report draws ``section`` when the first is there).
    run : ``run(config, store, progress) -> DataFrame``, the headline table.
    section : ``section(store) -> {"title", "figures", "summary", "table"}`` for the report, or None.
    checks : dotted key -> check (None = fine, else what is allowed); :data:`COMMON_CHECKS` apply to every kind.
    summary : one line for ``nnkscope study --help``.
    """

    name: str
    defaults: dict
    tables: tuple[str, ...]
    run: Callable
    section: Callable | None = None
    checks: dict = field(default_factory=dict)
    summary: str = ""
    open_lists: dict = field(default_factory=dict)  # list keys whose entries are mappings with their own defaults
    refine: Callable | None = None  # refine(cfg, overrides) -> cfg: cross-key checks, defaults that depend on others
    prepare: Callable | None = None  # prepare(cfg) -> loaded inputs (or None), run before anything is written
    path_keys: tuple = PATH_KEYS  # config keys holding file paths (resolved from the config file's folder)

    def resolve(self, overrides: dict | None = None) -> dict:
        """The full config: defaults overridden by ``overrides``, every key and value checked."""
        overrides = dict(overrides or {})
        declared = overrides.pop("study", self.name)
        if declared != self.name:
            raise InvalidParameterError(f"the config declares study {declared!r} but {self.name!r} was asked for")
        cfg = merge(self.defaults, overrides, self.name, self.open_lists)
        if self.refine is not None:
            cfg = self.refine(cfg, overrides)
        check_config(cfg, {**COMMON_CHECKS, **self.checks}, self.name)
        return cfg


def merge(default, value, where: str, open_lists: dict | None = None):
    """``default`` overridden by ``value``: unknown keys and values of the wrong type are refused."""
    open_lists = open_lists or {}
    if isinstance(default, dict) and not default and isinstance(value, dict):
        return copy.deepcopy(value)  # an open mapping (model.kwargs): its keys are the user's
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise InvalidParameterError(f"{where} must be a mapping; got {value!r}")
        unknown = sorted(set(value) - set(default))
        if unknown:
            raise InvalidParameterError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(default)}")
        out = copy.deepcopy(default)
        for key, v in value.items():
            if key in open_lists and isinstance(v, list):
                out[key] = [merge(open_lists[key], e, f"{where}.{key}[{i}]", open_lists) for i, e in enumerate(v)]
            else:
                out[key] = merge(default[key], v, f"{where}.{key}", open_lists)
        return out
    if where.endswith(".width") and isinstance(value, list) and all(isinstance(v, int) for v in value):
        return list(value)  # per-layer widths
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(default, int) and float(value) != int(value):
            ok = False
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, str) or (isinstance(default, str) and isinstance(value, list))  # layer lists
    if not ok:
        raise InvalidParameterError(f"{where} must be like {default!r} ({type(default).__name__}); got {value!r}")
    return copy.deepcopy(value)


def resolve_paths(raw, base, keys: tuple[str, ...] = PATH_KEYS) -> dict:
    """A raw config with every relative file path made absolute from ``base`` (the config file's folder).

    Path keys (``keys``: a kind's :attr:`StudyKind.path_keys`, by default :data:`PATH_KEYS`) at any depth:
    ``X``, ``y``, ``text``, ``checkpoint``, ``huggingface``, ``features``, ``labels`` (a string, or a list of
    strings for ``features``) and the file part of a ``factory`` / ``X`` / ``y`` given as ``"file.py:fn"``.  Inline
    lists of labels or sentences, importable ``"package.module:fn"`` factories and absolute paths are left as they
    are.

    Examples
    --------
    >>> resolve_paths({"model": {"factory": "net.py:Net", "checkpoint": "w.pt"}, "data": {"y": [0, 1]}}, "/cfg")
    {'model': {'factory': '/cfg/net.py:Net', 'checkpoint': '/cfg/w.pt'}, 'data': {'y': [0, 1]}}
    >>> resolve_paths({"model": {"factory": "torchvision.models:resnet18"}}, "/cfg")
    {'model': {'factory': 'torchvision.models:resnet18'}}
    """
    def one(value: str) -> str:
        target, sep, attr = value.rpartition(":")
        if sep and attr.isidentifier() and not target.endswith(".py") and not target.lower().endswith(".npz"):
            return value  # an importable module's callable
        path, suffix = (target, sep + attr) if sep and (target.endswith(".py") or target.lower().endswith(
            ".npz")) else (value, "")
        p = Path(path).expanduser()
        return (str(p) if p.is_absolute() else str(Path(base) / p)) + suffix

    if isinstance(raw, dict):
        out = {}
        for key, value in raw.items():
            if key in keys and isinstance(value, str) and value:
                out[key] = one(value)
            elif key == "features" and key in keys and isinstance(value, list) and all(
                    isinstance(v, str) for v in value):
                out[key] = [one(v) for v in value]
            else:
                out[key] = resolve_paths(value, base, keys)
        return out
    if isinstance(raw, list):
        return [resolve_paths(v, base, keys) for v in raw]
    return raw


def _lookup(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_config(cfg: dict, checks: dict, where: str) -> None:
    """Apply value checks to a merged config (also inside open lists such as ``models[i].model``)."""
    for dotted, check in checks.items():
        value = _lookup(cfg, dotted)
        if value is not _MISSING:
            problem = check(value)
            if problem:
                raise InvalidParameterError(f"{where}.{dotted} must be {problem}; got {value!r}")
    for key, value in cfg.items():
        if isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
            nested = {d[len(key) + 1:]: c for d, c in checks.items() if d.startswith(f"{key}.")}
            model_checks = {d: c for d, c in COMMON_CHECKS.items() if d.startswith("model.")}
            for i, entry in enumerate(value):
                check_config(entry, {**model_checks, **nested}, f"{where}.{key}[{i}]")


class _UniqueKeyLoader:
    """A yaml SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    @staticmethod
    def make():
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        def construct_mapping(loader, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = loader.construct_object(key_node, deep=deep)
                if key in seen:
                    raise FileFormatError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}: each key "
                                          "may appear once; remove or merge the repeated entry")
                seen.add(key)
            return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

        Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
        return Loader


def load_yaml(path) -> dict:
    """Read a YAML config file into a mapping, with a clear error for every way it can be wrong."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such config file; check the path")
    if path.is_dir():
        raise FileFormatError(f"{path} is a folder; --config takes a YAML file (e.g. examples/studies/*.yaml)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path} is not UTF-8 text ({exc}); save the config as UTF-8") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read it ({exc.strerror}); check its permissions") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader.make()) or {}
    except FileFormatError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise FileFormatError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise FileFormatError(f"{path}: a study config is a mapping of keys to values; got {type(raw).__name__}")
    return raw
