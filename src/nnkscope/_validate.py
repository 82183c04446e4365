"""Input checks shared by every public entry point (one place, one wording)."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from .errors import (
    InputDTypeError,
    InputRangeError,
    InputShapeError,
    InvalidParameterError,
    NonFiniteError,
    TooFewPointsError,
    ZeroVectorError,
)


def _expr(name: str) -> str:
    """``name`` where it can stand in a Python expression of a hint; ``X`` for descriptions like "embeddings in
    x.npy" (which would make the hint unreadable)."""
    return name if name.isidentifier() else "X"


def as_points(X, name: str = "X", *, min_rows: int = 1) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float32/float64 array, or raise a specific error.

    Integer and boolean inputs are promoted to float64 (exact for integers below 2**53); float16 is promoted to
    float32.  float32 and float64 are kept as they are, so a float32 embedding costs no copy.
    """
    arr = np.asarray(X)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)  # longdouble: no native kernel, float64 is what we compute in anyway
    elif arr.dtype.kind != "f":
        raise InputDTypeError(
            f"{name} has dtype {arr.dtype}, which nnkscope cannot use; convert it to real numbers first, "
            f"e.g. {_expr(name)}.astype(np.float32)"
        )
    if arr.ndim != 2:
        x = _expr(name)
        hint = f"{x}.reshape(len({x}), -1)" if arr.ndim > 2 else f"{x}.reshape(-1, 1)"
        raise InputShapeError(
            f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}. Use {hint} to flatten it"
        )
    if arr.shape[0] < min_rows:
        raise TooFewPointsError(f"{name} has {arr.shape[0]} rows; at least {min_rows} are needed")
    if arr.shape[1] == 0:
        raise InputShapeError(f"{name} has 0 features (shape {arr.shape}); pass at least one column")
    if not any(arr is t for t in _TRUSTED.get()):
        check_finite(arr, name)
        check_range(arr, name)
    return np.ascontiguousarray(arr)


_TRUSTED: ContextVar[tuple] = ContextVar("nnkscope_trusted_arrays", default=())


@contextmanager
def trusted(*arrays: np.ndarray) -> Iterator[None]:
    """Within the block, :func:`as_points` skips the finite and range scans of exactly these array objects.

    For a caller that has checked an array itself and hands it to many measures: each scan is three passes over
    the data, a dozen times per layer otherwise (1.5 s of a 50,000 x 768 layer).  Identity, not equality, decides,
    so a copy or a slice is still checked; dtype, shape and row-count checks always run.

    Examples
    --------
    >>> X = np.ones((3, 2))
    >>> with trusted(X):
    ...     as_points(X).shape
    (3, 2)
    """
    token = _TRUSTED.set(_TRUSTED.get() + arrays)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


MAX_ABS = 1e150  # squared distances of such values stay far inside float64


def check_range(arr: np.ndarray, name: str = "X") -> None:
    """Refuse magnitudes whose squares overflow (or, for non-zero data, underflow) float64."""
    if arr.size == 0:
        return
    big = max(float(arr.max()), -float(arr.min()))  # max |x| without an N x d copy for np.abs
    if big > MAX_ABS or 0 < big < 1 / MAX_ABS:
        raise InputRangeError(
            f"{name} has values of magnitude {big:.3g}; squared distances would leave float64's range. "
            f"Rescale it first, e.g. {_expr(name)} = {_expr(name)} / np.abs({_expr(name)}).max()"
        )


def check_finite(arr: np.ndarray, name: str = "X") -> None:
    """Raise :class:`NonFiniteError` naming the first offending row if ``arr`` has NaN or inf."""
    # np.isfinite on the whole array would allocate N*d booleans; a sum is finite iff every entry is
    # (barring overflow, which we then check exactly), so only bad inputs pay for the exact scan.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None, dtype=np.float64)
    if np.isfinite(total):
        return
    bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad_rows.size == 0:
        return  # the sum overflowed, every entry is finite
    n_bad = int((~np.isfinite(arr)).sum())
    x = _expr(name)
    raise NonFiniteError(
        f"{name} contains {n_bad} NaN/inf value(s) in {bad_rows.size} row(s) (first: row {int(bad_rows[0])}); "
        f"drop or impute those rows first, e.g. {x} = {x}[np.isfinite({x}).all(axis=1)]"
    )


def check_k(k, n_points: int, *, extra: int = 1, what: str = "k") -> int:
    """Validate a neighbour count: a positive integer with ``k + extra <= n_points``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InvalidParameterError(f"{what} must be a positive integer; got {k!r}")
    k = int(k)
    if k <= 0:
        raise InvalidParameterError(f"{what} must be a positive integer; got {k}. Use {what} >= 1 (typical: 10-50)")
    if k + extra > n_points:
        raise TooFewPointsError(
            f"{what}={k} needs at least {k + extra} points (each point's {k} neighbours exclude itself); "
            f"got {n_points}. Lower {what} to at most {n_points - extra} or add points"
        )
    return k


