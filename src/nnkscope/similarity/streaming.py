"""Linear and debiased CKA over row blocks: N = 10^6 points in ``O(d^2)`` memory, never an N x N Gram matrix.

**Linear CKA** needs the centred cross-covariances ``Xc'Yc``, ``Xc'Xc``, ``Yc'Yc``: running ``X'Y``, ``X'X``, ``Y'Y``
and the column sums give them at the end (``Xc'Yc = X'Y - s_x s_y' / n``).

**Debiased CKA** uses the unbiased HSIC estimator of Song et al. (2012) with linear kernels ``K = XX'``, ``L = YY'``:

    HSIC_1(K, L) = [ tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1 ] / (n(n-3)),

``K~`` = ``K`` with a zero diagonal.  With ``a_i = ||x_i||^2``, ``b_i = ||y_i||^2``, ``s_x = sum_i x_i``,
``s_y = sum_i y_i`` each term is a sum over rows of per-row quantities:

* ``tr(K~ L~) = sum_{i != j} (x_i.x_j)(y_i.y_j) = ||X'Y||_F^2 - sum_i a_i b_i``;
* ``1'K~1 = ||s_x||^2 - sum_i a_i`` (and the same for ``L``);
* ``1'K~L~1 = sum_i (K~1)_i (L~1)_i`` with the row sums ``(K~1)_i = x_i.s_x - a_i`` and ``(L~1)_i = y_i.s_y - b_i``.
  They involve the *global* sums, unknown while streaming, but the product expands into one-pass sums:
  ``sum_i (x_i.s_x)(y_i.s_y) = s_x' (X'Y) s_y``, ``sum_i (x_i.s_x) b_i = s_x . (sum_i b_i x_i)``,
  ``sum_i a_i (y_i.s_y) = s_y . (sum_i a_i y_i)``, so
  ``1'K~L~1 = s_x' X'Y s_y - s_x . (sum_i b_i x_i) - s_y . (sum_i a_i y_i) + sum_i a_i b_i``.

So one pass accumulates ``n``, ``X'Y``, ``X'X``, ``Y'Y``, ``s_x``, ``s_y``, ``sum b_i x_i``, ``sum a_i y_i``,
``sum a_i x_i``, ``sum b_i y_i`` and the scalars ``sum a_i``, ``sum b_i``, ``sum a_i b_i``, ``sum a_i^2``,
``sum b_i^2`` -- ``d_x d_y + d_x^2 + d_y^2`` numbers.  HSIC_1 is unchanged by translating either side (the U-centring
behind it removes row and column effects), so each side is shifted by its first block's mean before accumulating:
the raw sums then stay of the order of the spread, not of the offset, and float64 keeps the result within ~1e-12 of
the dense N x N formula.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .._validate import check_finite, check_positive_int
from ..errors import FileFormatError, InputShapeError, InvalidParameterError, TooFewPointsError

__all__ = ["CKAStream", "streaming_cka", "row_blocks"]


def _npy_header(path: str):
    """(shape, dtype, data offset) of a .npy file, read without mapping it."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise FileFormatError(f"{path}: not a readable .npy file ({exc}); re-save it with np.save") from exc
        offset = f.tell()
    if len(shape) != 2 or fortran or dtype.hasobject or dtype.kind not in "fiu":
        raise FileFormatError(f"{path} holds a {'Fortran-ordered ' if fortran else ''}{dtype} array of shape "
                              f"{shape}; streaming needs a C-ordered 2-D numeric (N, d) array")
    return shape, dtype, offset


