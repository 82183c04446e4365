"""Exceptions raised by nnkscope.

Every error a user can trigger with bad input is a subclass of :class:`NNKScopeError` *and* of the builtin
exception a Python programmer would expect (``ValueError``, ``TypeError``, ``OSError``), so ``except ValueError``
keeps working.  Each message says what was wrong and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "NNKScopeError",
    "InputShapeError",
    "NonFiniteError",
    "InputDTypeError",
    "TooFewPointsError",
    "InvalidParameterError",
    "InputRangeError",
    "ZeroVectorError",
    "DuplicatePointsError",
    "FileFormatError",
    "MissingDependencyError",
    "SchedulerConnectionError",
]


class NNKScopeError(Exception):
    """Base class of every error raised deliberately by nnkscope."""


class InputShapeError(NNKScopeError, ValueError):
    """An array has the wrong number of dimensions or mismatched lengths."""


class NonFiniteError(NNKScopeError, ValueError):
    """An array holds NaN or infinite values."""


class InputDTypeError(NNKScopeError, TypeError):
    """An array has a dtype nnkscope cannot use (complex, object, strings) or dtypes that must agree do not."""


class TooFewPointsError(NNKScopeError, ValueError):
    """There are not enough points for the requested number of neighbours."""


class InvalidParameterError(NNKScopeError, ValueError):
    """A parameter value is out of range or of an unknown kind."""


class InputRangeError(NNKScopeError, ValueError):
    """Values so large or small that squared distances would overflow or underflow float64."""


class ZeroVectorError(NNKScopeError, ValueError):
    """All-zero rows were given to the cosine kernel, for which they have no direction."""


class DuplicatePointsError(NNKScopeError, ValueError):
    """Identical points were found and ``duplicates="error"`` asked to refuse them."""


class FileFormatError(NNKScopeError, OSError):
    """A file is missing, unreadable, truncated or not in the expected layout."""


class MissingDependencyError(NNKScopeError, ImportError):
    """An optional package a feature needs is not installed (the message names the pip command)."""


class SchedulerConnectionError(NNKScopeError, ConnectionError):
    """The Dask scheduler given by address could not be reached (the message says how to start or find one)."""
