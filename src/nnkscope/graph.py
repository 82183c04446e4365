"""NNK graphs (and the kNN baseline) built from candidate neighbourhoods.

Data flow of :func:`nnk_graph`::

    X --knn--> candidates (N, k), exact distances --sigma rule--> kernel
      --solve_nodes (numba, blocks of nodes; local K, g built in place)--> theta (N, k), errors, status
      --> NNKGraph: directed weights (CSR), adjacency(rule) (symmetric CSR), save/load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import __version__
from ._validate import as_points, check_choice, check_k, check_positive, check_positive_int
from .errors import InputShapeError, InvalidParameterError
from .kernels import Kernel, make_kernel, sigma_from_kth_distance
from .neighbors import Neighbors, _resolve_method
from .neighbors import knn as knn_search
from .solvers import DEFAULT_TOL, SOLVERS, solve_candidates

__all__ = ["NNKGraph", "nnk_graph", "knn_graph", "RULES", "symmetrize"]

RULES = ("max", "min", "mean", "reference")
_METRIC_OF_KERNEL = {"gaussian": "euclidean", "cosine": "cosine"}


def symmetrize(W, rule: str = "max", *, candidates: np.ndarray | None = None, errors: np.ndarray | None = None):
    """Symmetric adjacency from directed weights ``W`` (row i = node i's weights).

    Rules: ``max`` = max(W, W') (union), ``min`` = min(W, W') (mutual edges only), ``mean`` = (W + W')/2,
    ``reference`` = the NNK authors' rule: the directed edge i->j survives only if i is also one of j's
    *candidates* and ``errors[i] < errors[j]`` strictly (the endpoint that reconstructs itself better owns the
    edge), then max.  The result has a zero diagonal whenever ``W`` has.

    Examples
    --------
    >>> W = sp.csr_array(np.array([[0, 0.5], [0.0, 0]]))
    >>> symmetrize(W, "mean").toarray().tolist()
    [[0.0, 0.25], [0.25, 0.0]]
    """
    check_choice(rule, "rule", RULES)
    W = sp.csr_array(W)
    if rule == "max":
        A = W.maximum(W.T)
    elif rule == "min":
        A = W.minimum(W.T)
    elif rule == "mean":
        A = (W + W.T) * 0.5
    else:
        if candidates is None or errors is None:
            raise InvalidParameterError("rule='reference' needs the candidates and the per-node errors")
        C = _rows_to_csr(candidates, np.ones(candidates.shape))
        Wc = W.multiply(C.T).tocoo()  # keep i->j only where i is among j's candidates
        keep = errors[Wc.row] < errors[Wc.col]
        D = sp.csr_array((Wc.data[keep], (Wc.row[keep], Wc.col[keep])), shape=W.shape)
        A = D.maximum(D.T)
    A = sp.csr_array(A)
    A.eliminate_zeros()
    A.sort_indices()
    return A


def _rows_to_csr(columns: np.ndarray, values: np.ndarray) -> sp.csr_array:
    """(N, N) CSR with ``values[i, s]`` at ``(i, columns[i, s])``, zeros dropped; owns fresh buffers.

    (Building CSR straight from ``values.ravel()`` would alias the caller's array, and scipy's in-place
    ``eliminate_zeros`` would then scramble it.)
    """
    n = columns.shape[0]
    nz = values != 0
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.count_nonzero(nz, axis=1), out=indptr[1:])
    W = sp.csr_array((values[nz], columns[nz], indptr), shape=(n, n))
    W.sort_indices()
    return W


@dataclass
class NNKGraph:
    """An NNK graph: each node's candidates, its NNK weights over them, and its interpolation error.

    Attributes
    ----------
    candidates : (N, k) int64, sorted by (distance, index), self excluded.
    theta : (N, k) float64, NNK weight of each candidate (0 = pruned).
    errors : (N,) float64, interpolation error ``e_i`` in [0, 1].
    status : (N,) uint8 solver status bits (0 ok; see :mod:`nnkscope.solvers`).
    distances : (N, k) float64 candidate distances (Euclidean, or 1 - cos), or None.
    params : dict of the settings that produced the graph.
    """

    candidates: np.ndarray
    theta: np.ndarray
    errors: np.ndarray
    status: np.ndarray
    distances: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        n, k = np.shape(self.candidates)
        for name, shape in (("theta", (n, k)), ("errors", (n,)), ("status", (n,))):
            if np.shape(getattr(self, name)) != shape:
                raise InputShapeError(f"NNKGraph.{name} must have shape {shape}; got {np.shape(getattr(self, name))}")
        if self.distances is not None and np.shape(self.distances) != (n, k):
            raise InputShapeError(f"NNKGraph.distances must have shape {(n, k)}; got {np.shape(self.distances)}")

    @property
    def n_nodes(self) -> int:
        return self.candidates.shape[0]

    @property
    def k(self) -> int:
        return self.candidates.shape[1]

    @property
    def n_neighbors(self) -> np.ndarray:
        """NNK degree: number of candidates with non-zero weight, per node."""
        return np.count_nonzero(self.theta, axis=1)

    @property
    def weights(self) -> sp.csr_array:
        """Directed weights as an (N, N) CSR array: row i holds theta_i on i's candidates."""
        return _rows_to_csr(self.candidates, self.theta)

    def adjacency(self, rule: str | None = None) -> sp.csr_array:
        """Symmetric, non-negative, zero-diagonal adjacency (see :func:`symmetrize`; default: the graph's rule)."""
        rule = self.params.get("symmetrize", "max") if rule is None else rule
        return symmetrize(self.weights, rule, candidates=self.candidates, errors=self.errors)

    def isolated_nodes(self, rule: str | None = None) -> np.ndarray:
        """Indices of nodes with no edge in ``adjacency(rule)``."""
        A = self.adjacency(rule)
        return np.flatnonzero(np.diff(A.indptr) == 0)

    def summary(self, rule: str | None = None) -> dict:
        """Headline numbers: NNK degree, error, edges, isolated nodes, degenerate solves."""
        A = self.adjacency(rule)
        deg = self.n_neighbors
        return {
            "n_nodes": self.n_nodes,
            "k": self.k,
            "kernel": self.params.get("kernel"),
            "sigma": self.params.get("sigma"),
            "solver": self.params.get("solver"),
            "mean_nnk_degree": float(deg.mean()),
            "median_nnk_degree": float(np.median(deg)),
            "mean_error": float(self.errors.mean()),
            "directed_edges": int(deg.sum()),
            "rule": self.params.get("symmetrize", "max") if rule is None else rule,
            "undirected_edges": int(A.nnz // 2),
            "isolated_nodes": int(np.count_nonzero(np.diff(A.indptr) == 0)),
            "nodes_without_candidates": int(np.count_nonzero(self.status & 1)),
            "degenerate_solves": int(np.count_nonzero(self.status & 2)),
            "solves_at_iteration_cap": int(np.count_nonzero(self.status & 4)),
        }

    def save(self, path) -> Path:
        """Write the graph to ``.npz`` or ``.parquet`` (chosen by suffix), atomically; round-trips exactly."""
        from .io import save_graph

        return save_graph(self, path)

    @classmethod
    def load(cls, path) -> NNKGraph:
        """Read a graph written by :meth:`save`."""
        from .io import load_graph

        return load_graph(path)


def _resolve_neighbors(X, k, kernel: Kernel, knn, duplicates, n_jobs, progress) -> Neighbors:
    metric = _METRIC_OF_KERNEL[kernel.name]
    if isinstance(knn, Neighbors):
        if knn.indices.shape != (len(X), k):
            raise InputShapeError(f"precomputed neighbours have shape {knn.indices.shape}; expected {(len(X), k)}. "
                                  "Recompute them with nnkscope.knn(X, k) or pass the matching k")
        if knn.metric != metric:
            raise InvalidParameterError(f"kernel={kernel.name!r} needs {metric} neighbours; got {knn.metric}")
        return knn
    try:
        _resolve_method(knn)
    except InvalidParameterError:
        raise InvalidParameterError(
            f"knn must be 'exact', 'hnsw', 'ivf', 'gpu', ExactSearch(...), HNSWSearch(...), IVFSearch(...), "
            f"nnkscope.gpu.TorchSearch(...) or a precomputed Neighbors result; got {knn!r}") from None
    return knn_search(X, k, metric=metric, method=knn, duplicates=duplicates, n_jobs=n_jobs, progress=progress)


def nnk_graph(X, k: int = 30, *, kernel: str = "gaussian", sigma: float | None = None, solver: str = "exact",
              symmetrize: str = "max", tau: float = 1e-6, tol: float = DEFAULT_TOL, knn="exact",
              duplicates: str = "error", n_jobs: int | None = None, block_size: int = 16384,
              progress: bool | None = None, executor=None, work_dir=None) -> NNKGraph:
    """Build the NNK graph of the rows of ``X``.

    Parameters
    ----------
    X : (N, d) array of points (float32 or float64; integers are promoted).
    k : candidates per node (the k nearest neighbours, self excluded).
    kernel : "gaussian" (candidates by Euclidean distance) or "cosine" (by cosine similarity).
    sigma : Gaussian bandwidth; default = mean distance to the k-th neighbour / 3.
    solver : "exact" (NNLS optimum, default), "reference" (the authors' heuristic) or "scipy" (oracle loop).
    symmetrize : default rule of :meth:`NNKGraph.adjacency` ("max", "min", "mean", "reference").
    tau : weight threshold; weights below it are zeroed and candidates with kernel value <= tau get none.
    tol : dual tolerance of the exact solver.
    knn : "exact", "hnsw", an :class:`~nnkscope.neighbors.ExactSearch` / :class:`~nnkscope.neighbors.HNSWSearch`
        with settings, or a precomputed :class:`~nnkscope.neighbors.Neighbors`.
    duplicates : what to do with identical points: "error" (default: raise, naming the options), "keep" (the
        lowest-index copy reconstructs its twin with weight 1) or "drop" (identical points are never candidates
        of each other).
    n_jobs : threads (default: all CPUs available); results do not depend on it for exact search.
    block_size : nodes solved per block (bounds scratch memory; the progress bar advances per block).
    progress : progress bars (default: when stderr is a terminal).
    executor : run block by block on an executor instead: a Dask ``distributed.Client``, a
        ``concurrent.futures.Executor`` or "inline" (see :func:`nnkscope.blocked.build_graph`, which also reads
        on-disk inputs without loading them).  ``X`` is saved once to ``work_dir`` (default: a temporary folder,
        which must be visible to the workers) and tasks of ``block_size`` rows run there; ``n_jobs`` is then the
        thread count inside each task.  The result equals the in-process one.

    Returns
    -------
    NNKGraph

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> G = nnk_graph(rng.normal(size=(200, 3)), k=10)
    >>> G.theta.shape, bool((G.n_neighbors <= 10).all())
    ((200, 10), True)
    >>> A = G.adjacency("max"); bool(abs(A - A.T).max() == 0)
    True
    """
    X = as_points(X)
    k = check_k(k, len(X))
    kern = make_kernel(kernel, sigma)
    check_choice(solver, "solver", SOLVERS)
    check_choice(symmetrize, "symmetrize", RULES)
    tau = check_positive(tau, "tau", allow_zero=True)
    tol = check_positive(tol, "tol")
    check_positive_int(block_size, "block_size")
    if executor is not None:
        return _nnk_graph_blocked(X, k, kern, solver, symmetrize, tau, tol, knn, duplicates, n_jobs, block_size,
                                  progress, executor, work_dir)
    t0 = time.perf_counter()
    nbrs = _resolve_neighbors(X, k, kern, knn, duplicates, n_jobs, progress)
    t1 = time.perf_counter()
    if kern.name == "gaussian" and kern.sigma is None:
        kern = Kernel("gaussian", sigma_from_kth_distance(nbrs.distances[:, -1]))
    theta, errors, status = solve_candidates(X, X, kern, nbrs.indices, solver=solver, tau=tau, tol=tol,
                                             n_jobs=n_jobs, block_size=block_size, progress=progress)
    t2 = time.perf_counter()
    params = {"k": k, "kernel": kern.name, "sigma": kern.sigma, "solver": solver, "symmetrize": symmetrize,
              "tau": tau, "tol": tol, "knn": nbrs.summary(), "n_features": X.shape[1],
              "dtype": str(X.dtype), "nnkscope_version": __version__,
              "timings": {"knn_s": t1 - t0, "solve_s": t2 - t1}}
    return NNKGraph(nbrs.indices, theta, errors, status, nbrs.distances, params)


def _nnk_graph_blocked(X, k, kern, solver, symmetrize, tau, tol, knn, duplicates, n_jobs, block_size, progress,
                      executor, work_dir) -> NNKGraph:
    import tempfile

    from ._runtime import resolve_n_jobs
    from .blocked import build_graph

    if isinstance(knn, Neighbors):
        raise InvalidParameterError("precomputed neighbours cannot be combined with executor=...; pass knn='exact' "
                                    "or 'hnsw'")
    with tempfile.TemporaryDirectory(prefix="nnkscope-", dir=work_dir) as tmp:
        np.save(Path(tmp) / "X.npy", X)
        parts = build_graph(Path(tmp) / "X.npy", Path(tmp) / "graph", k, kernel=kern.name, sigma=kern.sigma,
                            solver=solver, tau=tau, tol=tol, knn=knn, duplicates=duplicates, symmetrize=symmetrize,
                            block_size=block_size, shard_size=max(block_size, 65536), executor=executor,
                            threads_per_task=1 if n_jobs is None else resolve_n_jobs(n_jobs),
                            progress=progress)
        return parts.to_graph()


def knn_graph(X, k: int = 30, *, kernel: str = "gaussian", sigma: float | None = None, tau: float = 1e-6,
              knn="exact", duplicates: str = "keep", n_jobs: int | None = None,
              progress: bool | None = None) -> sp.csr_array:
    """The kNN baseline graph: kernel weights on each node's k candidates, zero below ``tau``, union-symmetrised.

    Examples
    --------
    >>> A = knn_graph(np.array([[0.0], [1.0], [2.0], [10.0]]), k=1, sigma=1.0)
    >>> A.toarray().round(3).tolist()[0]
    [0.0, 0.607, 0.0, 0.0]
    """
    X = as_points(X)
    k = check_k(k, len(X))
    kern = make_kernel(kernel, sigma)
    tau = check_positive(tau, "tau", allow_zero=True)
    nbrs = _resolve_neighbors(X, k, kern, knn, duplicates, n_jobs, progress)
    if kern.name == "gaussian":
        s = kern.sigma if kern.sigma is not None else sigma_from_kth_distance(nbrs.distances[:, -1])
        vals = np.exp(-(nbrs.distances**2) / (2.0 * s * s))
    else:
        vals = np.clip(1.0 - 0.5 * nbrs.distances, 0.0, 1.0)  # 1/2 + 1/2 cos with distance = 1 - cos
    vals[vals <= tau] = 0.0
    return symmetrize(_rows_to_csr(nbrs.indices, vals), "max")
