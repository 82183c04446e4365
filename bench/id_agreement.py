"""nnkscope's intrinsic-dimension estimators against scikit-dimension's on the same data (the table in
docs/intrinsic_dimension.md).

    python bench/id_agreement.py            # prints the markdown table
    python bench/id_agreement.py --quick    # smaller data sets, for a smoke run

Each row: one data set; for each estimator nnkscope's value, skdim's value, and the relative difference. Times are
for the whole estimate (nnkscope: faiss search + numpy; skdim: scikit-learn search + its own loops), 2 threads.
"""

from __future__ import annotations

import argparse
import time
import warnings


def _datasets(quick: bool):
    import numpy as np
    from sklearn.datasets import load_digits, make_swiss_roll

    def rotate(Y, ambient, seed):
        Q = np.linalg.qr(np.random.default_rng(seed).normal(size=(ambient, ambient)))[0]
        return Y @ Q[: Y.shape[1]]

    s = 4 if quick else 1
    r = np.random.default_rng(0)
    G = r.normal(size=(4000 // s, 4))
    yield "3-sphere in R^10", 3, rotate(G / np.linalg.norm(G, axis=1, keepdims=True), 10, 1)
    B = r.normal(size=(4000 // s, 5))
    B *= r.random((len(B), 1)) ** (1 / 5) / np.linalg.norm(B, axis=1, keepdims=True)
    yield "5-ball in R^20", 5, rotate(B, 20, 2)
    yield "swiss roll (R^3)", 2, make_swiss_roll(3000 // s, random_state=0)[0]
    Z = rotate(r.normal(size=(4000 // s, 8)), 30, 3) + 0.01 * r.normal(size=(4000 // s, 30))
    yield "8-D Gaussian in R^30 + noise 0.01", 8, Z
    yield "10-cube in R^10", 10, r.random((4000 // s, 10))
    yield "sklearn digits (64-D)", None, load_digits().data.astype(np.float64)


def _timed(f, X):
    t = time.perf_counter()
    v = f(X)
    return float(v), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-k", type=int, default=20, help="neighbours for the MLE")
    args = ap.parse_args()

    import numpy as np
    import skdim
    from threadpoolctl import threadpool_limits

    from nnkscope.measures.intrinsic import intrinsic_dimension
    from nnkscope.measures.spectral import spectral_summary

    k = args.k
    estimators = [
        ("TwoNN (MLE)", lambda X: intrinsic_dimension(X, "twonn"),
         lambda X: skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(X).dimension_),
        ("TwoNN (linear, 10 %)", lambda X: intrinsic_dimension(X, "twonn", fit="linear"),
         lambda X: skdim.id.TwoNN(method="linear", discard_fraction=0.1).fit(X).dimension_),
        (f"MLE k={k}", lambda X: intrinsic_dimension(X, "mle", k=k),
         lambda X: skdim.id.MLE().fit(X, n_neighbors=k).dimension_),
        ("PCA 90 %", lambda X: intrinsic_dimension(X, "pca", fraction=0.9),
         lambda X: skdim.id.lPCA(ver="ratio", alphaRatio=0.9).fit(X).dimension_),
        ("participation ratio", lambda X: spectral_summary(X)["participation_ratio"],
         lambda X: skdim.id.lPCA(ver="participation_ratio").fit(X).dimension_),
    ]
    intrinsic_dimension(np.random.default_rng(0).normal(size=(300, 3)))  # JIT load outside the timings
    print(f"skdim {skdim.__version__ if hasattr(skdim, '__version__') else '?'}, numpy {np.__version__}\n")
    print("| data set | N | D | true d | estimator | nnkscope | skdim | rel. diff | nnkscope s | skdim s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    with threadpool_limits(2), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skdim's log(0) warning in its unused linear-fit arrays
        for name, d, X in _datasets(args.quick):
            n_dup = len(X) - len(np.unique(X, axis=0))
            label = name + (f" ({n_dup} duplicate rows)" if n_dup else "")
            for est, ours, theirs in estimators:
                a, ta = _timed(ours, X)
                b, tb = _timed(theirs, X)
                rel = abs(a - b) / abs(b)
                worst = max(worst, rel) if not n_dup else worst
                print(f"| {label} | {len(X)} | {X.shape[1]} | {d if d else '?'} | {est} | {a:.4f} | {b:.4f} | "
                      f"{rel:.1e} | {ta:.3f} | {tb:.3f} |")
                label = ""
    print(f"\nlargest relative difference on data without duplicate rows: {worst:.1e}")


if __name__ == "__main__":
    main()
