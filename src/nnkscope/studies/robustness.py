"""Robustness of NNK geometry to input and weight perturbations, and an adversarial-input detector.

For one layer: a *reference* set (training points, their features under the model) and *evaluation* points, clean
and perturbed.  Each evaluation point's NNK neighbours are taken among the reference points (cosine kernel), so the
neighbour sets of its clean and perturbed versions are sets of the same reference rows and compare by Jaccard
overlap.  Under weight perturbations the reference features come from the perturbed model too.

All-zero feature rows (every ReLU of a layer dead, common under strong weight noise) have no cosine direction
(research notes §17.7): they are left out, counted in ``dead_rows``, and count as disagreeing / misclassified.
"""

from __future__ import annotations

import numpy as np

__all__ = ["support_jaccard", "layer_robustness", "detector_scores"]


def support_jaccard(cand_a: np.ndarray, theta_a: np.ndarray, cand_b: np.ndarray, theta_b: np.ndarray) -> np.ndarray:
    """Per row, the Jaccard overlap of the NNK neighbour sets (candidates with positive weight) of two
    interpolations over the same reference rows (1 when both sets are empty).

    Examples
    --------
    >>> support_jaccard(np.array([[1, 2, 3]]), np.array([[0.5, 0.5, 0.0]]), np.array([[2, 3, 4]]),
    ...                 np.array([[1.0, 1.0, 0.0]])).tolist()
    [0.3333333333333333]
    """
    out = np.empty(len(cand_a))
    for i in range(len(cand_a)):
        a = set(cand_a[i][theta_a[i] > 0].tolist())
        b = set(cand_b[i][theta_b[i] > 0].tolist())
        union = len(a | b)
        out[i] = len(a & b) / union if union else 1.0
    return out


def _live(F: np.ndarray) -> np.ndarray:
    return np.linalg.norm(F, axis=1) > 0


def _nnk(ref: np.ndarray, Q: np.ndarray, k: int):
    from ..measures.explain import query_diameters
    from ..measures.interpolation import nnk_interpolate

    rl, ql = _live(ref), _live(Q)
    rows = np.flatnonzero(rl)
    n, kk = len(Q), min(k, len(rows))
    cand = np.full((n, kk), -1, np.int64)
    theta = np.zeros((n, kk))
    err = np.ones(n)
    diam = np.full(n, np.nan)
    kth = np.full(n, 2.0)  # a dead row is as far as a cosine distance goes
    if ql.any():
        I = nnk_interpolate(ref[rl], Q[ql], kk, kernel="cosine", progress=False)
        cand[ql], theta[ql], err[ql], kth[ql] = rows[I.candidates], I.theta, I.errors, I.distances[:, -1]
        sup = I.theta > 0
        sup[~sup.any(1), 0] = True
        diam[ql] = query_diameters(ref[rl], Q[ql], I.candidates, sup, normalize=True)
    return cand, theta, err, diam, ql, kth


