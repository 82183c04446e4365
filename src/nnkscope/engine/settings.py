"""The settings of an NNK graph, in one frozen, validated object.

Every entry point that builds a graph (``nnk_graph``, ``build_graph``, ``point_metrics``, the studies, the CLI)
takes these settings under these names, validates them here, and writes :meth:`GraphSettings.to_dict` whole into
its results, so a stored result names everything that produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .._validate import check_choice, check_positive, check_positive_int
from ..errors import InvalidParameterError
from .graph import RULES
from .kernels import KERNELS, Kernel, make_kernel
from .neighbors import DUPLICATES, resolve_search
from .solvers import DEFAULT_TOL, SOLVERS

__all__ = ["GraphSettings", "RULES", "DEFAULT_K"]

DEFAULT_K = 30


@dataclass(frozen=True)
class GraphSettings:
    """How an NNK graph is built.

    Parameters
    ----------
    k : candidates per node (the k nearest neighbours, self excluded).
    kernel : "gaussian" (candidates by Euclidean distance) or "cosine" (by cosine similarity).
    sigma : Gaussian bandwidth; None = mean distance to the k-th neighbour / 3.
    solver : "exact" (the NNLS optimum), "reference" (the authors' heuristic) or "scipy" (oracle loop).
    tau : weight threshold; weights below it are zeroed and candidates with kernel value <= tau get none.
        Must lie in [0, 1): kernel values are at most 1, so tau >= 1 would prune every candidate.
    tol : dual tolerance of the exact solver.
    knn : candidate search: "exact", "hnsw", "ivf", "gpu" or an ExactSearch / HNSWSearch / IVFSearch /
        TorchSearch with settings.
    duplicates : identical points: "error" (raise, naming the options), "keep" or "drop".
    symmetrize : default rule of the symmetric adjacency: "max", "min", "mean" or "reference".

    Examples
    --------
    >>> s = GraphSettings(k=10, kernel="cosine")
    >>> s.kernel_object.metric, s.replace(k=20).k
    ('cosine', 20)
    >>> GraphSettings(tau=1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: tau must lie in [0, 1)...
    """

    k: int = DEFAULT_K
    kernel: str = "gaussian"
    sigma: float | None = None
    solver: str = "exact"
    tau: float = 1e-6
    tol: float = DEFAULT_TOL
    knn: object = "exact"
    duplicates: str = "error"
    symmetrize: str = "max"

    def __post_init__(self):
        check_positive_int(self.k, "k")
        check_choice(self.kernel, "kernel", KERNELS)
        make_kernel(self.kernel, self.sigma)
        check_choice(self.solver, "solver", SOLVERS)
        tau = check_positive(self.tau, "tau", allow_zero=True)
        if tau >= 1:
            raise InvalidParameterError(f"tau must lie in [0, 1); got {self.tau!r}. Kernel values are at most 1, so "
                                        "tau >= 1 prunes every candidate (typical: 1e-6 for graphs, 1e-10 for "
                                        "interpolation)")
        check_positive(self.tol, "tol")
        check_choice(self.duplicates, "duplicates", DUPLICATES)
        check_choice(self.symmetrize, "symmetrize", RULES)
        object.__setattr__(self, "knn", resolve_search(self.knn))
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "tau", float(self.tau))
        if self.sigma is not None:
            object.__setattr__(self, "sigma", float(self.sigma))

    @property
    def kernel_object(self) -> Kernel:
        return Kernel(self.kernel, self.sigma)

    @property
    def metric(self) -> str:
        return self.kernel_object.metric

    def replace(self, **changes) -> GraphSettings:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready settings, the search method with its own settings."""
        d = dataclasses.asdict(self)
        d["knn"] = {"name": self.knn.name, **dataclasses.asdict(self.knn)}
        return d
