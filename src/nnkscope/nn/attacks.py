"""Input and weight perturbations of a torch classifier: Gaussian noise, FGSM and PGD (L-inf and L2), relative
weight noise (optional ``[torch]`` extra).

The attacks maximise the cross-entropy of the given labels (untargeted), in eval mode, on rows of ``X`` (the
layout the models of :mod:`nnkscope.nn.models` take).  Every function returns a new float32 array or model and
leaves its inputs unchanged; ``eps = 0`` returns the inputs exactly.

* FGSM (Goodfellow et al. 2015): one step of size ``eps`` along ``sign(grad)`` (L-inf) or ``grad / |grad|_2`` (L2).
* PGD (Madry et al. 2018): ``steps`` steps of size ``step_size`` (default ``2.5 eps / steps``) along the same
  directions, each followed by the projection onto the eps-ball around the clean input (and onto ``clip``).
"""

from __future__ import annotations

import numpy as np

from .._validate import as_points
from ..errors import InputShapeError, InvalidParameterError
from .models import require_torch

__all__ = ["NORMS", "input_gradient", "fgsm", "pgd", "gaussian_noise", "perturb_weights"]

NORMS = ("linf", "l2")


def _check_eps(eps, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)) or not np.isfinite(eps):
        raise InvalidParameterError(f"{name} must be a finite number >= 0; got {eps!r}")
    if eps < 0:
        raise InvalidParameterError(f"{name} must be >= 0 (the size of the perturbation); got {eps!r}")
    return float(eps)


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise InvalidParameterError(f"norm must be one of {list(NORMS)}; got {norm!r}")
    return norm


def _check_model(model):
    torch = require_torch()
    if not isinstance(model, torch.nn.Module):
        raise InvalidParameterError(f"attacks need a differentiable torch.nn.Module; got {type(model).__name__}. "
                                    "A model without gradients (scikit-learn, a numpy function) cannot be attacked "
                                    "by FGSM/PGD: use gaussian_noise, or wrap a torch re-implementation")
    return torch


def _data(X, y):
    X = as_points(X, "X")
    y = np.asarray(y)
    if y.shape != (len(X),) or y.dtype.kind not in "iu":
        raise InputShapeError(f"y must hold one integer class per row of X ({len(X)}); got shape {y.shape}, dtype "
                              f"{y.dtype}")
    return X, y


def input_gradient(model, X, y, batch_size: int = 1024) -> np.ndarray:
    """Gradient of the summed cross-entropy with respect to each input row (eval mode), float64.

    Raises :class:`~nnkscope.errors.InvalidParameterError` when the output does not depend differentiably on the
    input (a model that detaches, runs under ``no_grad`` or is not a torch module).
    """
    torch = _check_model(model)
    X, y = _data(X, y)
    was_training = model.training
    model.eval()
    out = np.empty(X.shape, np.float64)
    try:
        for lo in range(0, len(X), batch_size):
            xb = torch.tensor(np.asarray(X[lo:lo + batch_size], np.float32), requires_grad=True)
            with torch.enable_grad():
                logits = model(xb)
                if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
                    raise InvalidParameterError(
                        "the model's output has no gradient with respect to its input (it is detached, computed "
                        "under torch.no_grad, or not a tensor): FGSM/PGD need a differentiable model")
                loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[lo:lo + batch_size],
                                                                                 dtype=torch.int64),
                                                         reduction="sum")
                (g,) = torch.autograd.grad(loss, xb)
            out[lo:lo + batch_size] = g.double().numpy()
    finally:
        model.train(was_training)
    return out


def _direction(g: np.ndarray, norm: str) -> np.ndarray:
    if norm == "linf":
        return np.sign(g)
    n = np.linalg.norm(g, axis=1, keepdims=True)
    return np.divide(g, n, out=np.zeros_like(g), where=n > 0)  # a zero gradient gives no direction: no step


