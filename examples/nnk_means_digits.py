"""NNK-Means vs k-means summaries of scikit-learn digits at equal dictionary size (R6 in the research notes).

70/30 stratified split (seed 0). NNK-Means: k-means++ seeds + one Lloyd step, 10 nearest atoms per code, exact
NNK codes (cosine kernel), 10 rounds; prediction = NNK interpolation of the atoms' soft labels. k-means: 10 inits,
each centroid labelled by its majority class, prediction = nearest centroid's label.

    python examples/nnk_means_digits.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nnkscope.measures.nnk_means import NNKMeans
from nnkscope.nn.datasets import digits_split


def run(sizes=(20, 50, 100), verbose: bool = True) -> pd.DataFrame:
    from sklearn.cluster import KMeans

    Xtr, Xte, ytr, yte = digits_split(test_size=0.3, seed=0)
    rows = []
    for M in sizes:
        nm = NNKMeans(n_components=M, n_nonzero=10, n_iter=10, seed=0).fit(Xtr, ytr)
        km = KMeans(n_clusters=M, n_init=10, random_state=0).fit(Xtr)
        majority = np.array([np.bincount(ytr[km.labels_ == c], minlength=10).argmax() for c in range(M)])
        rows.append({
            "atoms": M,
            "nnk_means_accuracy": float(np.mean(nm.predict(Xte) == yte)),
            "kmeans_accuracy": float(np.mean(majority[km.predict(Xte)] == yte)),
            "nnk_means_mse": float(((nm.reconstruct(Xte) - Xte) ** 2).mean()),
            "kmeans_mse": float(((km.cluster_centers_[km.predict(Xte)] - Xte) ** 2).mean()),
        })
    table = pd.DataFrame(rows)
    if verbose:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table


if __name__ == "__main__":
    run()
