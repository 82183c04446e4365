"""Reliability of training labels and of queries from NNK geometry: label-noise and out-of-distribution scores.

* **Label noise** (:func:`label_noise_scores`): every training point is interpolated leave-one-out from the others;
  its score is ``1 - p_y``, one minus the interpolated probability of its *given* label (the DeepNNK soft error).
  A mislabelled point sits among points of its true class, so its given label gets little weight.  The baselines
  use the same candidates with plain kNN (uniform) or weighted kNN (kernel) votes.
* **Out of distribution** (:func:`ood_scores`): a query far from the training distribution is poorly
  reconstructed by its NNK neighbours (large kernel-space interpolation error ``e``, research notes §1.2) and by
  an NNK-Means summary of the training set (error of its NNK code over the atoms).  The score is the mean of the
  two errors; the baseline is the distance to the k-th nearest training point (Sun et al. 2022).
* :func:`auroc`: the area under the ROC curve from ranks (Mann-Whitney U), ties counted one half.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_points, check_labels
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["auroc", "precision_at_n", "flip_labels", "label_noise_scores", "ood_scores"]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # boundaries of runs of equal values in the sorted order
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(scores, positive) -> float:
    """Area under the ROC curve of ``scores`` for telling ``positive`` rows from the others.

    The probability that a random positive outscores a random negative, ties counted one half:
    ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the sum of the positives' average ranks.

    Examples
    --------
    >>> auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    >>> auroc([1.0, 1.0], [True, False])
    0.5
    """
    s = np.asarray(scores, np.float64).ravel()
    p = np.asarray(positive).ravel()
    if p.dtype != bool:
        if not np.isin(p, [0, 1]).all():
            raise InvalidParameterError("positive must be booleans or 0/1 flags")
        p = p.astype(bool)
    if s.shape != p.shape:
        raise InputShapeError(f"scores and positive must have the same length; got {s.shape} and {p.shape}")
    if not np.isfinite(s).all():
        raise InvalidParameterError("scores contain NaN/inf; AUROC needs finite scores")
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        raise InvalidParameterError(f"AUROC needs both positives and negatives; got {n_pos} and {n_neg}")
    r = _average_ranks(s)
    return float((r[p].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_at_n(scores, positive, n: int | None = None) -> float:
    """Share of positives among the ``n`` highest scores (default ``n`` = the number of positives; ties broken by
    row order).

    Examples
    --------
    >>> precision_at_n([0.9, 0.1, 0.8, 0.2], [True, False, False, True])
    0.5
    """
    s = np.asarray(scores, np.float64).ravel()
    p = np.asarray(positive, bool).ravel()
    n = int(p.sum()) if n is None else int(n)
    if n <= 0:
        raise InvalidParameterError("precision_at_n needs n >= 1 (and at least one positive by default)")
    top = np.argsort(-s, kind="stable")[:n]
    return float(p[top].mean())


def flip_labels(y, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inject label noise: a seeded ``fraction`` of the rows gets a different class drawn uniformly from the others.

    Returns ``(noisy labels, flipped mask)``; labels are class codes 0..C-1 of ``y``'s classes mapped back.

    Examples
    --------
    >>> y_noisy, flipped = flip_labels(np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]), 0.3, seed=0)
    >>> int(flipped.sum()), bool((y_noisy[flipped] != np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])[flipped]).all())
    (3, True)
    """
    classes, codes = check_labels(y)
    if not 0 < fraction < 1:
        raise InvalidParameterError(f"fraction must lie in (0, 1); got {fraction!r}")
    rng = np.random.default_rng(seed)
    n_flip = int(round(fraction * len(codes)))
    flipped = np.zeros(len(codes), bool)
    flipped[rng.choice(len(codes), size=n_flip, replace=False)] = True
    C = len(classes)
    # a shift by 1..C-1 (mod C) is a uniform draw among the other classes
    noisy = codes.copy()
    noisy[flipped] = (codes[flipped] + rng.integers(1, C, size=n_flip)) % C
    return classes[noisy], flipped


def label_noise_scores(X, y, k: int = 25, *, kernel: str = "cosine", sigma: float | None = None,
                       n_jobs: int | None = None) -> dict[str, np.ndarray]:
    """Per training point, how much its neighbours disagree with its given label (higher = more suspicious).

    Returns ``{"nnk": 1 - p_y with NNK weights, "knn": 1 - p_y with uniform weights on the k candidates,
    "wknn": the same with kernel weights}``, each (N,), all from one leave-one-out search.

    Examples
    --------
    >>> X = np.r_[np.eye(2)[[0] * 5 + [1] * 5]] + 0.01 * np.arange(10)[:, None]
    >>> y = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1, 1])        # row 2 is mislabelled
    >>> int(np.argmax(label_noise_scores(X, y, k=3)["nnk"]))
    2
    """
    from .interpolation import leave_one_out

    r = leave_one_out(X, y, k, kernel=kernel, sigma=sigma, n_jobs=n_jobs, check_class_sizes=False, progress=False)
    return {"nnk": r.soft_error("nnk"), "knn": r.soft_error("uniform"), "wknn": r.soft_error("kernel")}


def ood_scores(X_train, X_query, k: int = 25, *, kernel: str = "cosine", n_atoms: int = 50, n_nonzero: int = 10,
               n_iter: int = 5, seed: int = 0, n_jobs: int | None = None) -> dict[str, np.ndarray]:
    """Out-of-distribution scores of queries against a training set (higher = further from the training data).

    Returns ``{"score": mean of the two NNK errors, "interpolation_error": e of the NNK interpolation from the k
    nearest training points, "nnk_means_error": e of the NNK code over an NNK-Means dictionary of ``n_atoms``
    atoms fitted to the training set, "knn_distance": distance (Euclidean, or 1 - cos for the cosine kernel) to
    the k-th nearest training point}``, each (n,).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Xtr = np.abs(rng.normal(size=(200, 5))) + np.r_[1.0, 0, 0, 0, 0]
    >>> Q = np.r_[Xtr[:3] + 0.01, -np.abs(rng.normal(size=(3, 5)))]
    >>> s = ood_scores(Xtr, Q, k=10, n_atoms=20)["score"]
    >>> bool(s[3:].min() > s[:3].max())
    True
    """
    from .interpolation import nnk_interpolate
    from .nnk_means import NNKMeans

    X = as_points(X_train, "X_train")
    Q = as_points(X_query, "X_query")
    if Q.shape[1] != X.shape[1]:
        raise InputShapeError(f"X_query has {Q.shape[1]} features but X_train has {X.shape[1]}; score queries "
                              "embedded by the same model and layer")
    I = nnk_interpolate(X, Q, k, kernel=kernel, n_jobs=n_jobs, progress=False)
    M = NNKMeans(n_components=min(n_atoms, len(X)), n_nonzero=n_nonzero, n_iter=n_iter, kernel=kernel, seed=seed,
                 n_jobs=n_jobs).fit(X)
    J = nnk_interpolate(M.atoms_, Q, min(n_nonzero, len(M.atoms_)), kernel=kernel, n_jobs=n_jobs, progress=False)
    return {"score": 0.5 * (I.errors + J.errors), "interpolation_error": I.errors, "nnk_means_error": J.errors,
            "knn_distance": I.distances[:, -1].copy()}