def _project(x: np.ndarray, x0: np.ndarray, eps: float, norm: str) -> np.ndarray:
    d = x - x0
    if norm == "linf":
        d = np.clip(d, -eps, eps)
    else:
        n = np.linalg.norm(d, axis=1, keepdims=True)
        d = d * np.minimum(1.0, eps / np.where(n > 0, n, 1.0))
    return x0 + d


def _clip(x: np.ndarray, clip) -> np.ndarray:
    return x if clip is None else np.clip(x, clip[0], clip[1])


def fgsm(model, X, y, eps: float, *, norm: str = "linf", clip: tuple[float, float] | None = None) -> np.ndarray:
    """Fast gradient (sign) method: ``x + eps * sign(grad)`` (L-inf) or ``x + eps * grad / |grad|_2`` (L2).

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> with torch.no_grad(): _ = m.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]])); _ = m.bias.zero_()
    >>> fgsm(m, np.array([[0.5, 0.0]]), np.array([0]), 0.1).tolist()   # away from class 0, towards class 1
    [[0.4000000059604645, 0.10000000149011612]]
    """
    eps = _check_eps(eps)
    norm = _check_norm(norm)
    X, y = _data(X, y)
    if eps == 0:
        _check_model(model)
        return np.array(X, np.float32)
    x0 = X.astype(np.float64)
    return _clip(x0 + eps * _direction(input_gradient(model, X, y), norm), clip).astype(np.float32)


def pgd(model, X, y, eps: float, *, norm: str = "linf", steps: int = 10, step_size: float | None = None,
        random_start: bool = False, seed: int = 0, clip: tuple[float, float] | None = None) -> np.ndarray:
    """Projected gradient descent on the loss (ascent), inside the ``eps``-ball of ``norm`` around each row.

    ``random_start`` begins at a seeded uniform point of the L-inf ball (or a random direction at a uniform radius
    of the L2 ball); one step of size ``eps`` from the clean input is FGSM.
    """
    eps = _check_eps(eps)
    norm = _check_norm(norm)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidParameterError(f"steps must be a positive integer; got {steps!r}")
    alpha = 2.5 * eps / steps if step_size is None else _check_eps(step_size, "step_size")
    X, y = _data(X, y)
    if eps == 0:
        _check_model(model)
        return np.array(X, np.float32)
    x0 = X.astype(np.float64)
    x = x0.copy()
    if random_start:
        r = np.random.default_rng(seed)
        if norm == "linf":
            x = x0 + r.uniform(-eps, eps, size=x0.shape)
        else:
            d = r.normal(size=x0.shape)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            x = x0 + d * eps * r.random((len(x0), 1)) ** (1.0 / x0.shape[1])
        x = _clip(x, clip)
    for _ in range(steps):
        x = x + alpha * _direction(input_gradient(model, x, y), norm)
        x = _clip(_project(x, x0, eps, norm), clip)
    return x.astype(np.float32)


def gaussian_noise(X, std: float, seed: int = 0, *, clip: tuple[float, float] | None = None) -> np.ndarray:
    """``X + N(0, std^2)`` per entry, seeded (``std = 0``: ``X`` unchanged).

    Examples
    --------
    >>> gaussian_noise(np.ones((2, 3)), 0.0).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    std = _check_eps(std, "std")
    X = as_points(X, "X")
    if std == 0:
        return np.array(X, np.float32)
    noise = np.random.default_rng(seed).normal(scale=std, size=X.shape)
    return _clip(X.astype(np.float64) + noise, clip).astype(np.float32)


def perturb_weights(model, relative: float, seed: int = 0):
    """A copy of ``model`` whose every parameter tensor ``w`` gets Gaussian noise of standard deviation
    ``relative * rms(w)`` (relative noise: each tensor perturbed in proportion to its own scale).  Buffers
    (BatchNorm statistics) are kept.  ``relative = 0`` returns an exact copy.
    """
    import copy

    torch = _check_model(model)
    relative = _check_eps(relative, "relative")
    out = copy.deepcopy(model)
    if relative == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            rms = p.detach().pow(2).mean().sqrt()
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * relative * rms)
    return out
