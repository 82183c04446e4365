"""Transfer probes and cross-model correlations for the SSL case study (research notes §9 R8b, §10 R9).

* :func:`few_shot_scores`: n labels per class drawn (seeded) from the training set, accuracy on the test set of
  the NNK classifier and of a logistic-regression probe, averaged over episodes;
* :func:`ridge_r2` and :func:`kernel_ridge_r2`: R^2 of a ridge probe, linear or with a Gaussian kernel;
* :func:`transformation_r2`: "predict the applied transformation": a (kernel) ridge probe reads the features of a
  sample and of its transformed copy and predicts the drawn parameters (shift, angle, zoom, ...);
* :func:`spearman_ci`: Spearman's rho with a seeded percentile-bootstrap interval over the models, and
  :func:`spearman_permutation_p` its permutation p-value (exact up to 8 models);
* :func:`correlate` and :func:`best_predictors`: every (head, MGM) against every transfer task, and per task the
  MGM with the largest |rho|.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputShapeError, InvalidParameterError, TooFewPointsError

__all__ = ["few_shot_scores", "ridge_r2", "kernel_ridge_r2", "transformation_r2", "PROBES", "spearman_ci",
           "spearman_permutation_p",
           "correlate", "best_predictors", "MIN_MODELS"]

MIN_MODELS = 4  # below this a rank correlation over models has no usable bootstrap interval


def _unit(F: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(F, axis=1, keepdims=True)
    return F / np.where(n == 0, 1.0, n)


def few_shot_scores(F_train, y_train, F_test, y_test, shots: Sequence[int], *, episodes: int = 5, k: int = 25,
                    seed: int = 0) -> list[dict]:
    """Few-shot accuracy of frozen features: ``{"task": "nnk" | "linear", "shots", "score", "score_std"}`` rows.

    Each episode draws ``shots`` training samples per class (seed ``seed + episode``); the NNK classifier (cosine
    kernel, ``min(k, support size)`` candidates) and a multinomial logistic regression on unit-norm features are fit
    on them and scored on all of ``F_test``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centres = np.eye(3) * 5
    >>> y = np.repeat([0, 1, 2], 20); F = centres[y] + rng.normal(size=(60, 3))
    >>> rows = few_shot_scores(F, y, F, y, [1, 5], episodes=2)
    >>> [(r["task"], r["shots"], r["score"] > 0.9) for r in rows]
    [('nnk', 1, True), ('linear', 1, True), ('nnk', 5, True), ('linear', 5, True)]
    """
    from sklearn.linear_model import LogisticRegression

    from ..measures.interpolation import NNKClassifier
    from ..nn.datasets import per_class_subset

    F_train, F_test = np.asarray(F_train, np.float64), np.asarray(F_test, np.float64)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    smallest = int(np.bincount(y_train).min()) if len(y_train) else 0
    if max(shots) > smallest:
        raise TooFewPointsError(f"{max(shots)}-shot episodes need {max(shots)} training samples of every class; the "
                                f"smallest class has {smallest}. Lower the shots or use more training data")
    rows = []
    for n_shots in shots:
        scores = {"nnk": [], "linear": []}
        for e in range(episodes):
            idx = per_class_subset(y_train, int(n_shots), seed=seed + e)
            Fs, ys = F_train[idx], y_train[idx]
            nnk = NNKClassifier(k=min(k, len(idx)), kernel="cosine").fit(Fs, ys)
            scores["nnk"].append(nnk.score(F_test, y_test))
            probe = LogisticRegression(C=1.0, max_iter=2000).fit(_unit(Fs), ys)
            scores["linear"].append(float(probe.score(_unit(F_test), y_test)))
        for task, s in scores.items():
            rows.append({"task": task, "shots": int(n_shots), "score": float(np.mean(s)),
                         "score_std": float(np.std(s))})
    return rows


def ridge_r2(A_fit, Y_fit, A_eval, Y_eval, alpha: float = 1.0) -> float:
    """R^2 on the evaluation rows of a ridge regression ``Y ~ A`` fit on the fitting rows (with intercept; targets
    standardised on the fit rows; outputs that do not vary are skipped), averaged over the outputs.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(200, 3)); Y = A @ [1.0, -2.0, 0.5]
    >>> round(ridge_r2(A[:100], Y[:100], A[100:], Y[100:], alpha=1e-6), 6)
    1.0
    """
    A_fit, A_eval = np.asarray(A_fit, np.float64), np.asarray(A_eval, np.float64)
    Y_fit = np.asarray(Y_fit, np.float64).reshape(len(A_fit), -1)
    Y_eval = np.asarray(Y_eval, np.float64).reshape(len(A_eval), -1)
    mu_a, mu_y, sd_y = A_fit.mean(0), Y_fit.mean(0), Y_fit.std(0)
    keep = (sd_y > 0) & (Y_eval.std(0) > 0)
    if not keep.any():
        raise InvalidParameterError("the regression targets do not vary; use a strength above 0")
    Af = A_fit - mu_a
    Yf = (Y_fit[:, keep] - mu_y[keep]) / sd_y[keep]
    W = np.linalg.solve(Af.T @ Af + alpha * np.eye(A_fit.shape[1]), Af.T @ Yf)
    pred = (A_eval - mu_a) @ W * sd_y[keep] + mu_y[keep]
    Ye = Y_eval[:, keep]
    r2 = 1 - ((Ye - pred) ** 2).sum(0) / ((Ye - Ye.mean(0)) ** 2).sum(0)
    return float(r2.mean())


def kernel_ridge_r2(A_fit, Y_fit, A_eval, Y_eval, alpha: float = 0.1, gamma: float = 1.0) -> float:
    """R^2 on the evaluation rows of kernel ridge regression with the Gaussian (RBF) kernel ``exp(-gamma |a - b|^2)``
    (targets standardised on the fit rows, their mean as intercept; constant outputs skipped), averaged over the
    outputs.  Builds the (n_fit, n_fit) kernel matrix: keep n_fit to a few thousand.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A = rng.uniform(-1, 1, size=(400, 1)); Y = np.sin(3 * A[:, 0])   # not linear in A
    >>> kernel_ridge_r2(A[:300], Y[:300], A[300:], Y[300:], alpha=1e-3, gamma=2.0) > 0.99
    True
    """
    from scipy.linalg import solve

    A_fit, A_eval = np.asarray(A_fit, np.float64), np.asarray(A_eval, np.float64)
    Y_fit = np.asarray(Y_fit, np.float64).reshape(len(A_fit), -1)
    Y_eval = np.asarray(Y_eval, np.float64).reshape(len(A_eval), -1)
    mu_y, sd_y = Y_fit.mean(0), Y_fit.std(0)
    keep = (sd_y > 0) & (Y_eval.std(0) > 0)
    if not keep.any():
        raise InvalidParameterError("the regression targets do not vary; use a strength above 0")

    def gram(P, Q):
        d2 = (P**2).sum(1)[:, None] + (Q**2).sum(1)[None, :] - 2 * P @ Q.T
        return np.exp(-gamma * np.clip(d2, 0, None))

    Yf = (Y_fit[:, keep] - mu_y[keep]) / sd_y[keep]
    W = solve(gram(A_fit, A_fit) + alpha * np.eye(len(A_fit)), Yf, assume_a="pos")
    pred = gram(A_eval, A_fit) @ W * sd_y[keep] + mu_y[keep]
    Ye = Y_eval[:, keep]
    return float((1 - ((Ye - pred) ** 2).sum(0) / ((Ye - Ye.mean(0)) ** 2).sum(0)).mean())


PROBES = ("rbf", "linear")


def transformation_r2(features: Callable, X_fit, X_eval, augmentation, *, probe: str = "rbf", alpha: float = 0.1,
                      gamma: float = 1.0, seed: int = 0) -> dict:
    """Per head, R^2 of predicting an augmentation's drawn parameters from ``[f(x), f(t(x))]`` (each half unit-norm).

    ``features(rows) -> {head: (n, d) array}``; ``augmentation`` an :class:`~nnkscope.nn.augment.Augmentation`
    (its ``transform`` returns the parameters).  Both halves are needed: the parameter of a transformation is
    relative to the sample it was applied to.  An invariant representation has ``f(t(x)) = f(x)`` and scores ~0.
    ``probe``: ``"rbf"`` (kernel ridge, Gaussian kernel, default) or ``"linear"`` (ridge).  A linear read-out cannot
    tell a shift even from the raw signals (R^2 ~ 0 on MNIST-1D), so it would rank models by noise.
    """
    from ..nn.models import require_torch

    if probe not in PROBES:
        raise InvalidParameterError(f"probe must be one of {list(PROBES)}; got {probe!r}")
    torch = require_torch()
    out = {}
    parts = {}
    for name, X, s in (("fit", X_fit, seed), ("eval", X_eval, seed + 1)):
        Xt = torch.as_tensor(np.asarray(X, np.float32))
        moved, params = augmentation.transform(Xt, torch.Generator().manual_seed(s))
        parts[name] = (features(Xt), features(moved), params.numpy())
    for head in parts["fit"][0]:
        A = {name: np.hstack([_unit(p[0][head]), _unit(p[1][head])]) for name, p in parts.items()}
        if probe == "rbf":
            out[head] = kernel_ridge_r2(A["fit"], parts["fit"][2], A["eval"], parts["eval"][2], alpha, gamma)
        else:
            out[head] = ridge_r2(A["fit"], parts["fit"][2], A["eval"], parts["eval"][2], alpha=alpha)
    return out


def _rank_rows(M: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(M, axis=-1)


def spearman_ci(x, y, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho of paired values (one pair per model) and a percentile-bootstrap interval over the pairs.

    Resamples in which either variable is constant (no ranking possible) are left out.  Returns ``(rho, low,
    high)``; rho is NaN when either variable is constant.

    Examples
    --------
    >>> rho, lo, hi = spearman_ci([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 13])
    >>> rho, lo, hi
    (1.0, 1.0, 1.0)
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputShapeError(f"x and y must be 1-D and paired; got shapes {x.shape} and {y.shape}")
    m = len(x)
    if m < MIN_MODELS:
        raise TooFewPointsError(f"a correlation over models needs at least {MIN_MODELS} models; got {m}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidParameterError("x and y must be finite (a model without this measurement?)")

    def rho_rows(a, b):
        ra, rb = _rank_rows(a), _rank_rows(b)
        ra = ra - ra.mean(-1, keepdims=True)
        rb = rb - rb.mean(-1, keepdims=True)
        den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)

    rho = float(rho_rows(x[None], y[None])[0])
    idx = np.random.default_rng(seed).integers(m, size=(n_boot, m))
    boot = rho_rows(x[idx], y[idx])
    boot = boot[np.isfinite(boot)]
    if len(boot) == 0:
        return rho, float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return rho, float(lo), float(hi)


def spearman_permutation_p(x, y, *, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's rho: exact (every ordering of ``y``) up to 8 pairs, else
    ``n_perm`` seeded random orderings, counted as ``(b + 1) / (n_perm + 1)``.

    With few models the smallest attainable p is large (4 models: 2/24 = 0.083), which the bootstrap interval
    does not show: a perfectly monotone set of 4 points has every bootstrap rho at +-1.

    Examples
    --------
    >>> round(spearman_permutation_p([1, 2, 3, 4], [1, 2, 3, 4]), 4)
    0.0833
    """
    from itertools import permutations

    from scipy.stats import rankdata

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    den = np.sqrt((rx**2).sum() * (ry**2).sum())
    if den == 0:
        return float("nan")
    observed = abs(rx @ ry) / den
    if len(x) <= 8:
        P = np.array(list(permutations(ry)))
        return float(np.mean(np.abs(P @ rx) / den >= observed - 1e-12))
    P = np.random.default_rng(seed).permuted(np.tile(ry, (n_perm, 1)), axis=1)
    return float((np.sum(np.abs(P @ rx) / den >= observed - 1e-12) + 1) / (n_perm + 1))