def check_positive_int(value, name: str) -> int:
    """Validate a positive integer setting (block sizes, index parameters); booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise InvalidParameterError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Validate a finite positive real scalar."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise InvalidParameterError(f"{name} must be a finite real number; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{name} must be {bound}; got {value!r}")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise InvalidParameterError(f"{name} must be one of {sorted(choices)}; got {value!r}")
    return value


def check_no_zero_rows(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Return the float64 row norms of ``X``; raise :class:`ZeroVectorError` if any row is all zeros."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        shown = ", ".join(map(str, zero[:5])) + (" ..." if zero.size > 5 else "")
        raise ZeroVectorError(
            f"{name} has {zero.size} all-zero row(s) (rows {shown}); the cosine kernel needs a direction. "
            f"Drop them (e.g. {name}[np.linalg.norm({name}, axis=1) > 0]) or use kernel='gaussian'"
        )
    return norms


def check_labels(y, n: int | None = None, *, name: str = "y", min_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The one label checker: labels of any hashable type in, ``(classes, codes)`` out.

    Accepts integers, strings, booleans, floats that are finite, objects, pandas Series / Categoricals and torch
    tensors (anything with ``.numpy()``); ``classes`` are sorted when they can be ordered (else in order of first
    appearance) and ``codes`` are int64 indices into them.  Refuses wrong shapes, a length other than ``n``,
    missing values (NaN, None) and fewer than ``min_classes`` classes, each with the fix.

    Examples
    --------
    >>> classes, codes = check_labels(["cat", "dog", "cat"])
    >>> classes.tolist(), codes.tolist()
    (['cat', 'dog'], [0, 1, 0])
    >>> check_labels([1, 2], n=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InputShapeError: y must be 1-D with one label per row (3); got shape (2,)...
    """
    if hasattr(y, "detach") and hasattr(y, "cpu"):  # a torch tensor, without importing torch
        y = y.detach().cpu().numpy()
    elif hasattr(y, "to_numpy"):  # pandas
        y = y.to_numpy()
    arr = np.asarray(y)
    if arr.ndim != 1 or (n is not None and len(arr) != n):
        want = f" ({n})" if n is not None else ""
        raise InputShapeError(f"{name} must be 1-D with one label per row{want}; got shape {arr.shape}. Pass a "
                              "flat array of class labels, e.g. y.ravel() for an (N, 1) column")
    if arr.dtype.kind == "c" or arr.dtype.kind == "V":
        raise InvalidParameterError(f"{name} has dtype {arr.dtype}; labels must be integers, strings or other "
                                    "hashable values")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidParameterError(f"{name} contains NaN/inf labels (first: row {bad}); drop those rows or give "
                                    "them a class")
    if arr.dtype.kind == "O":
        missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and not np.isfinite(v))]
        if missing:
            raise InvalidParameterError(f"{name} has {len(missing)} missing label(s) (None/NaN; first: row "
                                        f"{missing[0]}); drop those rows or give them a class")
        try:
            hash(tuple(arr.tolist()))
        except TypeError as exc:
            raise InvalidParameterError(f"{name} holds unhashable labels ({exc}); use ints or strings") from None
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError:  # mixed types that cannot be ordered: classes in order of first appearance
        import pandas as pd

        codes, classes = pd.factorize(pd.Series(arr, dtype=object), sort=False)
        classes = np.asarray(classes, dtype=object)
    if len(classes) < min_classes:
        held = (f"a single class ({classes[:1].tolist()[0]!r})" if len(classes) == 1
                else f"{len(classes)} classes" if len(classes) else "no class")
        raise InvalidParameterError(f"{name} holds {held}; at least {min_classes} classes are needed (one class "
                                    f"leaves nothing to tell apart). Pass labels of {min_classes} or more classes")
    return classes, np.asarray(codes, dtype=np.int64).ravel()
