"""Bigger vs smaller interpolating models (research notes §11, R10).

Models of increasing width trained to 100% training accuracy; on their training features (last hidden layer),
leave-one-out NNK: local class homogeneity ``h_i`` and the share ``H`` of fully homogeneous nodes, weighted (NNK)
and unweighted (uniform over the NNK support) LOO errors and their gap.  The claim: H grows with width, and the
weighted/unweighted gap shrinks (large models classify even with unweighted neighbourhood votes).
"""

from __future__ import annotations

import numpy as np

from ..measures.interpolation import leave_one_out
from ..measures.labels import class_homogeneity

__all__ = ["interpolation_geometry"]


def interpolation_geometry(F: np.ndarray, y: np.ndarray, k: int = 25) -> dict:
    """H, mean h, weighted and unweighted LOO errors and their gap for training features ``F``.

    Examples
    --------
    >>> F = np.r_[np.eye(2)[[0] * 6 + [1] * 6] + 0.01 * np.arange(12)[:, None]]
    >>> r = interpolation_geometry(F, np.array([0] * 6 + [1] * 6), k=3)
    >>> r["homogeneous_fraction_H"], r["loo_error_weighted"]
    (1.0, 0.0)
    """
    F = np.asarray(F, np.float64)
    y = np.asarray(y)
    # an all-zero row (every ReLU of a narrow layer dead) has no cosine direction: it is left out of the graph and
    # counted as an error and as a non-homogeneous node
    live = np.linalg.norm(F, axis=1) > 0
    n, dead = len(F), int((~live).sum())
    r = leave_one_out(F[live], y[live], k=k, kernel="cosine", check_class_sizes=False, progress=False)
    I = r.interpolation
    h = class_homogeneity(I.candidates, I.theta, r.labels)
    weighted = (r.hard_error("nnk").sum() + dead) / n
    unweighted = (r.hard_error("nnk_uniform").sum() + dead) / n
    return {"homogeneous_fraction_H": float((h == 1).sum() / n), "mean_homogeneity": float(h.sum() / n),
            "loo_error_weighted": float(weighted), "loo_error_unweighted": float(unweighted),
            "gap": float(unweighted - weighted), "mean_nnk_degree": float(I.n_neighbors.mean()), "dead_rows": dead}
