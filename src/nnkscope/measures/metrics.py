"""Per-point NNK metrics of an embedding: one set of block functions for every size.

:func:`point_metrics` (an in-memory array) and :func:`graph_metrics` (a graph built by
:func:`~nnkscope.engine.pipeline.build_graph`, on disk or in memory) run the same tasks per block of nodes:

    nnk parts --local metrics (degree, error, diameter, local ID, homogeneity, LOO)--> metrics_local parts
              --tangents (PCA of the k candidates)--> tangent parts
              --curvature (the neighbours' tangents)--> metrics parts --> one DataFrame
              --edge sums (max-symmetrised graph)--> graph-level numbers (blocked runs)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .._validate import as_points, check_labels
from ..engine.kernels import Kernel
from ..engine.pipeline import GraphParts, build_graph, nnk_graph, run_tasks
from ..engine.settings import GraphSettings
from ..errors import InvalidParameterError
from ..executor import as_executor
from ..io import ArraySource, atomic_path
from .interpolation import WEIGHTINGS, require_class_sizes, vote
from .labels import class_homogeneity, cross_class_fraction, dirichlet_energy
from .manifold import curvature_from_tangents, local_geometry, tangent_spaces

__all__ = ["point_metrics", "describe_graph", "graph_metrics", "multiscale_metrics", "merge_neighbourhoods",
           "loo_columns", "column_means", "MEAN_COLUMNS"]

MEAN_COLUMNS = ("nnk_degree", "interpolation_error", "diameter", "local_id", "curvature")


# --------------------------------------------------------------------------------------------------------------
# block tasks


def _metrics_task(plan, b: int, opts: dict) -> np.ndarray:
    """Node-local metrics of block ``b`` (everything but curvature); returns its local dimensions."""
    if not plan.parts.has("metrics_local", b):
        g = plan.parts.read("nnk", b)
        lo, hi = plan.blocks[b]
        _, Z, cand = plan.source.gather(lo, hi, g["candidates"])
        norm, theta = opts["normalize"], g["theta"]
        ids, ratio, diam = local_geometry(Z, cand, theta, energy=opts["energy"], normalize=norm, n_jobs=plan.threads)
        cols = {"node": g["node"], "nnk_degree": np.count_nonzero(theta, axis=1), "interpolation_error": g["error"],
                "diameter": diam,
                "local_id": ids, "first_pc_ratio": ratio, "solver_status": g["status"]}
        if opts["labelled"]:
            codes = plan.parts.read_array("labels", 0)
            own, nbr = np.asarray(codes[lo:hi]), np.asarray(codes[g["candidates"]])
            positions = np.arange(nbr.size).reshape(nbr.shape)
            cols["homogeneity"] = class_homogeneity(positions, theta, nbr.ravel(), own)
            cols["homogeneity_unweighted"] = class_homogeneity(positions, theta, nbr.ravel(), own, weighted=False)
            loo, _ = loo_columns(theta, g["distances"], Kernel(plan.settings.kernel, opts["sigma"]), own, nbr,
                                 opts["n_classes"])
            cols.update(loo)
        plan.parts.write("metrics_local", b, cols)
    return plan.parts.read("metrics_local", b, ["local_id"])["local_id"]


def _tangent_task(plan, b: int, dim: int, normalize: bool) -> int:
    if not plan.parts.has("tangents", b):
        g = plan.parts.read("nnk", b, ["candidates"])
        lo, hi = plan.blocks[b]
        _, Z, cand = plan.source.gather(lo, hi, g["candidates"])  # the block's rows come first in Z
        plan.parts.write_array("tangents", b, tangent_spaces(Z, cand, dim, normalize=normalize, n_jobs=plan.threads))
    return b


def _curvature_task(plan, b: int) -> int:
    if not plan.parts.has("metrics", b):
        g = plan.parts.read("nnk", b, ["node", "candidates", "theta"])
        if len(plan.blocks) == 1:  # the whole graph is this block: its own tangents are every neighbour's
            U, cand = plan.parts.read_array("tangents", b), g["candidates"]
        else:
            uniq = np.unique(g["candidates"])
            U_nbr = plan.rows_of_blocks(uniq, lambda p: {"U": plan.parts.read_array("tangents", p)})["U"]
            U = np.concatenate([plan.parts.read_array("tangents", b), U_nbr])
            cand = len(g["node"]) + np.searchsorted(uniq, g["candidates"])
        curv = curvature_from_tangents(U, cand, g["theta"], n_jobs=plan.threads)
        cols = plan.parts.read("metrics_local", b)
        ordered = {}
        for name, col in cols.items():
            ordered[name] = col
            if name == "first_pc_ratio":
                ordered["curvature"] = curv
        plan.parts.write("metrics", b, ordered)
    return b


def _edge_task(plan, b: int, labelled: bool) -> dict:
    """Block b's share of the max-symmetrised adjacency: each undirected pair {i, j} is counted once, by the
    directed edge i -> j with i in this block when j -> i is absent or i < j; its weight is max(W_ij, W_ji)."""
    g = plan.parts.read("nnk", b, ["candidates", "theta"])
    lo = plan.blocks[b][0]
    r, s = np.nonzero(g["theta"] > 0)
    i, j, w_ij = lo + r, g["candidates"][r, s], g["theta"][r, s]
    targets = np.unique(j)
    rows_j = plan.rows_of_blocks(targets, lambda p: plan.parts.read("nnk", p, ["candidates", "theta"]))
    pos = np.searchsorted(targets, j)
    w_ji = np.where(rows_j["candidates"][pos] == i[:, None], rows_j["theta"][pos], 0.0).sum(axis=1)  # distinct
    own = (w_ji == 0) | (i < j)
    a = np.maximum(w_ij, w_ji)[own]
    out = {"pairs": int(own.sum()), "weight": float(a.sum()), "touched": np.union1d(i, targets), "cross": np.nan}
    if labelled:
        codes = plan.parts.read_array("labels", 0)
        out["cross"] = float(a[np.asarray(codes[i[own]]) != np.asarray(codes[j[own]])].sum())
    return out


def _graph_summary(ex, plan, labelled: bool, progress) -> dict:
    """Dataset-level numbers of the max-symmetrised graph from per-block edge sums (no N x N matrix anywhere)."""
    parts = run_tasks(ex, _edge_task, [(plan, b, labelled) for b in range(len(plan.blocks))], "edge blocks",
                      progress)
    touched = np.zeros(plan.n, bool)  # nodes with an edge: an NNK neighbour, or someone's NNK neighbour
    for part in parts:
        touched[part["touched"]] = True
    weight = sum(p["weight"] for p in parts)
    out = {"rule": "max", "undirected_edges": sum(p["pairs"] for p in parts),
           "isolated_nodes": int((~touched).sum())}
    if labelled:
        cross = sum(p["cross"] for p in parts)
        # one-hot labels: tr(Y'LY) = 1/2 sum_ij A_ij |y_i - y_j|^2 = 2 x (cross-class weight over pairs)
        out.update(dirichlet_energy=2.0 * cross, cross_class_edge_fraction=cross / weight if weight else np.nan)
    return out


def _metrics_manifest(parts: GraphParts, record: dict) -> None:
    """Metric parts on disk are reused on resume only for the same labels and settings."""
    path = Path(parts.out) / "metrics_manifest.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old != record:
            raise InvalidParameterError(
                f"{parts.out} holds metric parts computed with other labels or settings ({old}); delete "
                f"{parts.out}/metrics*, {parts.out}/metrics_manifest.json to recompute, or build into a new folder")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record))


def graph_metrics(parts: GraphParts, y=None, *, energy: float = 0.9, curvature_dim: int | None = None,
                  normalize: bool | None = None, executor=None, progress: bool | None = None,
                  graph_summary: bool = True):
    """Per-point metrics of a graph built by :func:`~nnkscope.engine.pipeline.build_graph`; returns the DataFrame.

    The columns are those of :func:`point_metrics` (``label`` and ``loo_prediction`` decoded from the class
    codes); on disk they are written as ``metrics/part-*.parquet``.  With ``graph_summary``,
    ``df.attrs["graph"]`` holds the graph-level numbers of the max-symmetrised adjacency (undirected edges,
    isolated nodes and, with labels, Dirichlet energy and cross-class edge fraction), summed per block.
    Curvature needs each neighbour's tangent basis, so tangents are kept per block first (``8 * N * dim * d``
    bytes) and removed when the curvature parts are done.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); X = np.random.default_rng(0).normal(size=(200, 3))
    >>> np.save(d / "x.npy", X)
    >>> df = graph_metrics(build_graph(d / "x.npy", d / "g", k=8, block_size=64, shard_size=100))
    >>> len(df), "curvature" in df
    (200, True)
    """
    import pandas as pd

    plan = parts.plan
    ex = as_executor(executor)
    nb = len(plan.blocks)
    norm = parts.kernel.normalize if normalize is None else bool(normalize)
    classes, codes = (None, None) if y is None else check_labels(y, plan.n)
    opts = {"energy": float(energy), "normalize": norm, "labelled": codes is not None, "sigma": parts.kernel.sigma,
            "n_classes": 0 if classes is None else len(classes)}
    if parts.out is not None:
        from ..io import fingerprint

        _metrics_manifest(parts, {"energy": float(energy), "normalize": norm, "curvature_dim": curvature_dim,
                                  "labels": None if codes is None else fingerprint(codes[:, None])})
    if codes is not None:
        plan.parts.write_array("labels", 0, codes)
    bar = progress if parts.out is not None else False
    ids = run_tasks(ex, _metrics_task, [(plan, b, opts) for b in range(nb)], "metrics blocks", bar)
    dim = curvature_dim if curvature_dim is not None else max(1, int(np.median(np.concatenate(ids))))
    dim = min(dim, plan.k, plan.d)
    run_tasks(ex, _tangent_task, [(plan, b, dim, norm) for b in range(nb)], "tangent blocks", bar)
    run_tasks(ex, _curvature_task, [(plan, b) for b in range(nb)], "curvature blocks", bar)
    plan.parts.remove("tangents")
    frames = [plan.parts.read("metrics", b) for b in range(nb)]
    df = pd.DataFrame(frames[0]) if nb == 1 else pd.concat([pd.DataFrame(f) for f in frames], ignore_index=True)
    if classes is not None:
        df.insert(df.columns.get_loc("homogeneity"), "label", classes[codes])
        df["loo_prediction"] = classes[df.pop("loo_prediction_code").to_numpy()]
    df.attrs["curvature_dim"] = dim
    if graph_summary:
        df.attrs["graph"] = _graph_summary(ex, plan, codes is not None, bar)
    return df


def point_metrics(X, y=None, k: int = 30, *, settings: GraphSettings | None = None, kernel: str = "cosine",
                  sigma: float | None = None, energy: float = 0.9, curvature_dim: int | None = None,
                  normalize: bool | None = None, duplicates: str = "keep", symmetrize: str = "max",
                  check_class_sizes: bool = True, n_jobs: int | None = None, progress: bool | None = None,
                  rule: str | None = None):
    """Per-point NNK manifold (and, with labels, label-geometry and leave-one-out) metrics.

    Parameters
    ----------
    X : (N, d) embedding. y : optional (N,) labels of any hashable type.
    k, kernel, sigma, duplicates, symmetrize : the graph settings (or ``settings=`` whole).  Every point's
        candidates exclude itself, so the graph's weights are exactly the leave-one-out NNK interpolation of each
        point.  The defaults differ from :func:`~nnkscope.nnk_graph` on purpose: cosine is the kernel of
        representation studies (DeepNNK), and identical points are kept, since layers often map inputs together.
    energy : PCA energy threshold of the local dimension. curvature_dim : tangent dimension for the curvature
        proxy (default: the median local dimension, at least 1). normalize : measure diameters and tangents on
        unit-norm rows (default: True for the cosine kernel).  symmetrize : adjacency rule for label smoothness
        (``rule`` is its former name).

    Returns
    -------
    (DataFrame, dict): one row per point, and dataset-level summaries.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df, summary = point_metrics(rng.normal(size=(300, 5)), np.repeat([0, 1, 2], 100), k=10)
    >>> df.columns[:5].tolist()
    ['node', 'nnk_degree', 'interpolation_error', 'diameter', 'local_id']
    """
    X = as_points(X)
    if rule is not None:
        warnings.warn("point_metrics(rule=...) is now symmetrize=...", DeprecationWarning, stacklevel=2)
        symmetrize = rule
    s = settings if settings is not None else GraphSettings(k=k, kernel=kernel, sigma=sigma, duplicates=duplicates,
                                                            symmetrize=symmetrize)
    labels = None
    if y is not None:  # validated before the graph is built
        labels = check_labels(y, len(X))
        if check_class_sizes:
            require_class_sizes(labels[1], labels[0], s.k)
    parts = build_graph(ArraySource(X), None, settings=s, threads_per_task=n_jobs, progress=progress)
    return describe_graph(parts, y, energy=energy, curvature_dim=curvature_dim, normalize=normalize,
                          _labels=labels)


def describe_graph(parts: GraphParts, y=None, *, energy: float = 0.9, curvature_dim: int | None = None,
                   normalize: bool | None = None, _labels=None):
    """:func:`point_metrics` of a graph already built in memory by :func:`~nnkscope.engine.pipeline.build_graph`
    (so a caller can reuse its candidates, e.g. for label variation); returns ``(DataFrame, summary)``."""
    s = parts.settings
    labels = _labels if _labels is not None or y is None else check_labels(y, parts.plan.n)
    df = graph_metrics(parts, y, energy=energy, curvature_dim=curvature_dim, normalize=normalize,
                       graph_summary=False)
    G = parts.to_graph()
    summary = {"n": parts.plan.n, "k": s.k, "kernel": s.kernel, "sigma": G.params["sigma"],
               "curvature_dim": df.attrs["curvature_dim"], **column_means(df),
               "median_local_id": float(np.median(df["local_id"])), **G.summary(s.symmetrize),
               "knn_method": G.params["knn"]["method"], "knn_recall": G.params["knn"].get("recall") or np.nan}
    if labels is not None:
        classes, codes = labels
        summary["loo_fallback_nodes"] = int(((G.theta > 0).sum(axis=1) == 0).sum())
        for w in WEIGHTINGS:
            summary[f"loo_error_{w}"] = float(df[f"loo_error_{w}"].mean())
        summary["weighted_unweighted_gap"] = summary["loo_error_nnk_uniform"] - summary["loo_error_nnk"]
        summary["homogeneous_fraction_H"] = float((df["homogeneity"] == 1).mean())
        summary["mean_homogeneity"] = float(df["homogeneity"].mean())
        A = G.adjacency(s.symmetrize)
        summary["dirichlet_energy"] = dirichlet_energy(A, np.eye(len(classes))[codes])
        summary["cross_class_edge_fraction"] = cross_class_fraction(A, codes) if A.nnz else float("nan")
    return df, summary


def column_means(df) -> dict:
    """``mean_<column>`` of the per-point manifold columns of a metrics table (the summary's averages).

    Examples
    --------
    >>> import pandas as pd
    >>> column_means(pd.DataFrame({c: [1.0, 3.0] for c in MEAN_COLUMNS}))["mean_curvature"]
    2.0
    """
    return {f"mean_{c}": float(df[c].mean()) for c in MEAN_COLUMNS}


def loo_columns(theta: np.ndarray, distances: np.ndarray, kernel: Kernel, codes: np.ndarray,
                candidate_codes: np.ndarray, n_classes: int) -> tuple[dict, int]:
    """Leave-one-out votes of every weighting of the candidates (:data:`~nnkscope.measures.interpolation.WEIGHTINGS`).

    Returns the per-point columns (hard error, soft error per weighting, and the NNK prediction as a class code)
    and the number of points whose NNK weights were all zero (they fall back to their nearest candidate).

    Examples
    --------
    >>> cols, fb = loo_columns(np.array([[1.0, 0.0]]), np.array([[0.1, 0.2]]), Kernel("gaussian", 1.0),
    ...                        np.array([0]), np.array([[0, 1]]), 2)
    >>> bool(cols["loo_error_nnk"][0]), bool(cols["loo_error_uniform"][0]), fb
    (False, False, 0)
    """
    g = kernel.values(distances)
    weights = {"nnk": theta, "nnk_uniform": (theta > 0) * 1.0, "kernel": g, "uniform": np.ones_like(g)}
    cols: dict[str, np.ndarray] = {}
    fallback = 0
    for w in WEIGHTINGS:
        proba, fb = vote(weights[w], candidate_codes, n_classes)
        pred = proba.argmax(1)
        cols[f"loo_error_{w}"] = pred != codes
        cols[f"loo_soft_error_{w}"] = 1 - proba[np.arange(len(codes)), codes]
        if w == "nnk":
            cols["loo_prediction_code"] = pred
            fallback = int(fb.sum())
    return cols, fallback
def merge_neighbourhoods(X: np.ndarray, candidates: np.ndarray, theta: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """One coarsening step: visiting points by increasing interpolation error, merge each unused point with its
    unused NNK neighbours into their weighted centroid ``(x_i + sum_j theta_j x_j) / (1 + sum_j theta_j)``.

    Every point joins exactly one group, so the number of points shrinks by about ``1 + k_NNK``.
    """
    used = np.zeros(len(X), bool)
    out = []
    for i in np.argsort(errors, kind="stable"):
        if used[i]:
            continue
        members = candidates[i][(theta[i] > 0) & ~used[candidates[i]]]
        w = theta[i][(theta[i] > 0) & ~used[candidates[i]]]
        used[i] = True
        used[members] = True
        out.append((X[i] + w @ X[members]) / (1.0 + w.sum()))
    return np.asarray(out)


def multiscale_metrics(X, k: int = 30, *, levels: int = 3, kernel: str = "gaussian", energy: float = 0.9,
                       n_jobs: int | None = None):
    """Manifold metrics at successively coarser scales (multiscale NNK, research notes 8.6).

    Level 0 is the data; level s+1 merges each NNK neighbourhood of level s into its centroid
    (:func:`merge_neighbourhoods`) and rebuilds the NNK graph.  Stops early when fewer than ``k + 2`` points remain.
    Returns a DataFrame with one row per level.
    """
    import pandas as pd

    Z = as_points(X).astype(np.float64)
    rows = []
    for level in range(levels + 1):
        if len(Z) < k + 2:
            break
        G = nnk_graph(Z, k, kernel=kernel, duplicates="keep", n_jobs=n_jobs, progress=False)
        norm = kernel == "cosine"
        ids, _, diam = local_geometry(Z, G.candidates, G.theta, energy=energy, normalize=norm, n_jobs=n_jobs)
        rows.append({"level": level, "n_points": len(Z), "mean_nnk_degree": float(G.n_neighbors.mean()),
                     "mean_diameter": float(diam.mean()),
                     "median_local_id": float(np.median(ids)), "mean_error": float(G.errors.mean())})
        Z = merge_neighbourhoods(Z, G.candidates, G.theta, G.errors)
    return pd.DataFrame(rows)
