"""Old import paths keep working: ``nnkscope.graph`` is ``nnkscope.engine.graph``, and so on.

The modules moved into subpackages by layer (engine, measures, nn); users' scripts import them by their old
names.  A meta-path finder maps each old name to the module that now holds it, so ``import nnkscope.graph`` returns
the very module object of ``nnkscope.engine.graph`` (monkeypatching and pickling see one module, not a copy).
An old module whose contents now live in several modules becomes a read-only view of their public names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

# old name -> the module(s) that now hold its public names (first one wins on a clash)
MOVED: dict[str, tuple[str, ...]] = {
    "kernels": ("engine.kernels",),
    "solvers": ("engine.solvers",),
    "neighbors": ("engine.neighbors",),
    "gpu": ("engine.gpu",),
    "graph": ("engine.graph", "engine.pipeline"),
    "blocked": ("engine.pipeline", "measures.metrics", "io"),
    "labels": ("measures.labels",),
    "manifold": ("measures.manifold",),
    "interpolation": ("measures.interpolation",),
    "nnk_means": ("measures.nnk_means",),
    "collapse": ("measures.collapse",),
    "compare": ("measures.compare",),
    "metrics": ("measures.metrics",),
    "capture": ("nn.capture",),
    "models": ("nn.models",),
    "datasets": ("nn.datasets",),
    "studies.compare": ("studies.comparison",),
    "studies.config": ("studies.registry", "studies.base"),
    "studies.runners": ("studies.registry",),
}


# module -> {name: module that now holds it}, for names that left a module still in place
MOVED_NAMES: dict[str, dict[str, str]] = {
    "io": {"save_graph": "engine.graph", "load_graph": "engine.graph"},
}


def moved_name(module: str, name: str):
    """The object ``module.name`` now lives elsewhere: fetch it (for a module-level ``__getattr__``)."""
    target = MOVED_NAMES.get(module[len("nnkscope."):], {}).get(name)
    if target is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"nnkscope.{target}"), name)


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str, targets: tuple[str, ...]):
        self.old, self.targets = old, targets

    def create_module(self, spec):
        mods = [importlib.import_module(f"nnkscope.{t}") for t in self.targets]
        if len(mods) == 1:
            # the import system overwrites the returned module's __spec__ with the old name's spec; keep its own,
            # else its relative imports warn (__package__ != __spec__.parent) and introspection sees the old name
            self._own_spec = mods[0].__spec__
            return mods[0]
        view = types.ModuleType(spec.name, f"Old import path; its names now live in {', '.join(self.targets)}.")
        names: dict = {}
        for m in reversed(mods):
            names.update({n: getattr(m, n) for n in getattr(m, "__all__", ())})
        view.__dict__.update(names)
        view.__all__ = sorted(names)
        return view

    def exec_module(self, module):
        own = getattr(self, "_own_spec", None)
        if own is not None:
            module.__spec__ = own


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("nnkscope."):
            return None
        targets = MOVED.get(fullname[len("nnkscope."):])
        if targets is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(fullname, targets))


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
