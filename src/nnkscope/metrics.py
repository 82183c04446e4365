"""All per-point NNK metrics of an embedding in one call, as a pandas DataFrame plus a dataset summary."""

from __future__ import annotations

import numpy as np

from ._validate import as_points
from .graph import nnk_graph
from .interpolation import WEIGHTINGS, _check_class_sizes, _encode_labels, vote
from .kernels import Kernel
from .labels import class_homogeneity, cross_class_fraction, dirichlet_energy
from .manifold import curvature, local_dimension, polytope_diameter

__all__ = ["point_metrics", "multiscale_metrics", "merge_neighbourhoods", "loo_columns", "column_means"]

MEAN_COLUMNS = ("nnk_degree", "interpolation_error", "diameter", "local_id", "curvature")


def _labels_for(y, n: int, k: int, check_class_sizes: bool):
    classes, codes = _encode_labels(y, n)
    if check_class_sizes:
        _check_class_sizes(codes, classes, k)
    return classes, codes


def point_metrics(X, y=None, k: int = 30, *, kernel: str = "cosine", sigma: float | None = None,
                  energy: float = 0.9, curvature_dim: int | None = None, normalize: bool | None = None,
                  duplicates: str = "keep", rule: str = "max", check_class_sizes: bool = True,
                  n_jobs: int | None = None, progress: bool | None = None):
    """Per-point NNK manifold (and, with labels, label-geometry and leave-one-out) metrics.

    Parameters
    ----------
    X : (N, d) embedding. y : optional (N,) labels.
    k, kernel, sigma, duplicates : as in :func:`~nnkscope.nnk_graph` (every point's candidates exclude itself, so
        the graph's weights are exactly the leave-one-out NNK interpolation of each point).
    energy : PCA energy threshold of the local dimension. curvature_dim : tangent dimension for the curvature
        proxy (default: the median local dimension, at least 1). normalize : measure diameters and tangents on
        unit-norm rows (default: True for the cosine kernel). rule : adjacency rule for label smoothness.

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
    import pandas as pd

    X = as_points(X)
    labels = None
    if y is not None:
        labels = _labels_for(y, len(X), k, check_class_sizes)
    G = nnk_graph(X, k, kernel=kernel, sigma=sigma, duplicates=duplicates, symmetrize=rule, n_jobs=n_jobs,
                  progress=progress)
    norm = (kernel == "cosine") if normalize is None else normalize
    ids, ratio = local_dimension(X, G.candidates, G.theta, energy=energy, normalize=norm, n_jobs=n_jobs)
    dim = curvature_dim if curvature_dim is not None else max(1, int(np.median(ids)))
    dim = min(dim, k, X.shape[1])
    df = pd.DataFrame({
        "node": np.arange(len(X)),
        "nnk_degree": G.n_neighbors,
        "interpolation_error": G.errors,
        "diameter": polytope_diameter(X, G.candidates, G.theta, normalize=norm, n_jobs=n_jobs),
        "local_id": ids,
        "first_pc_ratio": ratio,
        "curvature": curvature(X, G.candidates, G.theta, dim=dim, normalize=norm, n_jobs=n_jobs),
        "solver_status": G.status,
    })
    summary = {"n": len(X), "k": k, "kernel": kernel, "sigma": G.params["sigma"], "curvature_dim": dim,
               **column_means(df),
               "median_local_id": float(np.median(ids)), **G.summary(rule)}
    if labels is not None:
        classes, codes = labels
        df["label"] = np.asarray(y)
        df["homogeneity"] = class_homogeneity(G.candidates, G.theta, codes)
        df["homogeneity_unweighted"] = class_homogeneity(G.candidates, G.theta, codes, weighted=False)
        loo, summary["loo_fallback_nodes"] = loo_columns(G.theta, G.distances, Kernel(kernel, G.params["sigma"]),
                                                         codes, codes[G.candidates], len(classes))
        for name, col in loo.items():
            df[name] = col
        df["loo_prediction"] = classes[df.pop("loo_prediction_code").to_numpy()]
        for w in WEIGHTINGS:
            summary[f"loo_error_{w}"] = float(df[f"loo_error_{w}"].mean())
        summary["weighted_unweighted_gap"] = summary["loo_error_nnk_uniform"] - summary["loo_error_nnk"]
        summary["homogeneous_fraction_H"] = float((df["homogeneity"] == 1).mean())
        summary["mean_homogeneity"] = float(df["homogeneity"].mean())
        A = G.adjacency(rule)
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
    """Leave-one-out votes of every weighting of the candidates (see :data:`~nnkscope.interpolation.WEIGHTINGS`).

    Returns the per-point columns (hard error, soft error per weighting, and the NNK prediction as a class code)
    and the number of points whose NNK weights were all zero (they fall back to their nearest candidate).

    Examples
    --------
    >>> cols, fb = loo_columns(np.array([[1.0, 0.0]]), np.array([[0.1, 0.2]]), Kernel("gaussian", 1.0),
    ...                        np.array([0]), np.array([[0, 1]]), 2)
    >>> bool(cols["loo_error_nnk"][0]), bool(cols["loo_error_uniform"][0]), fb
    (False, False, 0)
    """
    if kernel.name == "gaussian":
        g = np.exp(-(distances**2) * kernel.gamma)
    else:
        g = np.clip(1 - distances / 2, 0, 1)
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
        ids, _ = local_dimension(Z, G.candidates, G.theta, energy=energy, normalize=norm, n_jobs=n_jobs)
        rows.append({"level": level, "n_points": len(Z), "mean_nnk_degree": float(G.n_neighbors.mean()),
                     "mean_diameter": float(polytope_diameter(Z, G.candidates, G.theta, normalize=norm).mean()),
                     "median_local_id": float(np.median(ids)), "mean_error": float(G.errors.mean())})
        Z = merge_neighbourhoods(Z, G.candidates, G.theta, G.errors)
    return pd.DataFrame(rows)
