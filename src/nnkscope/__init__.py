"""nnkscope: the geometry of learned representations, measured with NNK neighbourhood graphs.

Layers, each importing only from those before it: the core (``errors``, ``_validate``, ``_runtime``, ``io``,
``settings``, ``executor``) -> ``engine`` (kernels, solvers, neighbors, graph, pipeline) -> ``measures`` (labels,
manifold, interpolation, nnk_means, collapse, compare, metrics, intrinsic, spectral, uncertainty, embedding) ->
``nn`` (capture, models, datasets; torch) -> ``store`` -> ``studies`` -> ``report`` -> ``cli``.
"""

from typing import TYPE_CHECKING

from . import _compat
from ._version import __version__
from .engine.graph import NNKGraph, symmetrize
from .engine.kernels import Kernel, cosine_kernel, gaussian_kernel, local_problems
from .engine.neighbors import ExactSearch, HNSWSearch, IVFSearch, Neighbors, knn
from .engine.pipeline import build_graph, knn_graph, nnk_graph
from .engine.settings import GraphSettings
from .engine.solvers import kkt_violation, solve_nnk
from .errors import *  # noqa: F403
from .measures.intrinsic import intrinsic_dimension
from .measures.metrics import graph_metrics, point_metrics
from .measures.spectral import spectral_summary

_compat.install()

if TYPE_CHECKING:
    from .measures.explain import explain

__all__ = [
    "__version__", "nnk_graph", "knn_graph", "build_graph", "NNKGraph", "symmetrize", "knn", "Neighbors",
    "ExactSearch", "HNSWSearch", "IVFSearch", "solve_nnk", "kkt_violation", "local_problems", "gaussian_kernel",
    "cosine_kernel", "Kernel", "GraphSettings", "point_metrics", "graph_metrics", "intrinsic_dimension",
    "spectral_summary", "explain",
]

# Loaded on first use: explain imports scikit-learn, analyze torch and matplotlib, which ``import nnkscope`` must not
# (for the same reason analyze is not in ``__all__``: ``from nnkscope import *`` stays light).
_LAZY = {"explain": "nnkscope.measures.explain", "analyze": "nnkscope.analyze"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # importing nnkscope.analyze bound the module to this name; the function wins
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
