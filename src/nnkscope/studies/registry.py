"""The one registry of study kinds, and running a study from its config.

``KINDS`` maps each name to its :class:`~nnkscope.studies.base.StudyKind` (defined one per module in
:mod:`nnkscope.studies.kinds`).  The CLI (``nnkscope study KIND``), the report (one section per kind) and
``nnkscope demo`` all read it; a new kind is one new module and one line here.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidParameterError
from ..store import RunStore
from .base import StudyKind, load_yaml, resolve_paths
from .explanations import explanations_section
from .kinds.compare import COMPARE
from .kinds.compare_features import COMPARE_FEATURES
from .kinds.early_stopping import EARLY_STOPPING
from .kinds.invariance import INVARIANCE
from .kinds.label_propagation import LABEL_PROPAGATION
from .kinds.layerwise import LAYERWISE, TRAINING
from .kinds.redundancy import REDUNDANCY
from .kinds.reliability import RELIABILITY
from .kinds.robustness import ROBUSTNESS
from .kinds.ssl import SSL
from .kinds.stability import STABILITY
from .kinds.width_sweep import WIDTH_SWEEP

__all__ = ["KINDS", "SECTIONS", "DEFAULTS", "get_kind", "resolve_config", "load_config", "run_study", "StudyKind"]

KINDS: dict[str, StudyKind] = {k.name: k for k in (LAYERWISE, TRAINING, COMPARE, STABILITY, INVARIANCE,
                                                   EARLY_STOPPING, WIDTH_SWEEP, COMPARE_FEATURES, SSL)}
KINDS[LABEL_PROPAGATION.name] = LABEL_PROPAGATION
KINDS[RELIABILITY.name] = RELIABILITY
KINDS[ROBUSTNESS.name] = ROBUSTNESS
KINDS[REDUNDANCY.name] = REDUNDANCY
DEFAULTS: dict[str, dict] = {name: kind.defaults for name, kind in KINDS.items()}
# report sections of tables that no kind writes alone: drawn whenever the table is in the run folder
SECTIONS: dict[str, Callable] = {"explanations": explanations_section}


def get_kind(name: str) -> StudyKind:
    """The registered kind called ``name`` (a clear error listing the kinds otherwise)."""
    if name not in KINDS:
        raise InvalidParameterError(f"unknown study kind {name!r}; choose one of {list(KINDS)}")
    return KINDS[name]


def resolve_config(kind: str, overrides: dict | None = None) -> dict:
    """The full config of a study kind: its defaults overridden by ``overrides`` (every key and value checked).

    Examples
    --------
    >>> resolve_config("width-sweep", {"widths": [8, 64]})["widths"]
    [8, 64]
    >>> resolve_config("width-sweep", {"widht": [8]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: unknown key(s) ['widht'] in width-sweep; valid keys: ['data', ...]
    >>> resolve_config("early-stopping", {"arms": ["bogus"]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: early-stopping.arms must be a list of one of [...] (bad entry 'bogus'); ...
    """
    return get_kind(kind).resolve(overrides)


def load_config(kind: str, path) -> dict:
    """Read a YAML config file and resolve it for ``kind``; relative file paths in it (``data.X``,
    ``model.checkpoint``, ``model.factory``'s file, ``features``, ...) resolve from the file's folder."""
    return resolve_config(kind, resolve_paths(load_yaml(path), Path(path).resolve().parent, get_kind(kind).path_keys))


def run_study(kind: str, config: dict, out, *, progress: bool | None = None, executor=None):
    """Run a resolved study config into the run folder ``out``; returns ``(store, table)``.

    The config is checked again first, and the user's own model, data or features (if the config names them) are
    loaded and checked, so nothing is written for a config or an input that fails.  Their content hashes and
    fingerprints enter the run manifest (``params.inputs``): a run folder is never resumed over changed files.
    ``executor`` (a ``concurrent.futures`` pool or a Dask client) runs the study's units as tasks (every built-in
    kind: :func:`~nnkscope.studies.common.run_units`); the tables are the same as in this process.  A kind whose
    ``run`` takes no ``executor`` is refused one.
    """
    study = get_kind(kind)
    config = study.resolve(config)
    takes_executor = "executor" in inspect.signature(study.run).parameters
    if executor is not None and not takes_executor:
        raise InvalidParameterError(f"study kind {kind!r} runs in this process only; drop the executor "
                                    "(--local-cluster / --scheduler)")
    prepared = study.prepare(config) if study.prepare is not None else None
    params = {"study": kind, **config}
    if prepared is not None:
        params["inputs"] = prepared.inputs
        _refuse_changed_inputs(out, params)
    store = RunStore(out, params=params)
    kwargs: dict = {"progress": progress}
    if takes_executor:
        kwargs["executor"] = executor
    if prepared is not None:
        kwargs["prepared"] = prepared
    return store, study.run(config, store, **kwargs)


def _refuse_changed_inputs(out, params: dict) -> None:
    """Name the files that changed when a run folder was made from the same config over other file contents."""
    if not (Path(out) / "manifest.json").exists():
        return
    old = RunStore(out, create=False).manifest.get("params", {})
    new = json.loads(json.dumps(params, default=str))
    old_inputs, new_inputs = old.get("inputs", {}), new.get("inputs", {})
    same_config = {k: v for k, v in old.items() if k != "inputs"} == {k: v for k, v in new.items() if k != "inputs"}
    if same_config and old_inputs != new_inputs:
        changed = sorted(k for k in set(old_inputs) | set(new_inputs) if old_inputs.get(k) != new_inputs.get(k))
        raise InvalidParameterError(
            f"{out} was made from the same config but {', '.join(changed)} changed since (same path, other "
            "content). Results are never mixed: choose a new run folder")


def __getattr__(name: str):
    """``run_<kind>`` (the former runners) stay importable from here."""
    for kind in KINDS.values():
        if name == "run_" + kind.name.replace("-", "_"):
            return kind.run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
