"""Uncertainty of a similarity value: a bootstrap interval over points and a permutation p-value against chance.

:func:`similarity_ci` returns the value of a registered measure between ``A`` and ``B`` with

* ``ci_low``, ``ci_high`` -- the percentile bootstrap over points (seeded, ``n_boot`` resamples, ``level``);
* ``p_value`` -- "is the similarity above chance?": the rows of ``B`` are permuted, which breaks the pairing of
  points and keeps both geometries; ``(1 + #{s_perm >= s_obs}) / (1 + n_perm)`` (``<=`` for a distance such as
  Procrustes, whose *small* values mean similar); see :func:`~nnkscope.measures.uncertainty.permutation_test`.

Two routes, chosen by the measure:

* **coordinate measures** (CKA variants, SVCCA, PWCCA, Procrustes, RSA): the rows of ``A`` and ``B`` are resampled
  together and the measure is recomputed on each resample (repeated rows are just repeated points there: linear
  CKA of a resample is the CKA with multiplicities); the permutation test recomputes it on permuted ``B``.  Cost:
  ``n_boot + n_perm`` evaluations.
* **neighbourhood measures** with a per-point decomposition (``mutual_knn``, ``nnk_jaccard``,
  ``nnk_edge_agreement``): a resample would repeat points, and copies are each other's nearest neighbours in both
  representations, which inflates every overlap.  So the neighbour search (or the NNK graphs) is done once and
  held fixed, and the value is written as ``sum_i num_i / sum_i den_i`` over points (per-point overlap for
  mutual k-NN and Jaccard; per-node ``sum_j min`` over ``sum_j max`` of the two adjacencies for edge agreement);
  a resample reweights the points.  The interval is therefore *conditional on the neighbourhoods*: it covers which
  points were sampled, not how neighbourhoods would change in a new sample.  A permutation of ``B``'s rows is a
  relabelling of its graph (no new search).  Cost: one search or graph pair, then ``O(N k)`` per resample.

``cknna`` has neither: its masked kernels do not split over points and resamples inflate it, so its interval is
refused (its permutation test is available, by recomputation).
"""

from __future__ import annotations

import numpy as np

from ..engine.graph import NNKGraph
from ..engine.neighbors import knn
from ..errors import InvalidParameterError
from ..measures.compare import neighbourhood_jaccard
from ..measures.uncertainty import bootstrap_ci, bootstrap_weights, percentile_interval, permutation_test
from ._registry import _resolve, pair
from .neighbours import nnk_graph_of

__all__ = ["similarity_ci", "NO_INTERVAL"]

NO_INTERVAL = {"cknna": "its k-NN-masked kernels do not split over points, and resampled rows (copies are each "
                        "other's nearest neighbours) inflate it; use mutual_knn or nnk_jaccard for an interval"}


def _mutual_knn_split(A, B, k: int = 10):
    from .._validate import check_k

    k = check_k(k, len(A), extra=1)
    ia = knn(A, k, metric="cosine", duplicates="keep", progress=False).indices
    ib = knn(B, k, metric="cosine", duplicates="keep", progress=False).indices

    def shared(ib_):
        both = np.sort(np.concatenate([ia, ib_], axis=1), axis=1)
        return np.count_nonzero(np.diff(both, axis=1) == 0, axis=1) / k

    def permuted(perm):  # B's row i is B's old row perm[i]: its neighbours, renamed
        inv = np.argsort(perm)
        return shared(inv[ib[perm]])

    return shared(ib), np.ones(len(A)), lambda perm: (permuted(perm), np.ones(len(A)))


def _graph_pair(A, B, options):
    k, kernel = options.pop("k", 25), options.pop("kernel", "cosine")
    return nnk_graph_of(A, k=k, kernel=kernel, **options), nnk_graph_of(B, k=k, kernel=kernel, **options)


def _jaccard_split(A, B, **options):
    Ga, Gb = _graph_pair(A, B, options)
    ones = np.ones(Ga.n_nodes)
    return neighbourhood_jaccard(Ga, Gb), ones, lambda perm: (neighbourhood_jaccard(Ga, _relabel(Gb, perm)), ones)


def _edge_split(A, B, **options):
    Ga, Gb = _graph_pair(A, B, options)
    Wa = Ga.adjacency("max")

    def split(G):
        Wb = G.adjacency("max")
        return (np.asarray(Wa.minimum(Wb).sum(axis=1)).ravel(), np.asarray(Wa.maximum(Wb).sum(axis=1)).ravel())

    num, den = split(Gb)
    return num, den, lambda perm: split(_relabel(Gb, perm))


