"""The measure registry: one :class:`Measure` per name, :func:`similarity` and :func:`similarity_matrix`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .._validate import as_points
from ..errors import InputShapeError, InvalidParameterError

__all__ = ["Measure", "MEASURES", "INVARIANCES", "register", "similarity", "similarity_matrix", "pair"]

INVARIANCES = frozenset({"translation", "isotropic_scaling", "orthogonal", "invertible_linear"})


def _is_path(x) -> bool:
    from ..io import RowSource

    return isinstance(x, (str, os.PathLike, RowSource))


def points(X, name: str) -> np.ndarray:
    """One representation as (N, d) points, refusing a constant one (every row equal: no geometry to compare)."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, without importing torch
        X = X.detach().cpu().numpy()
    X = as_points(X, name)
    if len(X) > 1 and not (X != X[0]).any():
        raise InvalidParameterError(f"{name} is constant (all {len(X)} rows are equal): it has no geometry to "
                                    "compare. Check that the layer was captured (not a dead or saturated layer)")
    return X


def pair(A, B, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate two representations of the same points: 2-D, finite, not constant, equal row counts."""
    A, B = points(A, "A"), points(B, "B")
    if len(A) != len(B):
        raise InputShapeError(f"A and B must describe the same points (row i of A and of B is the same input); got "
                              f"{len(A)} and {len(B)} rows. Subset both to the shared inputs first")
    if len(A) < min_rows:
        raise InputShapeError(f"need at least {min_rows} points; got {len(A)}")
    return A, B


@dataclass(frozen=True)
class Measure:
    """A representation similarity measure and what it promises.

    Attributes
    ----------
    name : registry key.
    higher_is_similar : True for similarities (CKA, CCA, ...), False for distances (Procrustes).
    invariances : subset of ``{"translation", "isotropic_scaling", "orthogonal", "invertible_linear"}`` under which
        the value does not change when either representation is transformed (with the default options).
    same_points : the two representations must hold the same N inputs, row by row.
    range : ``(low, high)`` of the possible values.
    identity : the value on ``(X, X)`` -- its maximum for similarities, 0 for distances.
    reference : where the definition comes from.
    prepare : optional per-representation step (an NNK graph, say) that :func:`similarity_matrix` runs once per
        layer instead of once per pair; the measure accepts its result in place of the array.
    """

    name: str
    fn: Callable
    higher_is_similar: bool
    invariances: frozenset
    same_points: bool
    range: tuple
    identity: float
    reference: str
    prepare: Callable | None = None

    def __post_init__(self):
        if not self.invariances <= INVARIANCES:
            raise InvalidParameterError(f"unknown invariances {sorted(self.invariances - INVARIANCES)}")

    def compute(self, A, B, **options) -> float:
        """The measure between representations ``A`` (N, d_a) and ``B`` (N, d_b)."""
        return float(self.fn(A, B, **options))

    __call__ = compute


MEASURES: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    MEASURES[measure.name] = measure
    return measure


def _resolve(measure) -> Measure:
    if isinstance(measure, Measure):
        return measure
    if measure not in MEASURES:
        raise InvalidParameterError(f"unknown similarity measure {measure!r}; choose one of {sorted(MEASURES)}")
    return MEASURES[measure]


def similarity(A, B, measure: str | Measure = "linear_cka", **options) -> float:
    """Similarity (or distance) between two representations of the same inputs by a registered measure.

    Parameters
    ----------
    A, B : (N, d_a) and (N, d_b) arrays; row i of each is the same input.  The CKA measures also take paths to
        ``.npy`` files or :class:`nnkscope.io.RowSource` objects and then stream (:func:`streaming_cka`).
    measure : a name in :data:`MEASURES` or a :class:`Measure`.
    **options : passed to the measure (e.g. ``k=`` for the neighbour measures).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> round(similarity(X, 2 * X + 1, "linear_cka"), 12), round(similarity(X, X, "procrustes"), 6)
    (1.0, 0.0)
    """
    return _resolve(measure).compute(A, B, **options)


def similarity_matrix(layers_a: Mapping, layers_b: Mapping | None = None, measure: str | Measure = "linear_cka",
                      **options):
    """Layer-by-layer table of a measure between two models' layers (rows: ``layers_a``, columns: ``layers_b``).

    ``layers_b=None`` compares ``layers_a`` with itself.  Per-layer work (e.g. the NNK graphs of ``nnk_jaccard``)
    is done once per layer, not once per pair.

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(80, 4))
    >>> t = similarity_matrix({"a1": X, "a2": X @ r.normal(size=(4, 4))}, {"b": 3 * X}, "linear_cka")
    >>> t.shape, round(float(t.loc["a1", "b"]), 12)
    ((2, 1), 1.0)
    """
    import pandas as pd

    m = _resolve(measure)
    layers_b = layers_a if layers_b is None else layers_b
    for name, layers in (("layers_a", layers_a), ("layers_b", layers_b)):
        if not isinstance(layers, Mapping) or not layers:
            raise InvalidParameterError(f"{name} must be a non-empty dict {{layer name: (N, d) features}}")
    prepared: dict = {}

    def get(side: str, key):
        if (side, key) not in prepared:
            X = (layers_a if side == "a" else layers_b)[key]
            prepared[side, key] = m.prepare(X, **options) if m.prepare is not None and not _is_path(X) else X
        return prepared[side, key]

    if layers_b is layers_a:
        get = (lambda g: lambda side, key: g("a", key))(get)
    table = pd.DataFrame(index=pd.Index(list(layers_a), name="a"), columns=pd.Index(list(layers_b), name="b"),
                         dtype=float)
    for ka in layers_a:
        for kb in layers_b:
            table.loc[ka, kb] = m.compute(get("a", ka), get("b", kb), **options)
    return table
