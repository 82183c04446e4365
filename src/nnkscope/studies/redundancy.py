"""Channel redundancy from channel-wise NNK graphs (research notes §6, R5).

For a layer with C channels, channel c of point i is the sub-vector ``x_i^(c)`` (its spatial map).  One NNK graph
per channel (cosine kernel, the same k) gives ``N_c(i)``, the NNK neighbours of i seen through channel c alone.

* overlap of channels c, c' at i: Jaccard ``|N_c(i) ∩ N_c'(i)| / |N_c(i) ∪ N_c'(i)|``; the layer's overlap is the
  mean over points of the mean over channel pairs;
* redundancy index ``R(i) = 1 - |∪_c N_c(i)| / sum_c |N_c(i)|`` (0: channels pick disjoint neighbours; 1 - 1/C: all
  pick the same), averaged over points;
* permutation baseline: the same measures after relabelling the nodes of each channel's graph by its own seeded
  random permutation (channels then agree only by chance);
* ``union_ratio``: ``|∪_c N_c(i)|`` over the number of NNK neighbours of i in the whole (concatenated) layer.

A channel whose map is all zero at point i (a dead ReLU channel there) has no direction there: i is left out of
that channel's graph and out of every pair involving that channel at i (research notes §17.7); the share of
(point, channel) entries that are active is reported.  Points whose maps point in the same direction are
duplicates under the cosine kernel: they are dropped as each other's candidates (``duplicates="drop"``, the
CW-DeepNNK ``ignore_identical`` rule; §17.11), so index tie-breaking cannot make two channels agree.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import TooFewPointsError

__all__ = ["channel_supports", "channel_overlap", "permute_supports", "layer_redundancy"]


def _support_matrix(rows: np.ndarray, candidates: np.ndarray, theta: np.ndarray, n: int) -> sp.csr_array:
    """(n, n) 0/1 matrix: row rows[i] marks the NNK neighbours (global indices) of that point."""
    nz = theta > 0
    r = np.repeat(rows, nz.sum(1))
    c = rows[candidates[nz]] if len(rows) else np.zeros(0, np.int64)
    return sp.csr_array((np.ones(len(r)), (r, c)), shape=(n, n))


def channel_supports(maps: list[np.ndarray], k: int = 25) -> tuple[list[sp.csr_array], np.ndarray]:
    """NNK neighbour sets of every point in every channel: ``(supports, active)``.

    ``maps``: one (N, m) array per channel.  ``supports[c]`` is an (N, N) 0/1 CSR matrix (row i = N_c(i));
    ``active`` is the (C, N) mask of points whose channel map is not all zero.  A channel active at k + 1 points
    or fewer gets no graph (all its rows empty).
    """
    from ..engine.pipeline import nnk_graph

    n = len(maps[0])
    supports, active = [], np.zeros((len(maps), n), bool)
    for c, M in enumerate(maps):
        M = np.asarray(M, np.float64).reshape(n, -1)
        live = np.linalg.norm(M, axis=1) > 0
        active[c] = live
        rows = np.flatnonzero(live)
        if len(rows) <= k + 1:
            active[c] = False
            supports.append(sp.csr_array((n, n)))
            continue
        try:
            G = nnk_graph(M[live], k, kernel="cosine", duplicates="drop", progress=False)
        except TooFewPointsError:  # so many identical directions that k distinct candidates do not exist
            G = nnk_graph(M[live], k, kernel="cosine", duplicates="keep", progress=False)
        supports.append(_support_matrix(rows, G.candidates, G.theta, n))
    return supports, active


def permute_supports(supports, active, seed: int = 0):
    """Each channel's graph with its nodes relabelled by its own seeded permutation (the chance baseline)."""
    rng = np.random.default_rng(seed)
    out_s, out_a = [], np.zeros_like(active)
    for c, S in enumerate(supports):
        perm = rng.permutation(S.shape[0])
        P = sp.csr_array((np.ones(len(perm)), (perm, np.arange(len(perm)))), shape=S.shape)  # P[perm[i], i] = 1
        out_s.append((P @ S @ P.T).tocsr())
        out_a[c, perm] = active[c]
    return out_s, out_a


