"""Offline datasets: scikit-learn digits, MNIST-1D generated locally, class-balanced subsampling.

Nothing here downloads: MNIST-1D is *generated* with ``mnist1d.data.make_dataset`` (its ``get_dataset`` would try to
fetch a pickle), so it needs the optional ``mnist1d`` package.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidParameterError

__all__ = ["load_digits", "digits_split", "load_mnist1d", "per_class_subset"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as float32 features in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def digits_split(test_size: float = 0.3, seed: int = 0):
    """Raw-pixel digits (0-16), stratified train/test split: ``X_train, X_test, y_train, y_test``.

    The split used by the digits reproductions (research notes R1, R6).
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    X, y = _load(return_X_y=True)
    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)


def load_mnist1d(seed: int = 42, num_samples: int = 5000, train_split: float = 0.8):
    """Generate MNIST-1D (length-40 signals, 10 classes) offline; returns ``X_train, y_train, X_test, y_test``.

    The defaults reproduce the package's standard split (4,000 train / 1,000 test, seed 42).
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("MNIST-1D needs the optional package: pip install mnist1d") from exc
    args = get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    args.train_split = train_split
    data = make_dataset(args)
    return (np.asarray(data["x"], np.float32), np.asarray(data["y"], np.int64),
            np.asarray(data["x_test"], np.float32), np.asarray(data["y_test"], np.int64))


def per_class_subset(y: np.ndarray, n_per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n_per_class`` samples drawn (seeded, without replacement) from every class."""
    r = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < n_per_class:
            raise InvalidParameterError(f"class {c} has {len(idx)} samples; fewer than n_per_class={n_per_class}")
        out.append(r.choice(idx, size=n_per_class, replace=False))
    return np.sort(np.concatenate(out))
