"""Geometric stability across training runs (research notes §15, R14).

The same evaluation points embedded by R runs (seeds) of one model: per-sample NNK metrics (NNK degree, polytope
diameter) and NNK graphs per run, then for every pair of runs

* distribution-level: Kolmogorov-Smirnov distance between the runs' metric distributions (small = stable);
* sample-level: Spearman correlation of each sample's metric across the two runs, and the same with one run's
  samples shuffled (the chance level, ~0);
* graph-level: mean Jaccard overlap of each node's NNK neighbour set, and with a node-shuffled graph.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..engine.pipeline import nnk_graph
from ..measures.compare import neighbourhood_jaccard, shuffled
from ..measures.manifold import polytope_diameter

__all__ = ["run_metrics", "stability_table"]


def run_metrics(F: np.ndarray, k: int = 25, kernel: str = "cosine"):
    """NNK graph of one run's features and its per-sample ``nnk_degree`` and ``diameter`` (unit-norm rows)."""
    G = nnk_graph(F, k, kernel=kernel, duplicates="keep", progress=False)
    diam = polytope_diameter(F, G.candidates, G.theta, normalize=kernel == "cosine")
    return G, {"nnk_degree": G.n_neighbors.astype(float), "diameter": diam}


def stability_table(runs: dict, *, seed: int = 0):
    """One row per pair of runs from ``{run_name: (graph, metrics)}`` (as returned by :func:`run_metrics`).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(150, 5))
    >>> t = stability_table({"a": run_metrics(X, 10), "b": run_metrics(X * 2, 10)})
    >>> float(t.jaccard[0]), float(t.ks_diameter[0]), float(t.spearman_nnk_degree[0])
    (1.0, 0.0, 1.0)
    """
    import pandas as pd
    from scipy.stats import ks_2samp, spearmanr

    rng = np.random.default_rng(seed)
    rows = []
    for (ra, (Ga, ma)), (rb, (Gb, mb)) in combinations(runs.items(), 2):
        perm = rng.permutation(Ga.n_nodes)
        row = {"run_a": ra, "run_b": rb}
        for name in ma:
            row[f"ks_{name}"] = float(ks_2samp(ma[name], mb[name], method="asymp").statistic)
            row[f"spearman_{name}"] = float(spearmanr(ma[name], mb[name]).statistic)
            row[f"spearman_{name}_shuffled"] = float(spearmanr(ma[name], mb[name][perm]).statistic)
        row["jaccard"] = float(neighbourhood_jaccard(Ga, Gb).mean())
        row["jaccard_shuffled"] = float(neighbourhood_jaccard(Ga, shuffled(Gb, seed)).mean())
        row["jaccard_ratio"] = row["jaccard"] / row["jaccard_shuffled"] if row["jaccard_shuffled"] else np.inf
        rows.append(row)
    return pd.DataFrame(rows)
