"""Canonical correlation measures: SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018).

Both need many more points than dimensions.  For *independent* Gaussian representations with ``d`` dimensions each
and ``N`` points, the squared sample canonical correlations average ``d / N`` (``E tr(P_X P_Y) = d^2 / N``), so
unrelated layers score a mean canonical correlation of roughly ``sqrt(d / N)``, and with ``N <= d`` every canonical
correlation is 1.  We refuse ``N < c d`` with ``c = MIN_RATIO = 10``, where ``d`` is the number of dimensions that
enter CCA (the numerical rank; for SVCCA the kept SVD directions).  Why 10: the chance level ``sqrt(d / N)`` is then
about 0.3 (measured on independent Gaussians, d = 50: mean canonical correlation 0.27 at N = 10 d, 0.39 at 5 d,
0.64 at 2 d), low enough to leave room for the differences one wants to read, while 10 d points stay affordable for
layers of a few hundred directions after PCA.  Still compare values against a shuffled baseline; ``min_ratio``
overrides the threshold.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import InvalidParameterError
from ._registry import pair

__all__ = ["svcca", "pwcca", "canonical_correlations", "MIN_RATIO"]

MIN_RATIO = 10


def _basis(Xc: np.ndarray, name: str):
    """Thin SVD of centred ``Xc`` truncated to its numerical rank: ``(U, S, Vt)``."""
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    r = int(np.count_nonzero(S > S[0] * max(Xc.shape) * np.finfo(float).eps)) if S.size and S[0] > 0 else 0
    if r == 0:
        raise InvalidParameterError(f"{name} is constant: it has no variance to correlate")
    return U[:, :r], S[:r], Vt[:r]


def _check_ratio(n: int, d: int, min_ratio: float, measure: str) -> None:
    if n < min_ratio * d:
        k = max(1, int(n // min_ratio))
        hint = f"svcca(A, B, keep={k})" if measure == "svcca" else f"PCA to {k} components first"
        raise InvalidParameterError(
            f"{measure}: {n} points for {d} dimensions; CCA needs N >= {min_ratio:g} d (with fewer points, canonical "
            f"correlations of unrelated data approach 1). Reduce the dimension by PCA to at most {k}, e.g. {hint}, "
            "or add points")


def _check_min_ratio(min_ratio) -> float:
    if isinstance(min_ratio, bool) or not isinstance(min_ratio, numbers.Real) or not min_ratio >= 1:
        raise InvalidParameterError(f"min_ratio must be a number >= 1 (N >= min_ratio * d); got {min_ratio!r}")
    return float(min_ratio)


def _cca(Ux: np.ndarray, Uy: np.ndarray):
    """Canonical correlations (descending) of two orthonormal bases, and the X-side canonical variates."""
    P, rho, _ = np.linalg.svd(Ux.T @ Uy, full_matrices=False)
    return np.clip(rho, 0.0, 1.0), Ux @ P


def canonical_correlations(A, B, *, min_ratio: float = MIN_RATIO) -> np.ndarray:
    """All ``min(rank A, rank B)`` canonical correlations of two representations, in decreasing order.

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(200, 3))
    >>> canonical_correlations(X, X @ r.normal(size=(3, 3))).round(12).tolist()
    [1.0, 1.0, 1.0]
    """
    min_ratio = _check_min_ratio(min_ratio)
    A, B = pair(A, B)
    Ux, _, _ = _basis(A - A.mean(0), "A")
    Uy, _, _ = _basis(B - B.mean(0), "B")
    _check_ratio(len(A), max(Ux.shape[1], Uy.shape[1]), min_ratio, "CCA")
    return _cca(Ux, Uy)[0]


def _reduce(U: np.ndarray, S: np.ndarray, keep) -> np.ndarray:
    if isinstance(keep, bool):
        raise InvalidParameterError(f"keep must be a variance fraction in (0, 1] or a number of directions; got {keep}")
    if isinstance(keep, numbers.Integral):
        if keep < 1:
            raise InvalidParameterError(f"keep must be >= 1 direction; got {keep}")
        k = min(int(keep), len(S))
    elif isinstance(keep, numbers.Real) and 0 < keep <= 1:
        frac = np.cumsum(S**2) / np.sum(S**2)
        k = int(np.searchsorted(frac, keep * (1 - 1e-12))) + 1  # fewest directions reaching the fraction
    else:
        raise InvalidParameterError(f"keep must be a variance fraction in (0, 1] or a number of directions; got "
                                    f"{keep!r}")
    return U[:, :k]


def svcca(A, B, *, keep=0.99, min_ratio: float = MIN_RATIO) -> float:
    """SVCCA: keep each side's top SVD directions, then the mean canonical correlation between them.

    Parameters
    ----------
    keep : float in (0, 1]: the fewest directions explaining that fraction of the variance (default 0.99, as
        Raghu et al.); int: that many directions.
    min_ratio : refuse fewer than ``min_ratio x`` (kept directions) points (module docstring).

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(300, 4))
    >>> round(svcca(X, X @ r.normal(size=(4, 6)) + 1), 12)
    1.0
    """
    min_ratio = _check_min_ratio(min_ratio)
    A, B = pair(A, B)
    Ux, Sx, _ = _basis(A - A.mean(0), "A")
    Uy, Sy, _ = _basis(B - B.mean(0), "B")
    Ux, Uy = _reduce(Ux, Sx, keep), _reduce(Uy, Sy, keep)
    _check_ratio(len(A), max(Ux.shape[1], Uy.shape[1]), min_ratio, "svcca")
    return float(_cca(Ux, Uy)[0].mean())


def pwcca(A, B, *, min_ratio: float = MIN_RATIO) -> float:
    """PWCCA: canonical correlations weighted by how much of ``A``'s neurons each canonical direction accounts for.

    With unit canonical variates ``h_i`` of ``A`` (N-vectors) and ``A``'s centred neurons ``a_j`` (columns),
    ``alpha_i = sum_j |<h_i, a_j>|`` and ``PWCCA = sum_i alpha_i rho_i / sum_i alpha_i``.  Asymmetric: the weights
    come from ``A`` (swap the arguments for the other view).  Morcos et al.'s code projects the *uncentred*
    activations; centring here keeps the measure translation invariant.

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(300, 4))
    >>> round(pwcca(X, X @ r.normal(size=(4, 4))), 12)
    1.0
    """
    min_ratio = _check_min_ratio(min_ratio)
    A, B = pair(A, B)
    Ac = A - A.mean(0)
    Ux, _, _ = _basis(Ac, "A")
    Uy, _, _ = _basis(B - B.mean(0), "B")
    _check_ratio(len(A), max(Ux.shape[1], Uy.shape[1]), min_ratio, "pwcca")
    rho, H = _cca(Ux, Uy)
    alpha = np.abs(H.T @ Ac).sum(1)
    return float(alpha @ rho / alpha.sum())
