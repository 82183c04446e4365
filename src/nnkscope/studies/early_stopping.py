"""Generalisation without a validation set: DeepNNK leave-one-out monitoring and CW-DeepNNK channel freezing.

Both are training callbacks (``cb(epoch, model)``, returning ``True`` to stop), so they plug into
:func:`nnkscope.nn.models.train_classifier` or any loop.

* :class:`DeepNNKMonitor` -- the NNK leave-one-out (LOO) error of a layer's training features at each check
  (Jiang/Shekkizhar & Ortega, DeepNNK), next to weighted kNN on the same candidates; optionally stops when it has not
  improved for ``patience`` checks and restores the best weights.
* :class:`ChannelwiseEarlyStopping` -- CW-DeepNNK: each channel of the last conv layer has its own LOO error on its
  own feature map; a channel whose error has not improved for ``patience`` checks is frozen at its best weights
  (held there after every optimiser step, since Adam's moments move weights even with a zero gradient); training
  stops when every channel is frozen.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from ..measures.interpolation import leave_one_out

__all__ = ["loo_error", "DeepNNKMonitor", "ChannelwiseEarlyStopping"]


def loo_error(F: np.ndarray, y: np.ndarray, k: int = 25, kernel: str = "cosine") -> dict:
    """NNK and weighted-kNN leave-one-out errors of features ``F`` with labels ``y``.

    Under the cosine kernel an all-zero feature row has no direction (a dead ReLU map): such points are left out
    of the graph and counted as errors (the features carry nothing about them).

    Examples
    --------
    >>> F = np.r_[np.eye(2)[[0] * 5 + [1] * 5] + 0.01 * np.arange(10)[:, None], np.zeros((1, 2))]
    >>> loo_error(F, np.r_[[0] * 5 + [1] * 5, 1], k=3)["loo_error_nnk"]
    0.09090909090909091
    """
    F = np.asarray(F, np.float64).reshape(len(F), -1)
    y = np.asarray(y)
    live = np.ones(len(F), bool) if kernel != "cosine" else np.linalg.norm(F, axis=1) > 0
    dead = int((~live).sum())
    if live.sum() < 3:  # (nearly) every map is zero: the channel says nothing about any point
        return {"loo_error_nnk": 1.0, "loo_error_wknn": 1.0, "mean_nnk_degree": float("nan"), "dead_rows": dead}
    r = leave_one_out(F[live], y[live], k=min(k, int(live.sum()) - 2), kernel=kernel, check_class_sizes=False,
                      progress=False)
    out = {"loo_error_nnk": (r.hard_error("nnk").sum() + dead) / len(F),
           "loo_error_wknn": (r.hard_error("kernel").sum() + dead) / len(F),
           "mean_nnk_degree": float(r.interpolation.n_neighbors.mean()), "dead_rows": dead}
    return {k_: float(v) if k_ != "dead_rows" else v for k_, v in out.items()}


class DeepNNKMonitor:
    """Record the NNK LOO error of ``features(model, X)`` every ``every`` epochs; with ``patience``, stop early.

    ``history`` holds one dict per check (epoch, NNK and weighted-kNN LOO errors, NNK degree); ``best_epoch`` the
    check with the lowest NNK LOO error, whose weights are restored on stopping when ``restore_best``.

    Examples
    --------
    >>> import torch
    >>> X = np.r_[np.eye(2)[[0] * 6 + [1] * 6]] + 0.01 * np.arange(12)[:, None]; y = np.repeat([0, 1], 6)
    >>> net = torch.nn.Linear(2, 2)
    >>> feats = lambda m, X_: m(torch.as_tensor(X_, dtype=torch.float32)).detach().numpy()
    >>> mon = DeepNNKMonitor(X, y, feats, k=3)
    >>> mon(1, net), len(mon.history)
    (False, 1)
    """

    def __init__(self, X, y, features: Callable, *, k: int = 25, every: int = 1, patience: int | None = None,
                 restore_best: bool = True, extra: Callable | None = None):
        self.X, self.y, self.features, self.k, self.every = X, np.asarray(y), features, k, every
        self.patience, self.restore_best, self.extra = patience, restore_best, extra
        self.history: list[dict] = []
        self.best, self.best_epoch, self._best_state, self._since = np.inf, None, None, 0
        self.stopped_epoch = None

    def __call__(self, epoch: int, model) -> bool:
        if epoch % self.every:
            return False
        row = {"epoch": epoch, **loo_error(self.features(model, self.X), self.y, self.k)}
        if self.extra is not None:
            row.update(self.extra(model))
        self.history.append(row)
        if row["loo_error_nnk"] < self.best:
            self.best, self.best_epoch, self._since = row["loo_error_nnk"], epoch, 0
            self._best_state = copy.deepcopy(model.state_dict()) if self.patience else None
            return False
        self._since += 1
        if self.patience is not None and self._since >= self.patience:
            if self.restore_best:
                model.load_state_dict(self._best_state)
            self.stopped_epoch = epoch
            return True
        return False


class ChannelwiseEarlyStopping:
    """CW-DeepNNK: freeze each channel at its best LOO error after ``patience`` checks without improvement.

    ``channel_features(model, X)`` returns one (N, m) array per channel (default ``model.channel_features(X)``);
    ``channel_module(model, c)`` the module holding channel c's weights (default ``model.channels[c]``).  Pass
    :meth:`after_step` to the trainer (``train_classifier(..., after_step=cb.after_step)``).

    Examples
    --------
    >>> from nnkscope.nn.models import ChannelConvNet, train_classifier
    >>> from nnkscope.nn.datasets import load_mnist1d
    >>> Xtr, ytr, _, _ = load_mnist1d(num_samples=500)
    >>> net = ChannelConvNet(40, 10, n_channels=2, width=4)
    >>> cb = ChannelwiseEarlyStopping(Xtr, ytr, k=10, patience=1)
    >>> hist = train_classifier(net, Xtr, ytr, epochs=3, callback=cb, after_step=cb.after_step)
    >>> sorted({h["channel"] for h in cb.history})
    [0, 1]
    """

    def __init__(self, X, y, *, k: int = 25, every: int = 1, patience: int = 20, channel_features=None,
                 channel_module=None):
        self.X, self.y, self.k, self.every, self.patience = X, np.asarray(y), k, every, patience
        self.channel_features = channel_features or (lambda m, X_: m.channel_features(X_))
        self.channel_module = channel_module or (lambda m, c: m.channels[c])
        self.history: list[dict] = []
        self.frozen_at: dict[int, int] = {}
        self._best: dict[int, tuple[float, int, dict]] = {}
        self._since: dict[int, int] = {}

    def __call__(self, epoch: int, model) -> bool:
        if epoch % self.every:
            return False
        feats = self.channel_features(model, self.X)
        for c, F in enumerate(feats):
            if c in self.frozen_at:
                continue
            err = loo_error(F, self.y, self.k)["loo_error_nnk"]
            self.history.append({"epoch": epoch, "channel": c, "loo_error_nnk": err})
            if c not in self._best or err < self._best[c][0]:
                state = copy.deepcopy(self.channel_module(model, c).state_dict())
                self._best[c], self._since[c] = (err, epoch, state), 0
            else:
                self._since[c] += 1
                if self._since[c] >= self.patience:
                    self.channel_module(model, c).load_state_dict(self._best[c][2])
                    self.frozen_at[c] = epoch
        return len(self.frozen_at) == len(feats)

    def after_step(self, model) -> None:
        """Hold frozen channels at their best weights (called after every optimiser step)."""
        for c in self.frozen_at:
            self.channel_module(model, c).load_state_dict(self._best[c][2])

    def best_epochs(self) -> dict[int, int]:
        return {c: b[1] for c, b in self._best.items()}
