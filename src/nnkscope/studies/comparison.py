"""Compare representations (layers, models, runs) of the same evaluation points, whatever their dimensions.

For every pair of (model, layer) feature sets: mean NNK-neighbourhood Jaccard and its node-shuffled chance level,
weighted edge agreement, NNK-degree Spearman correlation, and linear CKA as the coordinate-based baseline
(:mod:`nnkscope.measures.compare`).  Table ``compare`` has one row per ordered pair ``a < b``.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..engine.pipeline import nnk_graph
from ..measures.compare import compare_graphs, linear_cka
from ..store import RunStore

__all__ = ["compare_features"]


def compare_features(features: dict, store: RunStore, *, k: int = 25, kernel: str = "cosine", seed: int = 0,
                     progress: bool | None = False):
    """Compare every pair of ``features`` (``{(model, layer): (N, d) array}``, same N rows) into table ``compare``.

    Pairs already in the store are skipped (resume).  Returns the table.

    Examples
    --------
    >>> import tempfile
    >>> X = np.random.default_rng(0).normal(size=(150, 6))
    >>> store = RunStore(tempfile.mkdtemp() + "/run")
    >>> t = compare_features({("m", "a"): X, ("m", "b"): np.c_[X, np.zeros((150, 3))]}, store, k=10)
    >>> float(t.jaccard[0]), int(t.a_dim[0]), int(t.b_dim[0])   # the same geometry in 9 dimensions
    (1.0, 6, 9)
    """
    import pandas as pd

    keys = list(features)
    graphs = {}
    for a, b in combinations(keys, 2):
        if store.has("compare", a_model=a[0], a_layer=a[1], b_model=b[0], b_layer=b[1]):
            continue
        for key in (a, b):
            if key not in graphs:
                graphs[key] = nnk_graph(features[key], k, kernel=kernel, duplicates="keep", progress=progress)
        row = compare_graphs(graphs[a], graphs[b], seed=seed)
        row["linear_cka"] = linear_cka(features[a], features[b])
        row["a_dim"], row["b_dim"] = int(np.shape(features[a])[1]), int(np.shape(features[b])[1])
        store.write("compare", pd.DataFrame([row]), a_model=a[0], a_layer=a[1], b_model=b[0], b_layer=b[1])
    return store.read("compare")