def channel_overlap(supports, active) -> dict:
    """Layer overlap, redundancy index and the per-channel mean overlap with the other channels.

    Returns ``{"overlap", "redundancy", "channel_overlap" (C,), "pairs" (C, C) mean Jaccard per channel pair}``;
    a point contributes to a pair only where both channels are active and at least one has a neighbour.

    Examples
    --------
    >>> S = sp.csr_array(np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]]))
    >>> T = sp.csr_array(np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]]))
    >>> r = channel_overlap([S, T], np.ones((2, 3), bool))
    >>> round(r["overlap"], 4), round(r["redundancy"], 4)        # Jaccards 1/2, 1, 0; R 1/3, 1/2, 0
    (0.5, 0.2778)
    """
    C, n = active.shape
    sizes = np.array([np.diff(S.indptr) for S in supports], np.float64)  # (C, N)
    pair_sum = np.zeros((C, C))
    pair_cnt = np.zeros((C, C))
    node_sum = np.zeros(n)
    node_cnt = np.zeros(n)
    for a in range(C):
        for b in range(a + 1, C):
            inter = np.asarray(supports[a].multiply(supports[b]).sum(axis=1)).ravel()
            union = sizes[a] + sizes[b] - inter
            ok = active[a] & active[b] & (union > 0)
            jac = np.divide(inter, union, out=np.zeros(n), where=ok)
            pair_sum[a, b] = pair_sum[b, a] = jac[ok].sum()
            pair_cnt[a, b] = pair_cnt[b, a] = ok.sum()
            node_sum += np.where(ok, jac, 0.0)
            node_cnt += ok
    has = node_cnt > 0
    overlap = float((node_sum[has] / node_cnt[has]).mean()) if has.any() else float("nan")
    union_all = sp.csr_array((n, n))
    for a in range(C):
        union_all = union_all.maximum(supports[a].multiply(active[a][:, None]).tocsr())
    total = (sizes * active).sum(0)
    R = np.divide(np.diff(union_all.tocsr().indptr), total, out=np.ones(n), where=total > 0)
    pairs = np.divide(pair_sum, pair_cnt, out=np.full((C, C), np.nan), where=pair_cnt > 0)
    # a channel's mean Jaccard with the other channels (over the pairs that have any shared active point)
    has_pair = pair_cnt > 0
    n_pairs = has_pair.sum(1)
    per_channel = np.divide(np.where(has_pair, pairs, 0.0).sum(1), n_pairs, out=np.full(C, np.nan),
                            where=n_pairs > 0)
    return {"overlap": overlap, "redundancy": float((1 - R[total > 0]).mean()) if (total > 0).any() else np.nan,
            "channel_overlap": per_channel, "pairs": pairs, "union_sizes": np.diff(union_all.tocsr().indptr)}


def layer_redundancy(maps: list[np.ndarray], k: int = 25, *, seed: int = 0) -> dict:
    """Overlap, redundancy and their permutation baselines for one layer's channel maps, the union size relative
    to the full layer's NNK degree, the share of active (point, channel) entries, and per-channel overlaps."""
    import warnings

    from ..engine.pipeline import nnk_graph

    supports, active = channel_supports(maps, k)
    real = channel_overlap(supports, active)
    base = channel_overlap(*permute_supports(supports, active, seed))
    full = np.concatenate([np.asarray(M, np.float64).reshape(len(M), -1) for M in maps], axis=1)
    live = np.linalg.norm(full, axis=1) > 0
    union_ratio = np.nan
    if live.sum() > k + 1:
        G = nnk_graph(full[live], k, kernel="cosine", duplicates="keep", progress=False)
        deg = G.n_neighbors
        union_ratio = float(np.mean(real["union_sizes"][live] / np.maximum(deg, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = real["overlap"] / base["overlap"] if base["overlap"] > 0 else np.inf
    return {"n_channels": len(maps), "overlap": real["overlap"], "overlap_baseline": base["overlap"],
            "overlap_ratio": float(ratio), "redundancy": real["redundancy"], "redundancy_baseline": base["redundancy"],
            "union_ratio": union_ratio, "active_fraction": float(active.mean()),
            "dead_channels": int((~active.any(1)).sum()), "channel_overlap": real["channel_overlap"]}