def _source_info(src, name: str):
    """``(n, d, reader)`` with ``reader(block_rows)`` yielding float64 row blocks of a path, RowSource or array."""
    from ..io import RowSource, as_source

    path = None
    if isinstance(src, (str, os.PathLike)) and str(src).lower().endswith(".npy"):
        path = str(src)
    elif isinstance(src, RowSource) and src.key is None and src.path.lower().endswith(".npy"):
        path = src.path
    if path is not None:
        if not os.path.exists(path):
            raise FileFormatError(f"{path} does not exist")
        (n, d), dtype, offset = _npy_header(path)

        def read(block_rows: int) -> Iterator[np.ndarray]:
            # plain reads, not a memory map: pages of a map stay in the resident set and would grow it to the file
            with open(path, "rb") as f:
                f.seek(offset)
                for lo in range(0, n, block_rows):
                    rows = min(block_rows, n - lo)
                    block = np.fromfile(f, dtype=dtype, count=rows * d)
                    if block.size != rows * d:
                        raise FileFormatError(f"{path} is truncated: rows from {lo + block.size // max(d, 1)} on "
                                              "are missing. Re-export it")
                    yield _checked(block.reshape(rows, d), f"rows {lo}..{lo + rows - 1} of {path}")

        return n, d, read
    if isinstance(src, (str, os.PathLike, RowSource)):
        source = as_source(src)
        n, d = source.shape

        def read(block_rows: int) -> Iterator[np.ndarray]:
            for lo in range(0, n, block_rows):
                yield source.read(lo, min(n, lo + block_rows)).astype(np.float64, copy=False)

        return n, d, read
    arr = src if hasattr(src, "shape") and hasattr(src, "__getitem__") else np.asarray(src)
    if len(arr.shape) != 2:
        raise InputShapeError(f"{name} must be 2-D (N, d); got shape {tuple(arr.shape)}")
    n, d = int(arr.shape[0]), int(arr.shape[1])

    def read(block_rows: int) -> Iterator[np.ndarray]:
        for lo in range(0, n, block_rows):
            yield _checked(np.asarray(arr[lo:lo + block_rows]), f"rows {lo}.. of {name}")

    return n, d, read


def _checked(block: np.ndarray, what: str) -> np.ndarray:
    if block.dtype.kind not in "fiub":
        raise InputShapeError(f"{what} has dtype {block.dtype}; features must be real numbers")
    block = block.astype(np.float64, copy=False)
    check_finite(block, what)
    return block


def row_blocks(src, block_rows: int = 16384) -> tuple[int, int, Iterator[np.ndarray]]:
    """``(N, d, blocks)``: float64 row blocks of a ``.npy`` path (read, not mapped), a :class:`RowSource` or an
    array (``np.memmap`` included), each checked to be finite."""
    check_positive_int(block_rows, "block_rows")
    n, d, read = _source_info(src, "features")
    return n, d, read(block_rows)


