"""nnkscope: the geometry of learned representations, measured with NNK neighbourhood graphs."""

__version__ = "0.1.0"

from .errors import *  # noqa: E402,F403
from .graph import NNKGraph, knn_graph, nnk_graph, symmetrize  # noqa: E402
from .kernels import cosine_kernel, gaussian_kernel, local_problems  # noqa: E402
from .neighbors import ExactSearch, HNSWSearch, IVFSearch, Neighbors, knn  # noqa: E402
from .solvers import kkt_violation, solve_nnk  # noqa: E402

__all__ = [
    "__version__", "nnk_graph", "knn_graph", "NNKGraph", "symmetrize", "knn", "Neighbors", "ExactSearch",
    "HNSWSearch", "IVFSearch", "solve_nnk", "kkt_violation", "local_problems", "gaussian_kernel", "cosine_kernel",
]
