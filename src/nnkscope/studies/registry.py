"""The one registry of study kinds, and running a study from its config.

``KINDS`` maps each name to its :class:`~nnkscope.studies.base.StudyKind` (defined one per module in
:mod:`nnkscope.studies.kinds`).  The CLI (``nnkscope study KIND``), the report (one section per kind) and
``nnkscope demo`` all read it; a new kind is one new module and one line here.
"""

from __future__ import annotations

from ..errors import InvalidParameterError
from ..store import RunStore
from .base import StudyKind, load_yaml
from .kinds.compare import COMPARE
from .kinds.early_stopping import EARLY_STOPPING
from .kinds.invariance import INVARIANCE
from .kinds.layerwise import LAYERWISE, TRAINING
from .kinds.ssl import SSL
from .kinds.stability import STABILITY
from .kinds.width_sweep import WIDTH_SWEEP

__all__ = ["KINDS", "DEFAULTS", "get_kind", "resolve_config", "load_config", "run_study", "StudyKind"]

KINDS: dict[str, StudyKind] = {k.name: k for k in (LAYERWISE, TRAINING, COMPARE, STABILITY, INVARIANCE,
                                                   EARLY_STOPPING, WIDTH_SWEEP, SSL)}
DEFAULTS: dict[str, dict] = {name: kind.defaults for name, kind in KINDS.items()}


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
    """Read a YAML config file and resolve it for ``kind``."""
    return resolve_config(kind, load_yaml(path))


def run_study(kind: str, config: dict, out, *, progress: bool | None = None):
    """Run a resolved study config into the run folder ``out``; returns ``(store, table)``.

    The config is checked again first, so nothing is written for a config that fails validation.
    """
    study = get_kind(kind)
    config = study.resolve(config)
    store = RunStore(out, params={"study": kind, **config})
    return store, study.run(config, store, progress=progress)


def __getattr__(name: str):
    """``run_<kind>`` (the former runners) stay importable from here."""
    for kind in KINDS.values():
        if name == "run_" + kind.name.replace("-", "_"):
            return kind.run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
