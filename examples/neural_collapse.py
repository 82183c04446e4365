"""Reproduce neural collapse through the terminal phase of training on MNIST-1D (R12).

MLP with 4 hidden blocks of width 512 + BatchNorm, SGD (lr 0.05, momentum 0.9, weight decay 5e-4, batch 128),
lr / 10 at 1/3 and 2/3 of training. NC metrics of the last hidden layer's training features (and the classifier)
are printed at selected epochs; NC1 and the NCC mismatch (NC4) fall through the terminal phase, which starts when
the training error first reaches 0.

    python examples/neural_collapse.py                         # 350 epochs, width 512 (~8 min on 2 cores)
    python examples/neural_collapse.py --epochs 120 --width 256  # smoke version (~2 min)
"""

from __future__ import annotations

import argparse

import pandas as pd

from nnkscope.measures.collapse import neural_collapse
from nnkscope.nn.datasets import load_mnist1d
from nnkscope.nn.models import MLP, hidden_features, train_classifier

COLUMNS = ["epoch", "train_error", "nc1", "nc2_means_equinorm", "nc2_means_equiangular_std", "nc2_means_max_angle",
           "nc2_classifier_equiangular_std", "nc3", "nc4"]


def run(epochs: int = 350, width: int = 512, seed: int = 0, every: int | None = None, n_train: int | None = None,
        verbose: bool = True) -> pd.DataFrame:
    import torch

    torch.set_num_threads(1)
    X, y, _, _ = load_mnist1d()
    if n_train is not None:
        X, y = X[:n_train], y[:n_train]
    torch.manual_seed(seed)
    model = MLP(X.shape[1], width, 3, 10, batchnorm=True)
    every = every or max(1, epochs // 14)
    rows: list[dict] = []
    state = {"tpt": None}

    def measure(epoch, m):
        H = hidden_features(m, X)[-1]
        with torch.no_grad():
            err = float((m(torch.as_tensor(X)).argmax(1).numpy() != y).mean())
        first_zero = err == 0 and state["tpt"] is None
        if first_zero:
            state["tpt"] = epoch
        if epoch % every == 0 or epoch in (1, 25, epochs) or first_zero:
            W = m.head.weight.detach().double().numpy()
            b = m.head.bias.detach().double().numpy()
            row = {"epoch": epoch, "train_error": err, **neural_collapse(H, y, W=W, b=b)}
            row["tpt_start"] = first_zero
            rows.append(row)
            if verbose:
                print("  ".join(f"{c}={row[c]:.4g}" if isinstance(row[c], float) else f"{c}={row[c]}"
                                for c in COLUMNS) + ("   <- terminal phase starts" if first_zero else ""), flush=True)

    train_classifier(model, X, y, epochs=epochs, optimizer="momentum", lr=0.05, weight_decay=5e-4,
                     milestones=(epochs // 3, 2 * epochs // 3), seed=seed, callback=measure)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=350)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    df = run(a.epochs, a.width, a.seed)
    print()
    print(df[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    first = df.iloc[0]
    tpt = df[df.tpt_start]
    last = df.iloc[-1]
    ep25 = df[df.epoch == 25].iloc[0] if (df.epoch == 25).any() else first
    print("\nchecks (research notes R12):")
    if len(tpt):
        print(f"  NC1(end) < 0.7 x NC1(TPT start): {last.nc1 < 0.7 * tpt.iloc[0].nc1}")
    print(f"  NC1(end) < 0.4 x NC1(epoch {ep25.epoch}): {last.nc1 < 0.4 * ep25.nc1}")
    print(f"  NC4(end) <= 0.005: {last.nc4 <= 0.005}")
    print(f"  NC1 fell from {first.nc1:.3g} (epoch 1) to {last.nc1:.3g}")
