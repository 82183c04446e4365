"""Class geometry of features: neural collapse (NC1-NC4) and the law of data separation.

Independent of NNK; numpy only.  Definitions follow the research notes (papers.md sections 1.5, 13, 14, 17.1):

* within-class scatter ``Sigma_W = (1/n) sum_k S_k`` (``S_k`` = class k's scatter about its mean), and its
  class-balanced form ``(1/K) sum_k S_k / n_k``;
* between-class scatter, NC convention ``Sigma_B = (1/K) sum_k (mu_k - mu_bar)(mu_k - mu_bar)'`` about the mean of the
  class means ``mu_bar`` (rank <= K - 1 for any class sizes), and the He & Su convention
  ``SS_b = (1/n) sum_k n_k (mu_k - mu_G)(mu_k - mu_G)'`` about the sample mean ``mu_G``; identical for balanced data;
* ``NC1 = tr(Sigma_W Sigma_B^+) / K`` and separation fuzziness ``D = tr(SS_w SS_b^+)``, where ``+`` is the
  pseudo-inverse truncated to the top ``K - 1`` eigenvalues (and only those above 1e-8 of the largest) -- the
  default cutoff would invert rounding noise in the other ``d - K + 1`` directions (NC1 ~ 1e8 on real features).

Statistics stream: :class:`ClassScatter` takes batches one at a time (float64 accumulators, Chan's pairwise update
so tiny within-class scatter is not lost against large means) and holds ``K d^2`` numbers, never the features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .._validate import as_points, check_finite
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["ClassScatter", "scatter_in_blocks", "neural_collapse", "separation_fuzziness", "equi_separation_fit",
           "layerwise_separation", "ncc_mismatch", "EquiSeparationFit"]

_MAX_SCATTER_BYTES = 4 * 2**30


def _check_labels(y, n: int, n_classes: int) -> np.ndarray:
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
                                    "Map them first, e.g. np.unique(labels, return_inverse=True)[1]")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise InvalidParameterError(f"labels must lie in [0, {n_classes}); got range [{y.min()}, {y.max()}]")
    return y


class ClassScatter:
    """Streaming per-class counts, means and scatter matrices of features.

    Parameters
    ----------
    n_classes : number of classes K (labels are integers ``0 .. K-1``).
    n_features : feature dimension d (taken from the first batch if omitted).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> H, y = rng.normal(size=(100, 5)), np.repeat([0, 1], 50)
    >>> a = ClassScatter(2).update(H, y)
    >>> b = ClassScatter(2).update(H[:30], y[:30]).update(H[30:], y[30:])
    >>> bool(np.allclose(a.within(), b.within(), atol=1e-12))
    True
    """

    def __init__(self, n_classes: int, n_features: int | None = None):
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
            raise InvalidParameterError(f"n_classes must be an integer >= 2 (class geometry needs two classes); "
                                        f"got {n_classes!r}")
        self.n_classes = int(n_classes)
        self.counts = np.zeros(self.n_classes, np.int64)
        self.means: np.ndarray | None = None
        self.scatter: np.ndarray | None = None
        if n_features is not None:
            self._allocate(int(n_features))

    def _allocate(self, d: int) -> None:
        need = self.n_classes * d * d * 8
        if need > _MAX_SCATTER_BYTES:
            raise InvalidParameterError(
                f"per-class scatter matrices would take {need / 2**30:.1f} GiB (K={self.n_classes}, d={d}); "
                "reduce the feature dimension first (e.g. PCA to a few hundred dimensions)")
        self.means = np.zeros((self.n_classes, d))
        self.scatter = np.zeros((self.n_classes, d, d))

    @property
    def n_features(self) -> int:
        return 0 if self.means is None else self.means.shape[1]

    def update(self, H, y) -> ClassScatter:
        """Add a batch of features ``H`` (n, d) with integer labels ``y`` (n,); returns ``self``."""
        H = as_points(H, "features").astype(np.float64, copy=False)
        if self.means is None:
            self._allocate(H.shape[1])
        if H.shape[1] != self.n_features:
            raise InputShapeError(f"batch has {H.shape[1]} features; earlier batches had {self.n_features}")
        y = _check_labels(y, len(H), self.n_classes)
        for c in np.unique(y):
            Hc = H[y == c]
            nb = len(Hc)
            mb = Hc.mean(axis=0)
            Cb = Hc - mb
            na = self.counts[c]
            delta = mb - self.means[c]
            n = na + nb
            # Chan et al.: merge (n_a, mean_a, S_a) with the batch's (n_b, mean_b, S_b) without raw second moments
            self.scatter[c] += Cb.T @ Cb + (na * nb / n) * np.outer(delta, delta)
            self.means[c] += delta * (nb / n)
            self.counts[c] = n
        return self

    def merge(self, other: ClassScatter) -> ClassScatter:
        """Combine with statistics accumulated elsewhere (another worker, another file); returns ``self``."""
        if other.n_classes != self.n_classes or other.n_features != self.n_features:
            raise InputShapeError("can only merge statistics with the same number of classes and features")
        for c in range(self.n_classes):
            na, nb = self.counts[c], other.counts[c]
            if nb == 0:
                continue
            n = na + nb
            delta = other.means[c] - self.means[c]
            self.scatter[c] += other.scatter[c] + (na * nb / n) * np.outer(delta, delta)
            self.means[c] += delta * (nb / n)
            self.counts[c] = n
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

    def within(self, balanced: bool = False) -> np.ndarray:
        """Sigma_W: ``(1/n) sum_k S_k``, or with ``balanced=True`` ``(1/K) sum_k S_k / n_k``."""
        if balanced:
            return (self.scatter / self.counts[:, None, None]).mean(0)
        return self.scatter.sum(0) / self.n

    def centred_means(self, weighted: bool = False) -> np.ndarray:
        """Rows ``mu_k - mu_bar`` (NC convention) or ``mu_k - mu_G`` (``weighted=True``)."""
        return self.means - (self.global_mean() if weighted else self.mean_of_means())

    def between(self, weighted: bool = False) -> np.ndarray:
        """Sigma_B (``1/K``, about the mean of means) or SS_b (``n_k / n``, about the sample mean)."""
        M = self.centred_means(weighted)
        w = self.counts / self.n if weighted else np.full(self.n_classes, 1 / self.n_classes)
        return (M * w[:, None]).T @ M


def scatter_in_blocks(H, y, n_classes: int, batch_size: int = 65536) -> ClassScatter:
    """Accumulate a :class:`ClassScatter` over row blocks of ``H`` (e.g. a memory-mapped ``.npy``)."""
    stats = ClassScatter(n_classes)
    for lo in range(0, len(H), batch_size):
        stats.update(np.asarray(H[lo:lo + batch_size]), y[lo:lo + batch_size])
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
    return float(np.einsum("dj,de,ej->j", V, Sw, V).dot(1 / lam[keep]))


def separation_fuzziness(stats_or_H, y=None, *, weighting: str = "balanced", n_classes: int | None = None) -> float:
    """He & Su's separation fuzziness ``D = tr(SS_w SS_b^+)``.

    ``weighting="balanced"``: class covariances averaged with 1/K and means unweighted (the official code);
    ``"imbalanced"``: the 1/n-weighted ``SS_w`` and ``SS_b`` of the paper's definition.  Equal for balanced data.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 200); means = 5 * np.eye(3)
    >>> round(separation_fuzziness(means[y] + rng.normal(size=(600, 3)), y), 1)
    0.2
    """
    stats = _as_stats(stats_or_H, y, n_classes)
    if weighting not in ("balanced", "imbalanced"):
        raise InvalidParameterError(f"weighting must be 'balanced' or 'imbalanced'; got {weighting!r}")
    stats.check_complete()
    if weighting == "balanced":
        w = np.full(stats.n_classes, 1 / stats.n_classes)
        return _trace_with_truncated_pinv(stats.within(balanced=True), stats.centred_means(False), w)
    return _trace_with_truncated_pinv(stats.within(), stats.centred_means(True), stats.counts / stats.n)


def _as_stats(stats_or_H, y, n_classes) -> ClassScatter:
    if isinstance(stats_or_H, ClassScatter):
        return stats_or_H
    if y is None:
        raise InvalidParameterError("pass labels y with the features (or a ClassScatter)")
    H = as_points(stats_or_H, "features")
    yy = np.asarray(y)
    if yy.dtype.kind == "f" and not np.isfinite(yy).all():
        raise InvalidParameterError("labels contain NaN/inf; drop those rows or give them a class")
    if n_classes is None:
        if yy.ndim != 1 or len(yy) != len(H):
            raise InputShapeError(f"labels must be 1-D with one entry per feature row ({len(H)}); got {yy.shape}")
        n_classes = int(np.max(yy)) + 1 if len(yy) else 0
        if len(np.unique(yy)) < 2:
            raise InvalidParameterError("labels hold a single class; class geometry needs at least two")
    return ClassScatter(n_classes).update(H, yy)


def ncc_mismatch(H, y, means: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> tuple[int, int]:
    """Count rows where the classifier's argmax differs from the nearest class mean; returns (mismatches, rows).

    Batches can be summed, so NC4 streams as a second pass once the means are known.  Ties go to the lower class.
    """
    H = as_points(H, "features").astype(np.float64, copy=False)
    logits = H @ W.T + (0 if b is None else b)
    d2 = (H**2).sum(1)[:, None] - 2 * H @ means.T + (means**2).sum(1)[None, :]
    return int(np.count_nonzero(logits.argmax(1) != d2.argmin(1))), len(H)


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


def neural_collapse(H, y=None, W: np.ndarray | None = None, b: np.ndarray | None = None, *,
                    n_classes: int | None = None, batches: Iterable | None = None) -> dict:
    """Neural collapse metrics of features (and optionally the linear classifier ``W``, ``b``).

    Parameters
    ----------
    H : (n, d) features or a :class:`ClassScatter` already accumulated.
    y : (n,) integer labels (with an array ``H``).
    W : (K, d) classifier weights, b : (K,) biases (optional: enables NC2 for W, NC3 and NC4).
    batches : for NC4 with a :class:`ClassScatter`, an iterable of ``(H, y)`` batches for the second pass.

    Returns
    -------
    dict with ``nc1``, ``nc2_*`` (equinorm, equiangular_std, max_angle, etf_distance for the class means and for W),
    ``nc3`` (``|| W'/||W|| - M/||M|| ||_F^2``), ``nc3_etf`` (Zhu et al.), ``nc4`` (NCC mismatch rate), ``cdnv``
    and ``trace_ratio`` (``tr Sigma_W / tr Sigma_B``).

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
    var = np.trace(stats.scatter, axis1=1, axis2=2) / stats.counts
    D2 = ((stats.means[:, None, :] - stats.means[None, :, :]) ** 2).sum(-1)
    iu = np.triu_indices(K, 1)
    out["cdnv"] = float(np.mean((var[iu[0]] + var[iu[1]]) / (2 * D2[iu])))
    out["trace_ratio"] = float(np.trace(Sw) / np.trace(stats.between()))
    if W is not None:
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (K, stats.n_features):
            raise InputShapeError(f"W must have shape (K, d) = {(K, stats.n_features)}; got {W.shape}")
        check_finite(W, "W")
        if b is not None:
            b = np.asarray(b, dtype=np.float64)
            if b.shape != (K,):
                raise InputShapeError(f"b must have shape ({K},); got {b.shape}")
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