def correlate(mgms, transfer, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0):
    """Every MGM against every transfer task, across models.

    ``mgms``: rows ``model, head, augmentation, mgm, value`` (one value per model for each (head, augmentation,
    mgm)); ``transfer``: rows ``model, task, shots, score``.  Returns one row per (head, augmentation, mgm, task,
    shots) with ``spearman, ci_low, ci_high, n_models`` and a permutation ``p_value``.
    """
    import pandas as pd

    scores = transfer.pivot_table(index="model", columns=["task", "shots"], values="score")
    rows = []
    for (head, aug, mgm), sub in mgms.groupby(["head", "augmentation", "mgm"], sort=False):
        values = sub.set_index("model")["value"]
        for (task, shots) in scores.columns:
            both = pd.concat([values, scores[(task, shots)]], axis=1, join="inner").dropna()
            a, b = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
            rho, lo, hi = spearman_ci(a, b, n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append({"head": head, "augmentation": aug, "mgm": mgm, "task": task, "shots": int(shots),
                         "spearman": rho, "ci_low": lo, "ci_high": hi, "n_models": len(both),
                         "p_value": spearman_permutation_p(a, b, seed=seed)})
    return pd.DataFrame(rows)


def best_predictors(corr):
    """Per (task, shots), the (head, augmentation, mgm) whose rho has the largest magnitude, and whether its
    interval excludes 0.

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"head": ["encoder"] * 2, "augmentation": ["shift", "noise"], "mgm": ["diameter"] * 2,
    ...                   "task": ["nnk"] * 2, "shots": [5, 5], "spearman": [0.2, -0.9], "ci_low": [-0.5, -1.0],
    ...                   "ci_high": [0.8, -0.6], "n_models": [8, 8]})
    >>> best_predictors(c)[["augmentation", "spearman", "ci_excludes_zero"]].to_dict("records")
    [{'augmentation': 'noise', 'spearman': -0.9, 'ci_excludes_zero': True}]
    """
    c = corr.dropna(subset=["spearman"]).copy()
    c["abs_rho"] = c["spearman"].abs()
    best = c.sort_values(["task", "shots", "abs_rho"], ascending=[True, True, False], kind="mergesort")
    best = best.groupby(["task", "shots"], sort=False).head(1).drop(columns="abs_rho").reset_index(drop=True)
    best["ci_excludes_zero"] = (best.ci_low > 0) | (best.ci_high < 0)
    return best