class CKAStream:
    """Running sums for linear and debiased CKA of two row-aligned feature sets (see the module docstring).

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(500, 6))
    >>> Y = X @ r.normal(size=(6, 4)) + r.normal(size=(500, 4))
    >>> s = CKAStream()
    >>> for lo in range(0, 500, 128):
    ...     _ = s.update(X[lo:lo + 128], Y[lo:lo + 128])
    >>> from nnkscope.measures.compare import linear_cka
    >>> bool(abs(s.linear_cka() - linear_cka(X, Y)) < 1e-12)
    True
    """

    def __init__(self):
        self.n = 0
        self._shift: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, X, Y) -> CKAStream:
        """Add a block of rows (row i of ``X`` and of ``Y`` is the same input); returns ``self``."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise InputShapeError(f"blocks must be 2-D with the same number of rows; got {X.shape} and {Y.shape}")
        if len(X) == 0:
            return self
        if self._shift is None:
            dx, dy = X.shape[1], Y.shape[1]
            self._shift = (X.mean(0), Y.mean(0))
            self.xy, self.xx, self.yy = np.zeros((dx, dy)), np.zeros((dx, dx)), np.zeros((dy, dy))
            self.sx, self.sy = np.zeros(dx), np.zeros(dy)
            self.xb, self.ya, self.xa, self.yb = np.zeros(dx), np.zeros(dy), np.zeros(dx), np.zeros(dy)
            self.a = self.b = self.ab = self.aa = self.bb = 0.0
            self._first = (X[0].copy(), Y[0].copy())
            self._varies = [False, False]
        elif X.shape[1] != len(self.sx) or Y.shape[1] != len(self.sy):
            raise InputShapeError(f"block widths {X.shape[1]}, {Y.shape[1]} differ from the first block's "
                                  f"{len(self.sx)}, {len(self.sy)}")
        # exact constancy, tracked on the raw rows: after the shift rounding would leave a tiny non-zero spread
        self._varies[0] = self._varies[0] or bool((X != self._first[0]).any())
        self._varies[1] = self._varies[1] or bool((Y != self._first[1]).any())
        X = X - self._shift[0]
        Y = Y - self._shift[1]
        a = np.einsum("ij,ij->i", X, X)
        b = np.einsum("ij,ij->i", Y, Y)
        self.xy += X.T @ Y
        self.xx += X.T @ X  # syrk
        self.yy += Y.T @ Y
        self.sx += X.sum(0)
        self.sy += Y.sum(0)
        self.xb += b @ X
        self.ya += a @ Y
        self.xa += a @ X
        self.yb += b @ Y
        self.a += a.sum()
        self.b += b.sum()
        self.ab += a @ b
        self.aa += a @ a
        self.bb += b @ b
        self.n += len(X)
        return self

    def _need(self, n_min: int) -> None:
        if self.n < n_min:
            raise TooFewPointsError(f"CKA needs at least {n_min} points; got {self.n}")
        for side, varies in zip("AB", self._varies, strict=True):
            if not varies:
                raise InvalidParameterError(f"representation {side} is constant (all rows equal): CKA is undefined. "
                                            "Check that the layer was captured (not a dead or saturated layer)")

    def linear_cka(self) -> float:
        """Linear CKA ``||Xc'Yc||_F^2 / (||Xc'Xc||_F ||Yc'Yc||_F)`` (Kornblith et al. 2019)."""
        self._need(2)
        n = self.n
        cxy = self.xy - np.outer(self.sx, self.sy) / n
        cxx = self.xx - np.outer(self.sx, self.sx) / n
        cyy = self.yy - np.outer(self.sy, self.sy) / n
        denom = np.linalg.norm(cxx) * np.linalg.norm(cyy)
        if not denom > 0:
            raise InvalidParameterError("linear CKA is undefined for a constant representation (all rows equal)")
        return float(np.linalg.norm(cxy) ** 2 / denom)

    def _hsic(self, C, sx, sy, bx, ay, a, b, ab) -> float:
        n = self.n
        t1 = np.sum(C * C) - ab
        t2 = (sx @ sx - a) * (sy @ sy - b)
        t3 = sx @ C @ sy - sx @ bx - sy @ ay + ab
        return float((t1 + t2 / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)) / (n * (n - 3)))

    def hsic(self) -> tuple[float, float, float]:
        """Unbiased HSIC estimates ``(HSIC_1(K, L), HSIC_1(K, K), HSIC_1(L, L))`` of the linear kernels."""
        self._need(4)
        kl = self._hsic(self.xy, self.sx, self.sy, self.xb, self.ya, self.a, self.b, self.ab)
        kk = self._hsic(self.xx, self.sx, self.sx, self.xa, self.xa, self.a, self.a, self.aa)
        ll = self._hsic(self.yy, self.sy, self.sy, self.yb, self.yb, self.b, self.b, self.bb)
        return kl, kk, ll

    def debiased_cka(self) -> float:
        """Debiased CKA ``HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))`` with the unbiased estimator."""
        kl, kk, ll = self.hsic()
        if not (kk > 0 and ll > 0):
            raise InvalidParameterError("debiased CKA is undefined: a representation has no variance the unbiased "
                                        "estimator can see (constant, or too few points)")
        return float(kl / np.sqrt(kk * ll))


def streaming_cka(A, B, *, debiased: bool = True, block_rows: int = 16384) -> float:
    """Linear or debiased CKA of two on-disk (or in-memory) representations, one block of rows at a time.

    Parameters
    ----------
    A, B : ``.npy`` paths (read block by block, not memory-mapped, so the resident set stays bounded),
        :class:`nnkscope.io.RowSource` objects (zarr too) or arrays (``np.memmap`` included); the same N rows.
    debiased : the unbiased-HSIC (debiased) CKA; ``False`` gives linear CKA.
    block_rows : rows per block (memory: ``block_rows * (d_a + d_b)`` float64 plus the ``d^2`` sums).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> r = np.random.default_rng(0); X = r.normal(size=(1000, 8)).astype(np.float32)
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); np.save(tmp / "a.npy", X); np.save(tmp / "b.npy", 2 * X + 1)
    >>> round(streaming_cka(tmp / "a.npy", tmp / "b.npy", block_rows=300), 10)
    1.0
    """
    check_positive_int(block_rows, "block_rows")
    na, _, read_a = _source_info(A, "A")
    nb, _, read_b = _source_info(B, "B")
    if na != nb:
        raise InputShapeError(f"A and B must describe the same points; got {na} and {nb} rows")
    stream = CKAStream()
    for X, Y in zip(read_a(block_rows), read_b(block_rows), strict=True):
        stream.update(X, Y)
    return stream.debiased_cka() if debiased else stream.linear_cka()
