"""Kernel alignment: linear CKA, debiased CKA (unbiased HSIC) and RBF CKA.

* Linear CKA (Kornblith et al. 2019) is :func:`nnkscope.measures.compare.linear_cka`.
* Debiased CKA replaces the biased HSIC by the unbiased estimator of Song et al. (2012) (Nguyen et al. 2021 call
  the result debiased CKA): the biased version drifts upward for small N or wide layers, the debiased one does not.
  It is computed from feature-space sums (:mod:`.streaming`), never an N x N matrix.
* RBF CKA uses ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` with ``sigma = bandwidth x`` the median Euclidean
  distance between distinct points (pairs ``i < j``) of that representation, ``bandwidth = 0.8`` by default -- the
  largest of the fractions Kornblith et al. report (0.2, 0.4, 0.8), the one closest to linear CKA.  It builds
  N x N kernels, so N is bounded (``max_points``).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_positive, check_positive_int
from ..errors import InvalidParameterError
from ..measures.compare import linear_cka as _linear_cka
from ._registry import _is_path, pair
from .streaming import CKAStream, streaming_cka

__all__ = ["linear_cka", "debiased_cka", "rbf_cka", "compress"]


def compress(X: np.ndarray) -> np.ndarray:
    """``X`` (N, d) with ``d > N``, centred and rotated onto N columns (``Xc V = U S``); narrower ``X`` as is.

    The centred Gram matrix ``Xc Xc'`` and all distances are unchanged, and they are all that the translation-invariant
    linear-kernel measures (CKA, Procrustes) see, so their ``d x d`` sums never exceed ``N x N``.
    """
    if X.shape[1] <= X.shape[0]:
        return X
    U, S, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    return U * S


def linear_cka(A, B) -> float:
    """Linear CKA of two representations of the same points; paths or row sources stream.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(linear_cka(X, 3 * X[:, ::-1] + 1), 12)
    1.0
    """
    if _is_path(A) or _is_path(B):
        return streaming_cka(A, B, debiased=False)
    A, B = pair(A, B)
    return _linear_cka(compress(A), compress(B))


def debiased_cka(A, B, *, block_rows: int = 16384) -> float:
    """Debiased CKA: the unbiased HSIC estimator (Song et al. 2012) of linear kernels, normalised.

    ``HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))``; lies in [-1, 1] (HSIC_1 is an inner product of U-centred
    Gram matrices), 1 for identical geometry, about 0 for independent representations at any N.  Needs N >= 4.
    Paths or row sources stream in blocks of ``block_rows``.

    Examples
    --------
    >>> r = np.random.default_rng(0)
    >>> round(debiased_cka(r.normal(size=(40, 3)), r.normal(size=(40, 300))), 2)   # unrelated: near 0
    -0.02
    """
    check_positive_int(block_rows, "block_rows")
    if _is_path(A) or _is_path(B):
        return streaming_cka(A, B, debiased=True, block_rows=block_rows)
    A, B = pair(A, B, min_rows=4)
    A, B = compress(A), compress(B)
    stream = CKAStream()
    for lo in range(0, len(A), block_rows):
        stream.update(A[lo:lo + block_rows], B[lo:lo + block_rows])
    return stream.debiased_cka()


def _rbf_gram(X: np.ndarray, bandwidth: float) -> np.ndarray:
    from scipy.spatial.distance import pdist, squareform

    d2 = pdist(X, "sqeuclidean")  # differences, not |x|^2 + |y|^2 - 2 x.y: no cancellation for close points
    median = float(np.median(np.sqrt(d2)))  # of distances: with an even pair count, not sqrt(median d^2)
    D2 = squareform(d2)
    if median == 0:
        raise InvalidParameterError("at least half of the pairs of points coincide (median distance 0), so the "
                                    "RBF bandwidth rule fails; drop duplicate rows")
    return np.exp(-D2 / (2.0 * (bandwidth * median) ** 2))


def _centred(K: np.ndarray) -> np.ndarray:
    r = K.mean(0)
    return K - r[None, :] - r[:, None] + r.mean()


def rbf_cka(A, B, *, bandwidth: float = 0.8, max_points: int = 5000) -> float:
    """CKA with Gaussian (RBF) kernels, ``sigma = bandwidth x median pairwise distance`` of each representation.

    Builds N x N kernels: refuses ``N > max_points`` (raise it if memory allows: ~ 3 N^2 float64).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(60, 3))
    >>> round(rbf_cka(X, 5 * X - 2), 12)
    1.0
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    max_points = check_positive_int(max_points, "max_points")
    A, B = pair(A, B, min_rows=3)
    if len(A) > max_points:
        raise InvalidParameterError(f"rbf_cka builds {len(A)} x {len(A)} kernel matrices; N = {len(A)} exceeds "
                                    f"max_points={max_points}. Subsample the points or raise max_points")
    Kc, Lc = _centred(_rbf_gram(A, bandwidth)), _centred(_rbf_gram(B, bandwidth))
    return float(np.sum(Kc * Lc) / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc)))