def layer_robustness(ref0: np.ndarray, ref1: np.ndarray, ref_y: np.ndarray, F0: np.ndarray, F1: np.ndarray,
                     y: np.ndarray, k: int = 25, *, loo_k: int | None = None) -> dict:
    """NNK geometry of perturbed evaluation points ``F1`` against their clean versions ``F0``.

    ``ref0``/``ref1``: the reference features for the clean/perturbed points (the same array for input
    perturbations).  Returns ``overlap`` (mean Jaccard of clean vs perturbed NNK neighbour sets; 1 at zero
    perturbation), ``diameter`` and ``nnk_degree`` (means over the perturbed points, polytope diameters on unit
    rows), their changes from the clean points, ``nnk_error`` (NNK classification of the perturbed points from the
    reference labels), ``loo_error`` (NNK leave-one-out error among the perturbed points themselves, with ``y``),
    ``interpolation_error`` and ``dead_rows``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> R = np.abs(rng.normal(size=(60, 4))); F = np.abs(rng.normal(size=(20, 4)))
    >>> r = layer_robustness(R, R, np.arange(60) % 2, F, F, np.arange(20) % 2, k=5)
    >>> r["overlap"], r["diameter_change"]
    (1.0, 0.0)
    """
    from ..measures.interpolation import leave_one_out

    c0, t0, _, d0, l0, _ = _nnk(ref0, F0, k)
    c1, t1, e1, d1, l1, _ = _nnk(ref1, F1, k)
    both = l0 & l1
    overlap = np.zeros(len(F0))
    overlap[both] = support_jaccard(c0[both], t0[both], c1[both], t1[both])
    y = np.asarray(y)
    ref_y = np.asarray(ref_y)
    wrong = np.ones(len(F1), bool)
    if l1.any():
        from ..measures.interpolation import vote

        classes, codes = np.unique(np.r_[ref_y, y], return_inverse=True)
        ref_codes, y_codes = codes[: len(ref_y)], codes[len(ref_y):]
        proba, _ = vote(t1[l1], ref_codes[c1[l1]], len(classes))
        wrong[l1] = proba.argmax(1) != y_codes[l1]
    loo_k = k if loo_k is None else loo_k
    loo = 1.0
    if l1.sum() > loo_k + 1:
        r = leave_one_out(F1[l1], y[l1], min(loo_k, int(l1.sum()) - 2), kernel="cosine", check_class_sizes=False,
                          progress=False)
        loo = float((r.hard_error("nnk").sum() + (~l1).sum()) / len(F1))
    deg0, deg1 = (t0 > 0).sum(1), (t1 > 0).sum(1)
    return {"overlap": float(overlap.mean()), "diameter": float(np.nanmean(d1)) if l1.any() else np.nan,
            "diameter_change": float(np.nanmean(d1[both] - d0[both])) if both.any() else np.nan,
            "nnk_degree": float(deg1[l1].mean()) if l1.any() else 0.0,
            "degree_change": float((deg1[both] - deg0[both]).mean()) if both.any() else np.nan,
            "nnk_error": float(wrong.mean()), "loo_error": loo,
            "interpolation_error": float(e1.mean()), "dead_rows": int((~l1).sum() + (~_live(ref1)).sum())}


def detector_scores(ref: np.ndarray, ref_y: np.ndarray, F: np.ndarray, predicted: np.ndarray,
                    k: int = 25) -> dict[str, np.ndarray]:
    """Adversarial-input scores of points with features ``F`` whose model predictions are ``predicted``
    (higher = more suspicious): ``disagreement`` = 1 - (NNK-interpolated probability of the predicted class from
    the reference points), ``interpolation_error`` = e, ``score`` = their mean; baselines ``knn_disagreement``
    (the same with a uniform vote of the k candidates) and ``knn_distance`` (cosine distance to the k-th nearest
    reference point).  Dead rows score 1 (2 for the distance).

    Examples
    --------
    >>> R = np.r_[np.tile([1.0, 0.1], (10, 1)), np.tile([0.1, 1.0], (10, 1))] + 0.01 * np.arange(20)[:, None]
    >>> s = detector_scores(R, np.repeat([0, 1], 10), np.array([[1.0, 0.1], [1.0, 0.1]]), np.array([0, 1]), k=3)
    >>> s["disagreement"].round(6).tolist()
    [0.0, 1.0]
    """
    from ..measures.interpolation import vote

    cand, theta, err, _, live, kth = _nnk(ref, F, k)
    predicted = np.asarray(predicted)
    ref_y = np.asarray(ref_y)
    out = {name: np.ones(len(F)) for name in ("disagreement", "interpolation_error", "knn_disagreement")}
    if live.any():
        C = int(max(ref_y.max(), predicted.max())) + 1
        rows = np.arange(int(live.sum()))
        p, _ = vote(theta[live], ref_y[cand[live]], C)
        pu, _ = vote(np.ones_like(theta[live]), ref_y[cand[live]], C)
        out["disagreement"][live] = 1 - p[rows, predicted[live]]
        out["knn_disagreement"][live] = 1 - pu[rows, predicted[live]]
        out["interpolation_error"][live] = err[live]
    out["score"] = 0.5 * (out["disagreement"] + out["interpolation_error"])
    out["knn_distance"] = kth
    return out
