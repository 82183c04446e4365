"""The NNK graph as data: candidates, weights, errors; its symmetric adjacency; its files.

Graphs are built by :mod:`nnkscope.engine.pipeline` (``nnk_graph``, ``build_graph``).  Files: ``.npz`` or
``.parquet``; both store the (N, k) candidate, weight and distance arrays and the per-node errors and status
verbatim, so a load reproduces the graph bit for bit; writes are atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._validate import check_choice
from ..errors import FileFormatError, InputShapeError, InvalidParameterError
from ..io import _check_exists, _reading, atomic_path, read_columns, write_columns

__all__ = ["NNKGraph", "RULES", "symmetrize", "rows_to_csr", "save_graph", "load_graph"]

RULES = ("max", "min", "mean", "reference")
_GRAPH_FORMAT = "nnkscope.graph/1"


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
        C = rows_to_csr(candidates, np.ones(candidates.shape))
        Wc = W.multiply(C.T).tocoo()  # keep i->j only where i is among j's candidates
        keep = errors[Wc.row] < errors[Wc.col]
        D = sp.csr_array((Wc.data[keep], (Wc.row[keep], Wc.col[keep])), shape=W.shape)
        A = D.maximum(D.T)
    A = sp.csr_array(A)
    A.eliminate_zeros()
    A.sort_indices()
    return A


def rows_to_csr(columns: np.ndarray, values: np.ndarray) -> sp.csr_array:
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
    status : (N,) uint8 solver status bits (0 ok; see :mod:`nnkscope.engine.solvers`).
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
        return rows_to_csr(self.candidates, self.theta)

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
        return save_graph(self, path)

    @classmethod
    def load(cls, path) -> NNKGraph:
        """Read a graph written by :meth:`save`."""
        return load_graph(path)


def save_graph(graph: NNKGraph, path) -> Path:
    """Write an :class:`NNKGraph` to ``.npz`` or ``.parquet`` atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".parquet", ".pq"):
        raise FileFormatError(f"{path}: graphs are saved as .npz or .parquet; got {suffix!r}")
    meta = json.dumps({"format": _GRAPH_FORMAT, "params": graph.params}, sort_keys=True, default=str)
    arrays = {"candidates": graph.candidates, "theta": graph.theta, "errors": graph.errors, "status": graph.status}
    if graph.distances is not None:
        arrays["distances"] = graph.distances
    if suffix == ".npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(meta), **arrays)
    else:
        write_columns(path, {"node": np.arange(graph.n_nodes, dtype=np.int64), **arrays}, {"nnkscope": meta})
    return path


def load_graph(path) -> NNKGraph:
    """Read a graph written by :func:`save_graph` (raises :class:`FileFormatError` on anything else)."""
    path = Path(path)
    _check_exists(path)
    suffix = path.suffix.lower()
    with _reading(path, "the graph", "Rebuild it with nnkscope.nnk_graph(...).save(path) or `nnkscope graph`"):
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "meta" not in z.files:
                    raise FileFormatError(f"{path} is an .npz but not an nnkscope graph (no 'meta' entry)")
                meta = json.loads(str(z["meta"]))
                arrays = {name: z[name] for name in z.files if name != "meta"}
        elif suffix in (".parquet", ".pq"):
            arrays, raw = read_columns(path, with_metadata=True)
            if "nnkscope" not in raw:
                raise FileFormatError(f"{path} is a Parquet file but not an nnkscope graph (no 'nnkscope' metadata)")
            meta = json.loads(raw["nnkscope"])
            arrays.pop("node", None)
        else:
            raise FileFormatError(f"{path}: graphs are read from .npz or .parquet; got {suffix!r}")
    if not isinstance(meta, dict) or meta.get("format") != _GRAPH_FORMAT:
        raise FileFormatError(f"{path}: unknown graph format; expected {_GRAPH_FORMAT!r}")
    missing = {"candidates", "theta", "errors", "status"} - set(arrays)
    if missing:
        raise FileFormatError(f"{path}: graph file lacks {sorted(missing)}; rebuild it")
    try:
        return NNKGraph(arrays["candidates"], arrays["theta"], arrays["errors"], arrays["status"],
                        arrays.get("distances"), meta["params"])
    except InputShapeError as exc:
        raise FileFormatError(f"{path}: inconsistent graph arrays ({exc}); rebuild it") from exc
