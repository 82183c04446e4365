"""Class geometry of features: neural collapse (NC1-NC5, GNC2, CDNV) and the law of data separation.

Independent of NNK; numpy only.  Definitions follow the research notes (papers.md sections 1.5, 13, 14, 17.1):

* within-class scatter ``Sigma_W = (1/n) sum_k S_k`` (``S_k`` = class k's scatter about its mean), and its
  class-balanced form ``(1/K) sum_k S_k / n_k``;
* between-class scatter, NC convention ``Sigma_B = (1/K) sum_k (mu_k - mu_bar)(mu_k - mu_bar)'`` about the mean of the
  class means ``mu_bar`` (rank <= K - 1 for any class sizes), and the He & Su convention
  ``SS_b = (1/n) sum_k n_k (mu_k - mu_G)(mu_k - mu_G)'`` about the sample mean ``mu_G``; identical for balanced data;
* ``NC1 = tr(Sigma_W Sigma_B^+) / K`` and separation fuzziness ``D = tr(SS_w SS_b^+)``, where ``+`` is the
  pseudo-inverse truncated to the top ``K - 1`` eigenvalues (and only those above 1e-8 of the largest) -- the
  default cutoff would invert rounding noise in the other ``d - K + 1`` directions (NC1 ~ 1e8 on real features).

Memory is bounded by ``d^2`` per pass, whatever K: :class:`ClassScatter` streams batches (float64 accumulators,
Chan's pairwise update so tiny within-class scatter is not lost against large means) into the class counts, means and
scatter traces (``K d`` numbers) and *one* pooled ``d x d`` within-class scatter -- K = 1,000 classes at d = 4,096
take 0.16 GB.  ``Sigma_B^+`` is never formed: its rank <= K - 1 eigenpairs come from the ``K x K`` Gram matrix of the
centred means.  The class-balanced ``Sigma_W`` weighs each class by ``1/n_k``, known only once every row was seen, so
it takes a second pass (:meth:`ClassScatter.update_balanced`; :func:`scatter_in_blocks` runs both).  Small problems
(``K d^2`` at most 256 MiB) also keep the K per-class matrices, which serve the balanced form in one pass; the two
routes agree to rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numba as nb
import numpy as np
import scipy.sparse as sp

from .._validate import as_points, check_finite, check_labels, check_positive_int
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["ClassScatter", "scatter_in_blocks", "neural_collapse", "separation_fuzziness", "equi_separation_fit",
           "layerwise_separation", "ncc_mismatch", "held_out_nc4", "ood_orthogonality", "hyperspherical_uniformity",
           "EquiSeparationFit", "weighted_nc1_fuzziness"]

_MAX_SCATTER_BYTES = 4 * 2**30  # refuse per-class matrices (explicit per_class=True) or one d x d above this
_PER_CLASS_AUTO_BYTES = 256 * 2**20  # per_class=None keeps the K matrices up to this size
_CHUNK_BYTES = 64 * 2**20  # float64 rows processed at once inside update(): bounds the temporaries, not the result


def _check_labels(y, n: int, n_classes: int) -> np.ndarray:
    """Integer class codes ``0 .. n_classes-1`` (what the streaming accumulators take)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise InputShapeError(f"labels must be 1-D with one entry per feature row ({n}); got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise InvalidParameterError("labels contain NaN/inf; drop those rows or give them a class")
        if not np.array_equal(y, np.round(y)):
            raise InvalidParameterError("labels must be integer class indices; got non-integer floats")
    elif y.dtype.kind not in "iub":
        raise InvalidParameterError(f"labels must be integer class indices 0..K-1; got dtype {y.dtype}. "
                                    "Map them first, e.g. nnkscope._validate.check_labels(labels)[1]")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise InvalidParameterError(f"labels must lie in [0, {n_classes}); got range [{y.min()}, {y.max()}]")
    return y


def _label_codes(y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, codes)`` of labels of any hashable type (via ``check_labels``).

    Floats must hold whole numbers: fractional values are continuous targets passed by mistake, not classes.
    """
    arr = y.to_numpy() if hasattr(y, "to_numpy") else y
    arr = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
    if arr.ndim != 1 or len(arr) != n:
        raise InputShapeError(f"labels must be 1-D with one entry per feature row ({n}); got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and not np.array_equal(arr, np.round(arr)):
        raise InvalidParameterError("labels must be integer class indices or other discrete labels (strings, ...); "
                                    "got non-integer floats, which look like continuous targets")
    classes, codes = check_labels(arr, n, name="labels", min_classes=1)
    if len(classes) < 2:
        raise InvalidParameterError(f"labels hold a single class ({classes[0]!r}); class geometry needs at least two")
    return classes, codes


def _rows_per_chunk(d: int) -> int:
    return max(1, _CHUNK_BYTES // (8 * d))


class ClassScatter:
    """Streaming class counts, means and within-class scatter of features, in ``K d + d^2`` numbers.

    Parameters
    ----------
    n_classes : number of classes K.  :meth:`update` takes integer class codes ``0 .. K-1``: map other labels first,
        e.g. ``classes, codes = nnkscope._validate.check_labels(y)``, and pass ``classes=classes`` to keep their names
        (the array entry points -- :func:`neural_collapse`, :func:`separation_fuzziness`, :func:`scatter_in_blocks`
        without ``n_classes`` -- do this themselves and accept labels of any hashable type).
    n_features : feature dimension d (taken from the first batch if omitted).
    per_class : also keep the K per-class ``d x d`` scatter matrices ``scatter`` (they give the class-balanced
        ``Sigma_W`` in one pass).  ``None`` (default): kept when they take at most 256 MiB.  Without them the
        balanced form needs a second pass, :meth:`update_balanced`.
    classes : the original labels of codes ``0 .. K-1`` (optional; used to map held-out labels).

    Attributes
    ----------
    counts (K,), means (K, d), sq (K,) sum of squared distances of each class to its mean (``tr S_k``),
    pooled (d, d) ``sum_k S_k``, scatter (K, d, d) or None.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> H, y = rng.normal(size=(100, 5)), np.repeat([0, 1], 50)
    >>> a = ClassScatter(2).update(H, y)
    >>> b = ClassScatter(2).update(H[:30], y[:30]).update(H[30:], y[30:])
    >>> bool(np.allclose(a.within(), b.within(), atol=1e-12))
    True
    >>> c = ClassScatter(2, per_class=False).update(H, y).update_balanced(H, y)   # the second pass
    >>> bool(np.allclose(a.within(balanced=True), c.within(balanced=True), atol=1e-12))
    True
    """

    def __init__(self, n_classes: int, n_features: int | None = None, *, per_class: bool | None = None,
                 classes=None):
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
            raise InvalidParameterError(f"n_classes must be an integer >= 2 (class geometry needs two classes); "
                                        f"got {n_classes!r}")
        if per_class not in (None, True, False):
            raise InvalidParameterError(f"per_class must be True, False or None (automatic); got {per_class!r}")
        self.n_classes = int(n_classes)
        if classes is not None and len(classes) != self.n_classes:
            raise InputShapeError(f"classes must name the {self.n_classes} classes; got {len(classes)}")
        self.classes = None if classes is None else np.asarray(classes)
        self.per_class = per_class
        self.counts = np.zeros(self.n_classes, np.int64)
        self.sq = np.zeros(self.n_classes)
        self.means: np.ndarray | None = None
        self.pooled: np.ndarray | None = None
        self.scatter: np.ndarray | None = None
        self._balanced: np.ndarray | None = None
        self._balanced_rows = 0
        if n_features is not None:
            self._allocate(check_positive_int(n_features, "n_features"))

    def _allocate(self, d: int) -> None:
        if d * d * 8 > _MAX_SCATTER_BYTES:
            raise InvalidParameterError(
                f"a {d} x {d} scatter matrix would take {d * d * 8 / 2**30:.1f} GiB; reduce the feature dimension "
                "first (e.g. PCA to a few thousand dimensions)")
        need = self.n_classes * d * d * 8
        keep = need <= _PER_CLASS_AUTO_BYTES if self.per_class is None else self.per_class
        if keep and need > _MAX_SCATTER_BYTES:
            raise InvalidParameterError(
                f"per-class scatter matrices would take {need / 2**30:.1f} GiB (K={self.n_classes}, d={d}); "
                "use per_class=False (one pooled d x d matrix; the balanced form then takes a second pass) or "
                "reduce the feature dimension first")
        self.means = np.zeros((self.n_classes, d))
        self.pooled = np.zeros((d, d))
        self.scatter = np.zeros((self.n_classes, d, d)) if keep else None

    @property
    def n_features(self) -> int:
        return 0 if self.means is None else self.means.shape[1]

    def _batch(self, H, y) -> tuple[np.ndarray, np.ndarray]:
        H = as_points(H, "features")
        if self.means is None:
            self._allocate(H.shape[1])
        if H.shape[1] != self.n_features:
            raise InputShapeError(f"batch has {H.shape[1]} features; earlier batches had {self.n_features}")
        return H, _check_labels(y, len(H), self.n_classes)

    def update(self, H, y) -> ClassScatter:
        """Add a batch of features ``H`` (n, d) with integer class codes ``y`` (n,); returns ``self``."""
        H, y = self._batch(H, y)
        step = _rows_per_chunk(self.n_features)
        for lo in range(0, len(H), step):
            self._update_chunk(H[lo:lo + step].astype(np.float64, copy=False), y[lo:lo + step])
        self._balanced, self._balanced_rows = None, 0  # the means moved: a second pass must start again
        return self

    def _update_chunk(self, H: np.ndarray, y: np.ndarray) -> None:
        present, inv, nb = np.unique(y, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        onehot = sp.csr_array((np.ones(len(y)), (inv, np.arange(len(y)))), shape=(len(present), len(y)))
        mb = (onehot @ H) / nb[:, None]
        C = H - mb[inv]
        na = self.counts[present]
        n = na + nb
        f = na * nb / n
        delta = mb - self.means[present]
        # Chan et al.: merge each class's (n_a, mean_a, S_a) with the batch's (n_b, mean_b, S_b) without raw second
        # moments; summed over classes the batch scatters are one syrk and the mean corrections one K_b x d product
        self.pooled += C.T @ C
        self.pooled += (delta * f[:, None]).T @ delta
        self.sq[present] += np.bincount(inv, np.einsum("ij,ij->i", C, C), len(present)) + f * np.einsum(
            "ij,ij->i", delta, delta)
        if self.scatter is not None:
            order = np.argsort(inv, kind="stable")
            bounds = np.r_[0, np.cumsum(nb)]
            for j, c in enumerate(present):
                Cc = C[order[bounds[j]:bounds[j + 1]]]
                self.scatter[c] += Cc.T @ Cc + f[j] * np.outer(delta[j], delta[j])
        self.means[present] += delta * (nb / n)[:, None]
        self.counts[present] = n

    def update_balanced(self, H, y) -> ClassScatter:
        """Second pass: add a batch to the class-balanced scatter ``sum_k S_k / n_k`` about the final means.

        Call it after the last :meth:`update`, with the same rows again (any batches, any order); returns ``self``.
        """
        if self.means is None or self.n == 0:
            raise InvalidParameterError("update_balanced is the second pass: call update(H, y) on every batch first")
        H, y = self._batch(H, y)
        unseen = np.flatnonzero(self.counts[y] == 0)
        if unseen.size:
            raise InvalidParameterError(f"row {int(unseen[0])} has class {int(y[unseen[0]])}, which the first pass "
                                        "never saw: pass the same rows to update() and update_balanced()")
        if self._balanced is None:
            self._balanced = np.zeros((self.n_features, self.n_features))
        step = _rows_per_chunk(self.n_features)
        for lo in range(0, len(H), step):
            yc = y[lo:lo + step]
            C = H[lo:lo + step] - self.means[yc]
            C *= np.sqrt(1.0 / self.counts[yc])[:, None]  # weights 1/n_k, split over both factors to keep syrk
            self._balanced += C.T @ C
        self._balanced_rows += len(H)
        return self

    def merge(self, other: ClassScatter) -> ClassScatter:
        """Combine with statistics accumulated elsewhere (another worker, another file); returns ``self``.

        A second-pass (balanced) accumulator is dropped, since the means change; per-class matrices survive when
        both sides kept them.
        """
        if other.n_classes != self.n_classes or (other.means is not None and self.means is not None
                                                 and other.n_features != self.n_features):
            raise InputShapeError("can only merge statistics with the same number of classes and features")
        if other.means is None or other.n == 0:
            return self
        if self.means is None:
            self._allocate(other.n_features)
        present = np.flatnonzero(other.counts > 0)
        na, nb = self.counts[present], other.counts[present]
        n = na + nb
        f = na * nb / n
        delta = other.means[present] - self.means[present]
        self.pooled += other.pooled + (delta * f[:, None]).T @ delta
        self.sq[present] += other.sq[present] + f * np.einsum("ij,ij->i", delta, delta)
        if self.scatter is not None and other.scatter is not None:
            for j, c in enumerate(present):
                self.scatter[c] += other.scatter[c] + f[j] * np.outer(delta[j], delta[j])
        else:
            self.scatter = None
        self.means[present] += delta * (nb / n)[:, None]
        self.counts[present] = n
        self._balanced, self._balanced_rows = None, 0
        return self

    # -- derived quantities ------------------------------------------------------------------------------------

    def check_complete(self) -> None:
        """Raise unless every class has samples and the dimension can hold a K-simplex."""
        if self.means is None or self.counts.sum() == 0:
            raise InvalidParameterError("no features were added; call update(H, y) first")
        empty = np.flatnonzero(self.counts == 0)
        if empty.size:
            raise InvalidParameterError(
                f"class(es) {empty.tolist()} have no samples; pass n_classes equal to the classes present or "
                "add samples of every class")
        if self.n_features < self.n_classes - 1:
            raise InvalidParameterError(
                f"K={self.n_classes} classes need at least K-1={self.n_classes - 1} feature dimensions for their "
                f"means to span a simplex; got d={self.n_features}. Use fewer classes or a wider layer")

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def global_mean(self) -> np.ndarray:
        """Sample mean mu_G."""
        return (self.counts[:, None] * self.means).sum(0) / self.n

    def mean_of_means(self) -> np.ndarray:
        return self.means.mean(0)

    def class_variances(self) -> np.ndarray:
        """``Var_k``: mean squared distance of class k's features to its mean (``tr S_k / n_k``)."""
        return self.sq / self.counts

    def within(self, balanced: bool = False) -> np.ndarray:
        """Sigma_W: ``(1/n) sum_k S_k``, or with ``balanced=True`` ``(1/K) sum_k S_k / n_k``.

        The balanced form comes from the per-class matrices when they were kept, otherwise from the second pass
        (:meth:`update_balanced`).
        """
        if not balanced:
            return self.pooled / self.n
        if self.scatter is not None:
            return (self.scatter / self.counts[:, None, None]).mean(0)
        if self._balanced is None:
            raise InvalidParameterError(
                "the class-balanced within-class scatter needs a second pass over the same rows (per-class matrices "
                "were not kept: K d^2 is large): call stats.update_balanced(H, y) on every batch after the last "
                "update(), or build the statistics with scatter_in_blocks(H, y), which does both passes")
        if self._balanced_rows != self.n:
            raise InvalidParameterError(f"the second pass saw {self._balanced_rows} rows but the first saw {self.n}; "
                                        "pass every row once to update_balanced()")
        return self._balanced / self.n_classes

    def centred_means(self, weighted: bool = False) -> np.ndarray:
        """Rows ``mu_k - mu_bar`` (NC convention) or ``mu_k - mu_G`` (``weighted=True``)."""
        return self.means - (self.global_mean() if weighted else self.mean_of_means())

    def between(self, weighted: bool = False) -> np.ndarray:
        """Sigma_B (``1/K``, about the mean of means) or SS_b (``n_k / n``, about the sample mean); d x d."""
        M = self.centred_means(weighted)
        w = self.counts / self.n if weighted else np.full(self.n_classes, 1 / self.n_classes)
        return (M * w[:, None]).T @ M


def scatter_in_blocks(H, y, n_classes: int | None = None, batch_size: int = 65536, *, balanced: bool = True,
                      per_class: bool | None = False) -> ClassScatter:
    """Accumulate a :class:`ClassScatter` over row blocks of ``H`` (e.g. a memory-mapped ``.npy``).

    Two passes when ``balanced`` (the class-balanced ``Sigma_W`` of the default separation fuzziness) and the
    per-class matrices are not kept; one otherwise.  With ``n_classes`` the labels must be integer codes
    ``0 .. n_classes-1``; without it they may be of any hashable type (``check_labels``) and the statistics keep
    ``classes``.  Blocks hold at most ``batch_size`` rows (fewer for wide features: 64 MiB of float64 at a time).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.array(["cat", "dog"] * 50); H = rng.normal(size=(100, 4)) + (y == "dog")[:, None]
    >>> s = scatter_in_blocks(H, y, batch_size=32)
    >>> s.classes.tolist(), s.counts.tolist()
    (['cat', 'dog'], [50, 50])
    """
    check_positive_int(batch_size, "batch_size")
    n, d = len(H), (H.shape[1] if getattr(H, "ndim", 0) == 2 else None)
    if n_classes is None:
        classes, codes = _label_codes(y, n)
        stats = ClassScatter(len(classes), per_class=per_class, classes=classes)
    else:
        codes = np.asarray(y)
        stats = ClassScatter(n_classes, per_class=per_class)
    step = batch_size if d is None else min(batch_size, _rows_per_chunk(d))
    for lo in range(0, n, step):
        stats.update(np.asarray(H[lo:lo + step]), codes[lo:lo + step])
    if balanced and stats.scatter is None:
        for lo in range(0, n, step):
            stats.update_balanced(np.asarray(H[lo:lo + step]), codes[lo:lo + step])
    return stats


def _trace_with_truncated_pinv(Sw: np.ndarray, M: np.ndarray, w: np.ndarray) -> float:
    """tr(Sw B^+) for ``B = sum_k w_k m_k m_k'`` with rows ``m_k`` of M, B's pseudo-inverse truncated to rank K-1.

    B's non-zero spectrum is that of the K x K matrix ``G = sqrt(w) M M' sqrt(w)``: if ``G u = lam u`` then
    ``v = M' sqrt(w) u / sqrt(lam)`` is a unit eigenvector of B with eigenvalue lam, so the trace is
    ``sum_j v_j' Sw v_j / lam_j`` over the kept eigenpairs.  Cost O(K^2 d + K d^2), no d x d eigendecomposition.
    """
    A = M * np.sqrt(w)[:, None]
    lam, U = np.linalg.eigh(A @ A.T)
    order = np.argsort(lam)[::-1][: max(1, len(w) - 1)]
    lam, U = lam[order], U[:, order]
    keep = lam > 1e-8 * lam[0] if lam[0] > 0 else np.zeros_like(lam, bool)
    if not keep.any():
        raise InvalidParameterError("all class means coincide: the between-class scatter is zero, so NC1 and the "
                                    "separation fuzziness are undefined")
    V = A.T @ U[:, keep] / np.sqrt(lam[keep])
    return float(((Sw @ V) * V).sum(0).dot(1 / lam[keep]))


def separation_fuzziness(stats_or_H, y=None, *, weighting: str = "balanced", n_classes: int | None = None) -> float:
    """He & Su's separation fuzziness ``D = tr(SS_w SS_b^+)``.

    ``weighting="balanced"``: class covariances averaged with 1/K and means unweighted (the official code);
    ``"imbalanced"``: the 1/n-weighted ``SS_w`` and ``SS_b`` of the paper's definition.  Equal for balanced data.
    Labels may be of any hashable type.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 200); means = 5 * np.eye(3)
    >>> round(separation_fuzziness(means[y] + rng.normal(size=(600, 3)), y), 1)
    0.2
    """
    if weighting not in ("balanced", "imbalanced"):
        raise InvalidParameterError(f"weighting must be 'balanced' or 'imbalanced'; got {weighting!r}")
    stats = _as_stats(stats_or_H, y, n_classes, balanced=weighting == "balanced")
    stats.check_complete()
    if weighting == "balanced":
        w = np.full(stats.n_classes, 1 / stats.n_classes)
        return _trace_with_truncated_pinv(stats.within(balanced=True), stats.centred_means(False), w)
    return _trace_with_truncated_pinv(stats.within(), stats.centred_means(True), stats.counts / stats.n)


_NC_CHUNK = 256  # at most this many bootstrap resamples share the two passes over the rows in weighted_nc1_fuzziness
_BASIS_ENTRIES = 1 << 22  # ... and fewer where their K x d class means and bases would exceed this (32 MB)
_BLOCK_ENTRIES = 1 << 21  # rows x columns of one block of residuals or projections there (16 MB of float64)


@nb.njit(cache=True)
def _weighted_squares(Q, shift, Wb, rows, starts, out):
    """``out[c] += sum_i Wb[b(c), rows[i]] (Q[i, c] - shift[c])^2`` for the columns ``starts[b]:starts[b+1]`` of
    resample ``b`` (a zero weight skips its row: a third of a bootstrap's are zero)."""
    for i in range(Q.shape[0]):
        r = rows[i]
        for b in range(len(starts) - 1):
            w = Wb[b, r]
            if w == 0.0:
                continue
            for c in range(starts[b], starts[b + 1]):
                diff = Q[i, c] - shift[c]
                out[c] += w * diff * diff


def weighted_nc1_fuzziness(H, codes, n_classes: int, weights) -> tuple[np.ndarray, np.ndarray]:
    """NC1 and the (balanced) separation fuzziness D of points counted ``w_i`` times, for each row of ``weights``.

    The bootstrap of the class-geometry columns: row ``b`` of ``weights`` (``(B, N)`` multiplicities, e.g. from
    :func:`~nnkscope.measures.uncertainty.bootstrap_weights`) gives the NC1 and D of the resample with point ``i``
    repeated ``w_i`` times, without repeating rows.  Both are ``tr(S Sigma_B^+)`` for a within-class scatter ``S``
    (pooled ``1/n`` for NC1, class-balanced for D) and the NC-convention ``Sigma_B`` of the weighted class means,
    whose pseudo-inverse is truncated as in :func:`neural_collapse`; only ``v' S v`` along ``Sigma_B``'s ``<= K - 1``
    eigenvectors ``v`` is needed, so each weighting costs ``O(N d K)`` (residuals to the weighted class means,
    projected), never a ``d x d`` matrix.  Up to :data:`_NC_CHUNK` weightings (fewer for many classes: their
    class means take at most :data:`_BASIS_ENTRIES` numbers) share two passes over the rows, taken class by class
    in blocks: one for the weighted class means, one projecting every weighting's eigenvectors at once (a single
    large matrix product per block).
    ``codes``: integer classes ``0 .. n_classes-1``.  A weighting that leaves a class empty or makes the class
    means coincide gives NaN.  With all-ones weights the values equal :func:`neural_collapse`'s ``nc1`` and
    :func:`separation_fuzziness` to rounding (a different summation order).  Rows already grouped by class
    (``codes`` sorted) are read as slices; the results are the same either way.

    Examples
    --------
    >>> rng = np.random.default_rng(0); y = np.repeat([0, 1, 2], 100); H = 4 * np.eye(3)[y] + rng.normal(size=(300, 3))
    >>> nc1, D = weighted_nc1_fuzziness(H, y, 3, np.ones((1, 300)))
    >>> bool(np.isclose(nc1[0], neural_collapse(H, y)["nc1"])), bool(np.isclose(D[0], separation_fuzziness(H, y)))
    (True, True)
    """
    H = as_points(H, "features")
    codes = _check_labels(codes, len(H), n_classes)
    W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if W.shape[1] != len(H):
        raise InputShapeError(f"weights must have one column per row of H ({len(H)}); got shape {W.shape}")
    K, d = n_classes, H.shape[1]
    order = np.argsort(codes, kind="stable")  # rows grouped by class: a class is a slice of `order`
    in_order = bool((order == np.arange(len(order))).all())  # rows already grouped: slices, no gathered copies
    bounds = np.searchsorted(codes[order], np.arange(K + 1))
    if (np.diff(bounds) == 0).any():
        raise InvalidParameterError(f"class {int(np.flatnonzero(np.diff(bounds) == 0)[0])} has no row; codes must "
                                    f"use every class 0..{K - 1}")

    def blocks(columns: int, centre: np.ndarray):
        """(class, rows, their selector, residuals to the unweighted class mean) in row blocks: the residuals, not
        the raw rows, enter every sum, so nothing small is the difference of large numbers (a resample shifts a
        mean a little).  The selector is a slice where the rows are already grouped (no gathered copy)."""
        step = max(1, _BLOCK_ENTRIES // max(d, columns))
        for k in range(K):
            for lo in range(bounds[k], bounds[k + 1], step):
                hi = min(lo + step, bounds[k + 1])
                rows = order[lo:hi]
                sel = slice(lo, hi) if in_order else rows
                yield k, rows, sel, H[sel].astype(np.float64, copy=False) - centre[k]

    mu0 = np.zeros((K, d))
    for k, _, _, R in blocks(d, np.zeros((K, d))):
        mu0[k] += R.sum(axis=0)
    mu0 /= np.diff(bounds)[:, None]
    nc1, fuzz = np.full(len(W), np.nan), np.full(len(W), np.nan)
    chunk = max(1, min(_NC_CHUNK, _BASIS_ENTRIES // (K * d)))
    for lo in range(0, len(W), chunk):
        Wc = W[lo:lo + chunk]
        counts = np.stack([Wc[:, order[bounds[k]:bounds[k + 1]]].sum(axis=1) for k in range(K)], axis=1)  # (c, K)
        sums = np.zeros((len(Wc), K, d))  # pass 1: weighted sums of the residuals per class
        for k, _, sel, R in blocks(d, mu0):
            sums[:, k] += Wc[:, sel] @ R
        with np.errstate(divide="ignore", invalid="ignore"):
            deltas = sums / counts[:, :, None]  # weighted class means minus mu0
        live, bases = [], []  # resamples where NC1 is defined, with (V, shifts of the means on V, eigenvalues)
        for b in range(len(Wc)):
            if (counts[b] <= 0).any():
                continue  # a class is missing from this resample
            means = mu0 + deltas[b]
            A = (means - means.mean(0)) / np.sqrt(K)  # Sigma_B = A' A
            lam, U = np.linalg.eigh(A @ A.T)
            top = np.argsort(lam)[::-1][: K - 1]  # Sigma_B has rank K - 1 at most
            lam, U = lam[top], U[:, top]
            keep = lam > 1e-8 * lam[0] if lam[0] > 0 else np.zeros_like(lam, bool)
            if not keep.any():
                continue
            V = A.T @ U[:, keep] / np.sqrt(lam[keep])  # unit eigenvectors of Sigma_B
            live.append(b)
            bases.append((V, deltas[b] @ V, lam[keep]))
        if not live:
            continue
        V_all = np.hstack([V for V, _, _ in bases])
        starts = np.cumsum([0] + [V.shape[1] for V, _, _ in bases])
        shifts = np.hstack([s for _, s, _ in bases])  # (K, columns)
        Wl = np.ascontiguousarray(Wc[live])
        per_class = np.zeros((K, V_all.shape[1]))  # pass 2: w_i (v_j' (x_i - mu_k(w)))^2 summed per class
        for k, rows, _, R in blocks(V_all.shape[1], mu0):
            _weighted_squares(R @ V_all, shifts[k], Wl, rows, starts, per_class[k])
        for j, (b, (_, _, lam)) in enumerate(zip(live, bases, strict=True)):
            S = per_class[:, starts[j]:starts[j + 1]]  # (K, r): v' S_k v of this resample's eigenvectors
            inv = 1.0 / lam
            nc1[lo + b] = S.sum(0) @ inv / Wc[b].sum() / K
            fuzz[lo + b] = (S / counts[b][:, None]).mean(0) @ inv
    return nc1, fuzz


def _as_stats(stats_or_H, y, n_classes, *, balanced: bool = False) -> ClassScatter:
    """A :class:`ClassScatter` as given, or built from an in-memory array (two passes when ``balanced``)."""
    if isinstance(stats_or_H, ClassScatter):
        return stats_or_H
    if y is None:
        raise InvalidParameterError("pass labels y with the features (or a ClassScatter)")
    H = as_points(stats_or_H, "features")
    if n_classes is None:
        classes, codes = _label_codes(y, len(H))
        stats = ClassScatter(len(classes), per_class=False, classes=classes)
    else:
        codes = _check_labels(y, len(H), n_classes)
        stats = ClassScatter(n_classes, per_class=False)
    stats.update(H, codes)
    if balanced:
        stats.update_balanced(H, codes)
    return stats


def ncc_mismatch(H, y, means: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> tuple[int, int]:
    """Count rows where the classifier's argmax differs from the nearest class mean; returns (mismatches, rows).

    Batches can be summed, so NC4 streams as a second pass once the means are known.  Ties go to the lower class.
    """
    mis, _, _, n = _decisions(H, None, means, W, b)
    return mis, n


def _decisions(H, codes, means, W, b) -> tuple[int, int, int, int]:
    """(classifier != NCC, NCC correct, classifier correct, rows) of one batch; ``codes`` may be None."""
    H = as_points(H, "features")
    mis = ncc_ok = clf_ok = 0
    step = _rows_per_chunk(max(H.shape[1], len(means)))  # bounds the float64 copy and the (rows, K) scores
    for lo in range(0, len(H), step):
        Hc = H[lo:lo + step].astype(np.float64, copy=False)
        logits = Hc @ W.T + (0 if b is None else b)
        d2 = (Hc**2).sum(1)[:, None] - 2 * Hc @ means.T + (means**2).sum(1)[None, :]
        clf, ncc = logits.argmax(1), d2.argmin(1)
        mis += int(np.count_nonzero(clf != ncc))
        if codes is not None:
            yc = codes[lo:lo + len(Hc)]
            ncc_ok += int(np.count_nonzero(ncc == yc))
            clf_ok += int(np.count_nonzero(clf == yc))
    return mis, ncc_ok, clf_ok, len(H)


def _cosine_stats(V: np.ndarray, K: int) -> dict:
    norms = np.linalg.norm(V, axis=1)
    U = V / norms[:, None]
    C = U @ U.T
    off = C[~np.eye(K, dtype=bool)]
    etf = np.eye(K) - np.ones((K, K)) / K
    G = V @ V.T
    return {
        "equinorm": float(norms.std() / norms.mean()),
        "equiangular_std": float(off.std()),
        "max_angle": float(np.abs(off + 1 / (K - 1)).mean()),
        "etf_distance": float(np.linalg.norm(G / np.linalg.norm(G) - etf / np.linalg.norm(etf))),
    }


def hyperspherical_uniformity(stats_or_means) -> tuple[float, float]:
    """GNC2 (Liu et al. 2023; Wu & Papyan 2024): log-kernel energy of the normalised centred class means.

    With ``u_k = (mu_k - mu_bar) / ||mu_k - mu_bar||``, the pairwise kernel is ``log(1 / ||u_k - u_l||)``; returns
    its mean and variance over pairs ``k < l``.  The mean is the logarithmic energy (lower = more uniform on the
    sphere); the variance is 0 when every pair is equidistant.  A simplex ETF gives ``-log(2K/(K-1)) / 2`` and 0.
    Accepts a :class:`ClassScatter` or class means (K, d), which are centred about their mean here.

    Examples
    --------
    >>> K = 4; energy, var = hyperspherical_uniformity(np.eye(K))   # the means of a simplex ETF
    >>> bool(np.isclose(energy, -0.5 * np.log(2 * K / (K - 1)))), bool(var < 1e-25)
    (True, True)
    """
    if isinstance(stats_or_means, ClassScatter):
        M = stats_or_means.centred_means(weighted=False)
    else:
        M = np.asarray(stats_or_means, dtype=np.float64)
        if M.ndim != 2 or len(M) < 2:
            raise InputShapeError(f"class means must be (K, d) with K >= 2; got shape {M.shape}")
        check_finite(M, "means")
        M = M - M.mean(0)
    norms = np.linalg.norm(M, axis=1)
    if not (norms > 0).all():
        raise InvalidParameterError("a class mean equals the mean of the class means, so it has no direction; "
                                    "GNC2 is undefined")
    U = M / norms[:, None]
    iu = np.triu_indices(len(U), 1)
    sq = np.maximum(2.0 - 2.0 * (U @ U.T)[iu], 0.0)  # |u - v|^2 of unit vectors, from their Gram matrix
    with np.errstate(divide="ignore"):
        kernel = -0.5 * np.log(sq)
    return float(kernel.mean()), float(kernel.var())


def _cdnv(stats: ClassScatter) -> float:
    """Mean over pairs of ``(Var_k + Var_l) / (2 ||mu_k - mu_l||^2)`` (Galanti et al.), distances from the means'
    Gram matrix (K x K; a K x K x d difference tensor would not fit at K = 1,000, d = 4,096)."""
    M = stats.centred_means(weighted=False)
    sq = np.einsum("ij,ij->i", M, M)
    D2 = np.maximum(sq[:, None] + sq[None, :] - 2 * (M @ M.T), 0.0)
    var = stats.class_variances()
    iu = np.triu_indices(stats.n_classes, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean((var[iu[0]] + var[iu[1]]) / (2 * D2[iu])))


def _classifier(W, b, K: int, d: int) -> tuple[np.ndarray, np.ndarray | None]:
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (K, d):
        raise InputShapeError(f"W must have shape (K, d) = {(K, d)}; got {W.shape}")
    check_finite(W, "W")
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        if b.shape != (K,):
            raise InputShapeError(f"b must have shape ({K},); got {b.shape}")
        check_finite(b, "b")
    return W, b


def neural_collapse(H, y=None, W: np.ndarray | None = None, b: np.ndarray | None = None, *,
                    n_classes: int | None = None, batches: Iterable | None = None) -> dict:
    """Neural collapse metrics of features (and optionally the linear classifier ``W``, ``b``).

    Parameters
    ----------
    H : (n, d) features or a :class:`ClassScatter` already accumulated.
    y : (n,) labels (with an array ``H``) of any hashable type; with ``n_classes``, integer codes ``0..K-1``.
    W : (K, d) classifier weights, b : (K,) biases (optional: enables NC2 for W, NC3 and NC4); row k of ``W`` is
        the k-th class in sorted label order (``check_labels``), or code k.
    batches : for NC4 with a :class:`ClassScatter`, an iterable of ``(H, y)`` batches for the second pass.

    Returns
    -------
    dict with ``nc1``, ``nc2_*`` (equinorm, equiangular_std, max_angle, etf_distance for the class means and for W),
    ``gnc2_log_energy`` and ``gnc2_log_energy_var`` (:func:`hyperspherical_uniformity`), ``nc3``
    (``|| W'/||W|| - M/||M|| ||_F^2``), ``nc3_etf`` (Zhu et al.), ``nc4`` (NCC mismatch rate), ``cdnv`` and
    ``trace_ratio`` (``tr Sigma_W / tr Sigma_B``).  Memory: ``d^2 + K d + K^2`` numbers, whatever n.

    Examples
    --------
    >>> K = 4; M = np.eye(K) - 1 / K             # simplex ETF means
    >>> y = np.repeat(np.arange(K), 5); H = M[y]   # every sample on its class mean
    >>> m = neural_collapse(H, y, W=M, b=np.zeros(K))
    >>> round(m["nc1"], 12), round(m["nc2_means_etf_distance"], 12), round(m["nc3"], 12), m["nc4"]
    (0.0, 0.0, 0.0, 0.0)
    """
    stats = _as_stats(H, y, n_classes)
    stats.check_complete()
    K = stats.n_classes
    Sw = stats.within()
    M = stats.centred_means(weighted=False)
    out: dict = {"n_classes": K, "n_samples": stats.n}
    out["nc1"] = _trace_with_truncated_pinv(Sw, M, np.full(K, 1 / K)) / K
    for key, val in _cosine_stats(M, K).items():
        out[f"nc2_means_{key}"] = val
    out["gnc2_log_energy"], out["gnc2_log_energy_var"] = hyperspherical_uniformity(M)
    out["cdnv"] = _cdnv(stats)
    out["trace_ratio"] = float(np.trace(Sw) / (np.einsum("ij,ij->", M, M) / K))  # tr Sigma_B = sum ||M_k||^2 / K
    if W is not None:
        W, b = _classifier(W, b, K, stats.n_features)
        for key, val in _cosine_stats(W, K).items():
            out[f"nc2_classifier_{key}"] = val
        out["nc3"] = float(np.linalg.norm(W / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2)
        WM = W @ M.T
        etf = np.eye(K) - np.ones((K, K)) / K
        out["nc3_etf"] = float(np.linalg.norm(WM / np.linalg.norm(WM) - etf / np.linalg.norm(etf)))
        if isinstance(H, ClassScatter):
            if batches is None:
                out["nc4"] = None  # needs a second pass over the features
            else:
                mis = [ncc_mismatch(Hb, yb, stats.means, W, b) for Hb, yb in batches]
                out["nc4"] = sum(m for m, _ in mis) / sum(n for _, n in mis)
        else:
            mis, n = ncc_mismatch(H, y, stats.means, W, b)
            out["nc4"] = mis / n
    return out


def _held_out_codes(stats: ClassScatter, y, n: int) -> np.ndarray:
    """Held-out labels as the training codes: through ``stats.classes`` when known, else integer codes."""
    if stats.classes is None:
        return _check_labels(y, n, stats.n_classes)
    classes, codes = check_labels(y, n, name="held-out labels", min_classes=1)
    index = {c: i for i, c in enumerate(stats.classes.tolist())}
    missing = [c for c in classes.tolist() if c not in index]
    if missing:
        raise InvalidParameterError(f"held-out labels {missing[:5]} are not among the training classes "
                                    f"{stats.classes.tolist()[:10]}; drop those rows")
    return np.array([index[c] for c in classes.tolist()], np.int64)[codes]


def _iter_batches(H, y, batches, what: str):
    if (H is None) == (batches is None):
        raise InvalidParameterError(f"pass the {what} features either as H or as batches=..., not both or neither")
    if batches is None:
        yield H, y
        return
    for item in batches:
        yield item if isinstance(item, tuple) else (item, None)


def held_out_nc4(train: ClassScatter, H=None, y=None, *, W, b=None, batches: Iterable | None = None) -> dict:
    """NC4 on held-out data: does the classifier agree with the nearest *training* class mean on test features?

    Parameters
    ----------
    train : the training features' :class:`ClassScatter` (its means are the class centres).
    H, y : held-out features (n, d) and, optionally, their labels (same label type as in training); or
    batches : an iterable of ``(H, y)`` (or bare ``H``) batches instead, for features that do not fit in memory.
    W, b : the (K, d) classifier and (K,) bias.

    Returns
    -------
    dict with ``nc4`` (rate of rows where ``argmax W h + b`` differs from ``argmin_k ||h - mu_k^train||``; ties to
    the lower class), ``ncc_accuracy`` and ``classifier_accuracy`` (None without labels) and ``n_samples``.

    Examples
    --------
    >>> rng = np.random.default_rng(0); M = 4 * np.eye(3)
    >>> y = np.array(list("abc") * 20); codes = np.searchsorted(list("abc"), y)
    >>> train = scatter_in_blocks(M[codes] + rng.normal(size=(60, 3)), y)
    >>> test = M[codes] + rng.normal(size=(60, 3))
    >>> r = held_out_nc4(train, test, y, W=M, b=-0.5 * (M**2).sum(1))  # the NCC rule of the true means
    >>> r["nc4"] < 0.1, r["ncc_accuracy"] > 0.9
    (True, True)
    """
    if not isinstance(train, ClassScatter):
        raise InvalidParameterError("train must be a ClassScatter of the training features (e.g. "
                                    "scatter_in_blocks(H_train, y_train, balanced=False))")
    train.check_complete()
    W, b = _classifier(W, b, train.n_classes, train.n_features)
    mis = ncc_ok = clf_ok = n = n_labelled = 0
    for Hb, yb in _iter_batches(H, y, batches, "held-out"):
        Hb = as_points(Hb, "held-out features")
        if Hb.shape[1] != train.n_features:
            raise InputShapeError(f"held-out features have {Hb.shape[1]} columns; training had {train.n_features}")
        codes = None if yb is None else _held_out_codes(train, yb, len(Hb))
        m, a, c, k = _decisions(Hb, codes, train.means, W, b)
        mis, n = mis + m, n + k
        if codes is not None:
            ncc_ok, clf_ok, n_labelled = ncc_ok + a, clf_ok + c, n_labelled + k
    if n == 0:
        raise InvalidParameterError("no held-out rows were given")
    labelled = n_labelled == n
    return {"nc4": mis / n, "ncc_accuracy": ncc_ok / n if labelled else None,
            "classifier_accuracy": clf_ok / n if labelled else None, "n_samples": n}


def ood_orthogonality(train: ClassScatter, H=None, *, batches: Iterable | None = None, centred: bool = True) -> float:
    """NC5-style OOD score (Ammar et al. 2024, NECO): how far the OOD features' mean leans on the ID class means.

    ``NC5 = mean_k |cos(mu_k - c, mu_OOD - c)|`` over the K in-distribution class means ``mu_k``, with ``mu_OOD`` the
    mean of the out-of-distribution features ``H`` and ``c`` the mean of the ID class means (the centre of the ID
    simplex ETF).  Under NC5 the OOD mean sits orthogonal to the ETF's span (score -> 0); an OOD set that looks like
    one class scores about ``1/K + (K-1)/K * 1/(K-1) = 2/K`` at an exact ETF, a score near 1 means OOD features
    follow the class directions.  ``centred=False`` uses the raw means as the NECO paper and its reference code do
    (``c = 0``; then the score also reflects the features' common offset, e.g. after a ReLU).  Streams over
    ``batches`` of features when they do not fit in memory.

    Examples
    --------
    >>> K = 3; M = np.eye(4)[:K]; y = np.repeat(np.arange(K), 2)
    >>> train = ClassScatter(K).update(M[y], y)
    >>> round(ood_orthogonality(train, np.tile(np.eye(4)[3], (5, 1)) + M.mean(0)), 12)   # orthogonal: NC5
    0.0
    """
    if not isinstance(train, ClassScatter):
        raise InvalidParameterError("train must be a ClassScatter of the in-distribution training features")
    train.check_complete()
    total, n = np.zeros(train.n_features), 0
    for Hb, _ in _iter_batches(H, None, batches, "OOD"):
        Hb = as_points(Hb, "OOD features")
        if Hb.shape[1] != train.n_features:
            raise InputShapeError(f"OOD features have {Hb.shape[1]} columns; the ID features had {train.n_features}")
        total += Hb.sum(0, dtype=np.float64)
        n += len(Hb)
    if n == 0:
        raise InvalidParameterError("no OOD rows were given")
    c = train.mean_of_means() if centred else 0.0
    M, v = train.means - c, total / n - c
    norms, vn = np.linalg.norm(M, axis=1), np.linalg.norm(v)
    if vn == 0 or not (norms > 0).all():
        raise InvalidParameterError("the OOD mean (or a class mean) coincides with the centre, so its direction and "
                                    "the NC5 cosine are undefined" + ("; try centred=False" if centred else ""))
    return float(np.mean(np.abs(M @ v) / (norms * vn)))


@dataclass(frozen=True)
class EquiSeparationFit:
    """OLS fit ``log D_l = a + l log(rho)``: ``rho = exp(slope)``, Pearson ``r`` and ``r2`` of (l, log D_l)."""

    rho: float
    slope: float
    intercept: float
    r: float
    r2: float
    layers: tuple

    def predict(self, layer_index) -> np.ndarray:
        return np.exp(self.intercept + self.slope * np.asarray(layer_index, dtype=float))


def equi_separation_fit(D, layer_index=None) -> EquiSeparationFit:
    """Fit the law of equi-separation to fuzziness values ``D`` (one per layer, in depth order).

    Examples
    --------
    >>> f = equi_separation_fit([8.0, 4.0, 2.0, 1.0])
    >>> round(f.rho, 12), round(f.r, 12)
    (0.5, -1.0)
    """
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 1 or len(D) < 3:
        raise InvalidParameterError(f"need fuzziness values of at least 3 layers; got {D.shape}")
    if not (np.isfinite(D).all() and (D > 0).all()):
        raise InvalidParameterError("fuzziness values must be finite and > 0 to take logarithms")
    x = np.arange(len(D), dtype=float) if layer_index is None else np.asarray(layer_index, dtype=float)
    if x.shape != D.shape:
        raise InputShapeError(f"layer_index must match D's length {len(D)}")
    z = np.log(D)
    xc, zc = x - x.mean(), z - z.mean()
    slope = float(xc @ zc / (xc @ xc))
    intercept = float(z.mean() - slope * x.mean())
    denom = np.sqrt((xc @ xc) * (zc @ zc))
    r = float(xc @ zc / denom) if denom > 0 else 0.0
    return EquiSeparationFit(float(np.exp(slope)), slope, intercept, r, r * r, tuple(x.tolist()))


def layerwise_separation(layers: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], y, *,
                         weighting: str = "balanced", input_layer: str | None = None):
    """Separation fuzziness of each layer and the equi-separation fit with and without the input layer.

    Returns ``(table, fits)``: a pandas DataFrame with columns ``layer, index, D, log_D`` and a dict with the fits
    ``"all"`` and (when ``input_layer`` names the first entry) ``"without_input"``.
    """
    import pandas as pd

    items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
    if len(items) < 3:
        raise InvalidParameterError("need at least 3 layers to fit the law of equi-separation")
    rows = [{"layer": name, "index": i, "D": separation_fuzziness(H, y, weighting=weighting)}
            for i, (name, H) in enumerate(items)]
    table = pd.DataFrame(rows)
    table["log_D"] = np.log(table["D"])
    fits = {"all": equi_separation_fit(table["D"].to_numpy(), table["index"].to_numpy())}
    if input_layer is not None:
        if items[0][0] != input_layer:
            raise InvalidParameterError(f"input_layer {input_layer!r} must be the first layer; got {items[0][0]!r}")
        if len(items) >= 4:
            fits["without_input"] = equi_separation_fit(table["D"].to_numpy()[1:], table["index"].to_numpy()[1:])
    return table, fits