def _relabel(G, perm):
    """The graph of ``B[perm]``: node i of the copy is node ``perm[i]`` of ``G`` (a relabelling, no new search)."""
    from ..engine.graph import NNKGraph

    inv = np.argsort(perm)
    return NNKGraph(inv[G.candidates[perm]], G.theta[perm], G.errors[perm], G.status[perm],
                    None if G.distances is None else G.distances[perm], dict(G.params))


SPLITS = {"mutual_knn": _mutual_knn_split, "nnk_jaccard": _jaccard_split, "nnk_edge_agreement": _edge_split}


def similarity_ci(A, B, measure="linear_cka", *, n_boot: int = 200, n_perm: int = 0, level: float = 0.95,
                  seed: int = 0, **options) -> dict:
    """A similarity value with its percentile-bootstrap interval over points and, optionally, a permutation p-value.

    Parameters
    ----------
    A, B : (N, d_a), (N, d_b) arrays; row i of each is the same input.  ``nnk_jaccard`` and
        ``nnk_edge_agreement`` also take the two :class:`~nnkscope.engine.graph.NNKGraph` objects already built.
    measure : a name in :data:`~nnkscope.similarity.MEASURES` or a :class:`~nnkscope.similarity.Measure`.
    n_boot : bootstrap resamples (0: no interval, NaN bounds).
    n_perm : permutations of ``B``'s rows for the p-value (0, the default: no test, NaN).
    level : confidence level.  seed : seed of the resamples and of the permutations.
    **options : passed to the measure (e.g. ``k=``).

    Returns
    -------
    dict with ``value``, ``ci_low``, ``ci_high``, ``p_value`` (floats).  See the module notes for what the interval
    covers (neighbourhood measures: conditional on the neighbourhoods).

    Examples
    --------
    >>> r = np.random.default_rng(0); X = r.normal(size=(200, 5))
    >>> out = similarity_ci(X, X @ r.normal(size=(5, 5)) + 0.5 * r.normal(size=(200, 5)), n_boot=200, n_perm=99)
    >>> bool(out["ci_low"] <= out["value"] <= out["ci_high"]), out["p_value"]
    (True, 0.01)
    """
    m = _resolve(measure)
    graphs = isinstance(A, NNKGraph) or isinstance(B, NNKGraph)
    if graphs and m.name not in ("nnk_jaccard", "nnk_edge_agreement"):
        raise InvalidParameterError(f"{m.name} needs the two representations as arrays, not NNK graphs")
    if not graphs:
        A, B = pair(A, B)
    n = A.n_nodes if isinstance(A, NNKGraph) else len(A)
    for name, v in (("n_boot", n_boot), ("n_perm", n_perm)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InvalidParameterError(f"{name} must be an integer >= 0 (0: skip); got {v!r}")
    if n_boot and m.name in NO_INTERVAL:
        raise InvalidParameterError(f"no bootstrap interval for {m.name}: {NO_INTERVAL[m.name]} (or pass n_boot=0)")
    greater = m.higher_is_similar
    out = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    if m.name in SPLITS:
        num, den, permuted = SPLITS[m.name](A, B, **options)
        out["value"] = float(num.sum() / den.sum())
        if n_boot:
            reps = np.concatenate([(W @ num) / (W @ den) for W in bootstrap_weights(n, n_boot, seed)])
            low, high = percentile_interval(reps, level)
            out["ci_low"], out["ci_high"] = float(low[0]), float(high[0])
        if n_perm:
            rng = np.random.default_rng(seed)
            hits = 0
            for _ in range(n_perm):
                pn, pd_ = permuted(rng.permutation(n))
                s = float(pn.sum() / pd_.sum())
                hits += s >= out["value"] if greater else s <= out["value"]
            out["p_value"] = (1 + hits) / (1 + n_perm)
        return out

    def stat(a, b):
        return m.compute(a, b, **options)

    out["value"] = stat(A, B)
    if n_boot:
        out["ci_low"], out["ci_high"] = bootstrap_ci(stat, A, B, n_boot=n_boot, level=level, seed=seed)
    if n_perm:
        out["p_value"] = permutation_test(stat, A, B, n_perm, seed=seed, alternative="greater" if greater else "less")
    return out

