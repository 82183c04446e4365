"""Small PyTorch models and a reproducible CPU trainer (optional ``[torch]`` extra).

Used by the class-geometry reproductions and, later, by the studies. ``torch`` is imported lazily so the rest of
nnkscope works without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import InvalidParameterError

__all__ = ["require_torch", "MLP", "train_classifier", "hidden_features"]


def require_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("this feature needs PyTorch: pip install torch==2.13.0 && pip install 'nnkscope[torch]'") \
            from exc
    return torch


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


def train_classifier(model, X: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int = 128,
                     optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
                     milestones: Sequence[int] = (), gamma: float = 0.1, seed: int = 0,
                     callback: Callable | None = None) -> list[dict]:
    """Cross-entropy training on CPU, seeded; returns per-epoch ``{"epoch", "loss", "train_error"}``.

    ``callback(epoch, model)`` runs after every epoch (model in eval mode during the call).
    """
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
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(Xt), generator=gen)
        total = 0.0
        for lo in range(0, len(Xt), batch_size):
            idx = perm[lo:lo + batch_size]
            if len(idx) < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
                continue  # BatchNorm cannot normalise a batch of one
            opt.zero_grad()
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        model.eval()
        with torch.no_grad():
            err = float((model(Xt).argmax(1) != yt).float().mean())
        history.append({"epoch": epoch, "loss": total / len(Xt), "train_error": err})
        if callback is not None:
            callback(epoch, model)
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
