"""Compare representations (layers, models, runs) of the same evaluation points, whatever their dimensions.

For every pair of (model, layer) feature sets: mean NNK-neighbourhood Jaccard and its node-shuffled chance level,
weighted edge agreement, NNK-degree Spearman correlation, and linear CKA as the coordinate-based baseline
(:mod:`nnkscope.measures.compare`).  Table ``compare`` has one row per ordered pair ``a < b``.

With ``n_boot`` / ``n_perm`` (and at most ``max_n`` points) the Jaccard, edge agreement and linear CKA columns get
``<col>_ci_low``, ``<col>_ci_high`` (percentile bootstrap over points) and ``<col>_p_value`` (rows of ``b``
permuted) from :func:`nnkscope.similarity.similarity_ci`; the graph measures' intervals hold the two graphs fixed
(see there).  Above ``max_n`` points, or with both at 0, the columns are NaN.  Cost per pair: ``n_boot + n_perm``
linear-CKA evaluations (``O(N d_a d_b)`` each) and, for the graph measures, ``O(N k)`` per resample and one sparse
relabelling per permutation.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..engine.pipeline import nnk_graph
from ..measures.compare import compare_graphs, linear_cka
from ..similarity.intervals import similarity_ci
from ..store import RunStore

__all__ = ["compare_features", "pair_intervals", "INTERVAL_MEASURES"]

# compare-table column -> registry measure whose similarity_ci gives its interval and p-value
INTERVAL_MEASURES = {"jaccard": "nnk_jaccard", "edge_agreement": "nnk_edge_agreement", "linear_cka": "linear_cka"}


def pair_intervals(A, B, Ga, Gb, *, n_boot: int, n_perm: int, seed: int = 0, max_n: int = 2000) -> dict:
    """``<col>_ci_low``, ``<col>_ci_high``, ``<col>_p_value`` of the compare-table columns for one pair (NaN when
    switched off or above ``max_n`` points)."""
    out = {}
    on = (n_boot or n_perm) and len(A) <= max_n
    for col, name in INTERVAL_MEASURES.items():
        if on:
            a, b = (Ga, Gb) if name.startswith("nnk") else (A, B)
            r = similarity_ci(a, b, name, n_boot=n_boot, n_perm=n_perm, seed=seed)
        else:
            r = {"ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
        out.update({f"{col}_ci_low": r["ci_low"], f"{col}_ci_high": r["ci_high"], f"{col}_p_value": r["p_value"]})
    return out


def compare_features(features: dict, store: RunStore, *, k: int = 25, kernel: str = "cosine", seed: int = 0,
                     progress: bool | None = False, n_boot: int = 0, n_perm: int = 0, max_n: int = 2000,
                     executor=None):
    """Compare every pair of ``features`` (``{(model, layer): (N, d) array}``, same N rows) into table ``compare``.

    Pairs already in the store are skipped (resume).  Returns the table.  ``n_boot``, ``n_perm``, ``max_n``:
    intervals and p-values (module notes).  Each pair is a unit (:func:`~nnkscope.studies.common.run_units`): in
    this process, or on ``executor``'s workers, which read the features from the run folder (saved there once,
    removed after) and build each NNK graph their pairs need once.

    Examples
    --------
    >>> import tempfile
    >>> X = np.random.default_rng(0).normal(size=(150, 6))
    >>> store = RunStore(tempfile.mkdtemp() + "/run")
    >>> t = compare_features({("m", "a"): X, ("m", "b"): np.c_[X, np.zeros((150, 3))]}, store, k=10)
    >>> float(t.jaccard[0]), int(t.a_dim[0]), int(t.b_dim[0])   # the same geometry in 9 dimensions
    (1.0, 6, 9)
    """
    import shutil
    from pathlib import Path

    from ..executor import is_inline
    from ..io import write_npy
    from .common import run_units

    keys = list(features)
    todo = [{"a_model": a[0], "a_layer": a[1], "b_model": b[0], "b_layer": b[1]} for a, b in combinations(keys, 2)
            if not store.has("compare", a_model=a[0], a_layer=a[1], b_model=b[0], b_layer=b[1])]
    cfg = {"keys": [list(key) for key in keys], "k": k, "kernel": kernel, "seed": seed, "n_boot": n_boot,
           "n_perm": n_perm, "max_n": max_n, "paths": []}
    spill = None
    if todo and not is_inline(executor):  # workers read the features from the run folder
        spill = Path(store.root) / ".features" / "compare"
        cfg["paths"] = [str(write_npy(spill / f"{i}.npy", np.asarray(features[key]))) for i, key in enumerate(keys)]
    try:
        run_units(_pair_unit, _spilled, cfg, store, todo, executor=executor, progress=progress, desc="pairs",
                  shared={"arrays": features, "graphs": {}})
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
    return store.read("compare")


def _spilled(cfg: dict) -> dict:
    """On a worker: the features saved in the run folder (memory-mapped), by key; graphs filled as pairs need."""
    return {"arrays": {tuple(key): np.load(path, mmap_mode="r") for key, path in zip(cfg["keys"], cfg["paths"],
                                                                                      strict=True)},
            "graphs": {}}


def _pair_unit(cfg: dict, store: RunStore, shared: dict, a_model: str, a_layer: str, b_model: str,
               b_layer: str) -> None:
    import pandas as pd

    a, b = (a_model, a_layer), (b_model, b_layer)
    features, graphs = shared["arrays"], shared["graphs"]
    for key in (a, b):
        if key not in graphs:
            graphs[key] = nnk_graph(np.asarray(features[key]), cfg["k"], kernel=cfg["kernel"], duplicates="keep",
                                    progress=False)
    A, B = np.asarray(features[a]), np.asarray(features[b])
    row = compare_graphs(graphs[a], graphs[b], seed=cfg["seed"])
    row["linear_cka"] = linear_cka(A, B)
    row["a_dim"], row["b_dim"] = int(A.shape[1]), int(B.shape[1])
    row.update(pair_intervals(A, B, graphs[a], graphs[b], n_boot=cfg["n_boot"], n_perm=cfg["n_perm"],
                              seed=cfg["seed"], max_n=cfg["max_n"]))
    store.write("compare", pd.DataFrame([row]), a_model=a_model, a_layer=a_layer, b_model=b_model, b_layer=b_layer)
