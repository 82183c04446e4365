"""Shape and dissimilarity-structure measures: the Procrustes angular distance and RSA.

* **Procrustes** (Williams et al. 2021, "Generalized shape metrics on neural representations", alpha = 1): centre
  each representation, scale it to unit Frobenius norm, zero-pad to a common width, and take the angle
  ``theta = arccos max_Q tr(X' Y Q) = arccos ||X' Y||_*`` over orthogonal ``Q``; a metric on shapes, in
  ``[0, pi/2]``, 0 when one is a rotation (plus shift and scale) of the other.  It is computed as
  ``2 arcsin(||X - Y Q*|| / 2)`` from the residual of the optimal ``Q*``, which stays accurate near 0 where
  ``arccos`` of a number near 1 would lose half the digits.
* **RSA** (Kriegeskorte et al. 2008): each representation's representational dissimilarity matrix (RDM) is the
  *correlation distance* ``1 - pearson(x_i, x_j)`` between the rows (each input's pattern across features), and the
  two RDMs are compared by the *Spearman* correlation of their upper triangles.  Correlation distance ignores each
  pattern's mean and scale, so the measure is invariant to isotropic scaling only: a common translation or a
  rotation of the features changes the patterns' means and thus the RDM.  Builds N x N matrices (``max_points``).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_positive_int
from ..errors import InvalidParameterError
from ._registry import pair
from .kernel import compress

__all__ = ["procrustes", "rsa", "rdm"]


def procrustes(A, B) -> float:
    """Angular Procrustes distance ``arccos ||A~' B~||_*`` in radians (A~, B~ centred, unit Frobenius norm).

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(50, 3)); Q, _ = np.linalg.qr(r.normal(size=(3, 3)))
    >>> round(procrustes(X, 2 * X @ Q + 1), 12), round(procrustes(X, r.normal(size=(50, 3))), 2)
    (0.0, 1.38)
    """
    A, B = pair(A, B)
    X, Y = compress(A - A.mean(0)), compress(B - B.mean(0))
    X, Y = X / np.linalg.norm(X), Y / np.linalg.norm(Y)
    d = max(X.shape[1], Y.shape[1])
    X = np.pad(X, ((0, 0), (0, d - X.shape[1])))
    Y = np.pad(Y, ((0, 0), (0, d - Y.shape[1])))
    U, _, Vt = np.linalg.svd(X.T @ Y)
    residual = np.linalg.norm(X - Y @ (Vt.T @ U.T))  # ||X - Y Q*||_F^2 = 2 - 2 cos(theta)
    return float(2.0 * np.arcsin(min(1.0, residual / 2.0)))


def rdm(X, name: str = "X") -> np.ndarray:
    """Upper triangle (pairs ``i < j``, row-major) of the correlation-distance RDM ``1 - pearson(x_i, x_j)``."""
    Z = X - X.mean(1, keepdims=True)
    norms = np.linalg.norm(Z, axis=1)
    flat = np.flatnonzero(norms == 0)
    if flat.size:
        raise InvalidParameterError(f"row {int(flat[0])} of {name} is constant across its features ({flat.size} such "
                                    "rows): its correlation distance is undefined. Drop those inputs, or use a "
                                    "representation with more than one varying feature")
    Z /= norms[:, None]
    return 1.0 - (Z @ Z.T)[np.triu_indices(len(Z), 1)]


def rsa(A, B, *, max_points: int = 5000) -> float:
    """Spearman correlation between the correlation-distance RDMs of two representations of the same inputs.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> round(rsa(X, 3 * X), 12)
    1.0
    """
    from scipy.stats import rankdata

    max_points = check_positive_int(max_points, "max_points")
    A, B = pair(A, B, min_rows=3)
    if len(A) > max_points:
        raise InvalidParameterError(f"rsa builds {len(A)} x {len(A)} dissimilarity matrices; N = {len(A)} exceeds "
                                    f"max_points={max_points}. Subsample the inputs or raise max_points")
    ra, rb = rankdata(rdm(A, "A")), rankdata(rdm(B, "B"))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra @ ra) * (rb @ rb))
    if denom == 0:
        raise InvalidParameterError("an RDM is constant (every pair of inputs equally dissimilar), so its rank "
                                    "correlation is undefined")
    return float(ra @ rb / denom)
