"""Self-supervised learning in plain torch: losses, small encoders, a seeded training loop, invariance per head.

* :func:`nt_xent_loss` (SimCLR's normalised-temperature cross-entropy) and :func:`vicreg_loss` (variance,
  invariance, covariance) written from their formulas, so they can be checked against a few lines of numpy;
* :func:`mlp_encoder`, :func:`cnn1d_encoder`, :func:`cnn2d_encoder` and :func:`projector_head`: the encoder (its
  output is the representation used for transfer) and the projector (its output enters the loss);
* :func:`train_ssl`: two augmented views per sample, seeded, deterministic for a given thread count;
* :func:`augmentation_invariance`: per sample and per head (encoder, projector), the NNK polytope diameter of the
  sample among its augmented copies (research notes §9: 0 = invariant, up to 2 = spread over opposite
  directions) and the mean distance between the copies (§10's augmentation spread), for any encoder/projector
  modules and any augmentation function;
* :func:`effective_rank` of a representation (§10: the projector's rank falls as augmentations get stronger).

Rows in, rows out: every module here takes ``(N, features)`` inputs, as the rest of nnkscope.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np

from .._validate import as_points
from ..engine.kernels import Kernel
from ..engine.solvers import solve_candidates
from ..errors import InputShapeError, InvalidParameterError
from ..measures.manifold import polytope_diameter
from .models import require_torch

__all__ = ["nt_xent_loss", "vicreg_loss", "LOSSES", "mlp_encoder", "cnn1d_encoder", "cnn2d_encoder",
           "projector_head", "build_encoder", "ENCODERS", "train_ssl", "embed", "augmentation_invariance",
           "orbit_diameters", "effective_rank"]

ENCODERS = ("mlp", "cnn1d", "cnn2d")


# ---------------------------------------------------------------------------------------------------------------
# losses


def nt_xent_loss(z1, z2, temperature: float = 0.5):
    """SimCLR's NT-Xent loss of two batches of projections (row i of ``z1`` and of ``z2``: two views of sample i).

    With the 2N rows ``u`` L2-normalised and ``s_ij = u_i . u_j / temperature``, every row's positive is the other
    view of its sample and its negatives the other 2N - 2 rows::

        loss = mean_i -log( exp(s_i,p(i)) / sum_{k != i} exp(s_ik) )

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(nt_xent_loss(z, z, temperature=1.0)), 4)   # log(e + 2) - 1 for orthogonal samples
    0.5514
    """
    torch = require_torch()
    _check_pair(z1, z2, min_rows=2)
    if not temperature > 0:
        raise InvalidParameterError(f"temperature must be positive; got {temperature!r}")
    n = len(z1)
    u = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = u @ u.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))  # a row is not its own negative
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return torch.nn.functional.cross_entropy(logits, positive)


def vicreg_loss(z1, z2, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0,
                gamma: float = 1.0, eps: float = 1e-4):
    """VICReg's loss (Bardes, Ponce & LeCun 2022) of two batches of projections (N, d), N >= 2.

    ``sim_coeff * mean((z1 - z2)^2)`` (invariance) ``+ std_coeff * [v(z1) + v(z2)]`` (variance: ``v(z) =
    mean_j relu(gamma - sqrt(Var z_j + eps))``, unbiased variance) ``+ cov_coeff * [c(z1) + c(z2)]`` (covariance:
    ``c(z) = sum_{j != l} C_jl^2 / d`` with ``C`` the unbiased covariance matrix).  No negatives, no normalisation.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    >>> float(vicreg_loss(z, z))   # identical views, unit-variance-or-more, uncorrelated dims
    0.0
    """
    torch = require_torch()
    _check_pair(z1, z2, min_rows=2)
    n, d = z1.shape
    invariance = torch.nn.functional.mse_loss(z1, z2)

    def variance(z):
        return torch.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z):
        zc = z - z.mean(dim=0)
        C = zc.T @ zc / (n - 1)
        return (C.pow(2).sum() - C.diagonal().pow(2).sum()) / d

    return sim_coeff * invariance + std_coeff * (variance(z1) + variance(z2)) + \
        cov_coeff * (covariance(z1) + covariance(z2))


LOSSES: dict[str, Callable] = {"nt_xent": nt_xent_loss, "vicreg": vicreg_loss}


def _check_pair(z1, z2, min_rows: int) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise InputShapeError(f"the two views must be (N, d) batches of the same shape; got {tuple(z1.shape)} and "
                              f"{tuple(z2.shape)}")
    if len(z1) < min_rows:
        raise InputShapeError(f"the loss needs at least {min_rows} samples per batch; got {len(z1)}")


# ---------------------------------------------------------------------------------------------------------------
# encoders and projector


def _block(nn, d_in: int, d_out: int, batchnorm: bool):
    return [nn.Linear(d_in, d_out)] + ([nn.BatchNorm1d(d_out)] if batchnorm else []) + [nn.ReLU()]


def mlp_encoder(d_in: int, hidden: Sequence[int] = (256,), out_dim: int = 128, *, batchnorm: bool = True):
    """``d_in -> hidden... -> out_dim``, each layer Linear (+BatchNorm) + ReLU (research notes P10: 40-256-128).

    Examples
    --------
    >>> import torch
    >>> mlp_encoder(40, [64], 16)(torch.zeros(3, 40)).shape
    torch.Size([3, 16])
    """
    nn = require_torch().nn
    layers, prev = [], d_in
    for w in [*hidden, out_dim]:
        layers += _block(nn, prev, int(w), batchnorm)
        prev = int(w)
    return nn.Sequential(*layers)


def cnn1d_encoder(length: int, channels: int = 16, out_dim: int = 128, *, batchnorm: bool = True):
    """1-D ConvNet encoder for signals: 3 x [Conv1d(k=5, pad 2) (+BN) + ReLU] with max-pool 2 after the first two,
    flattened (so positions stay visible: no global pooling) into Linear (+BN) + ReLU to ``out_dim``."""
    nn = require_torch().nn

    def conv(c_in):
        return [nn.Conv1d(c_in, channels, 5, padding=2)] + ([nn.BatchNorm1d(channels)] if batchnorm else []) + \
            [nn.ReLU()]

    return nn.Sequential(nn.Unflatten(1, (1, length)), *conv(1), nn.MaxPool1d(2), *conv(channels), nn.MaxPool1d(2),
                         *conv(channels), nn.Flatten(), *_block(nn, channels * (length // 4), out_dim, batchnorm))


def cnn2d_encoder(side: int, channels: int = 8, out_dim: int = 64, *, batchnorm: bool = True):
    """Small 2-D ConvNet encoder for square images (rows of ``side * side`` pixels): 2 x [Conv2d(3x3, stride 2,
    pad 1) (+BN) + ReLU] (channels, then 2 x channels; strided convolutions instead of pooling keep it cheap on a
    CPU), flattened into Linear (+BN) + ReLU to ``out_dim``."""
    nn = require_torch().nn

    def conv(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)] + ([nn.BatchNorm2d(c_out)] if batchnorm else []) + \
            [nn.ReLU()]

    inner = (side + 1) // 2
    flat = 2 * channels * ((inner + 1) // 2) ** 2
    return nn.Sequential(nn.Unflatten(1, (1, side, side)), *conv(1, channels), *conv(channels, 2 * channels),
                         nn.Flatten(), *_block(nn, flat, out_dim, batchnorm))


def projector_head(d_in: int, hidden: int = 128, out_dim: int = 32, *, batchnorm: bool = True):
    """SimCLR-style projector: Linear (+BN) + ReLU to ``hidden``, then Linear to ``out_dim`` (``hidden=0``: one
    Linear layer)."""
    nn = require_torch().nn
    if hidden == 0:
        return nn.Sequential(nn.Linear(d_in, out_dim))
    return nn.Sequential(*_block(nn, d_in, hidden, batchnorm), nn.Linear(hidden, out_dim))


def build_encoder(kind: str, shape: Sequence[int], *, hidden: Sequence[int] = (256,), channels: int = 16,
                  out_dim: int = 128, batchnorm: bool = True, seed: int = 0):
    """An encoder of ``kind`` (``mlp``, ``cnn1d``, ``cnn2d``) for samples of ``shape``, initialised from ``seed``."""
    torch = require_torch()
    shape = tuple(int(v) for v in shape)
    torch.manual_seed(seed)
    d_in = int(np.prod(shape))
    if kind == "mlp":
        return mlp_encoder(d_in, hidden, out_dim, batchnorm=batchnorm)
    if kind == "cnn1d":
        if len(shape) != 1:
            raise InvalidParameterError(f"encoder 'cnn1d' takes 1-D signals; the samples have shape {shape}")
        return cnn1d_encoder(shape[0], channels, out_dim, batchnorm=batchnorm)
    if kind == "cnn2d":
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InvalidParameterError(f"encoder 'cnn2d' takes square images; the samples have shape {shape}")
        return cnn2d_encoder(shape[0], channels, out_dim, batchnorm=batchnorm)
    raise InvalidParameterError(f"encoder kind must be one of {list(ENCODERS)}; got {kind!r}")


# ---------------------------------------------------------------------------------------------------------------
# training


def _augment_caller(augment: Callable) -> Callable:
    """``augment(x, generator)``, or ``augment(x)`` for a function that takes one argument (then the global torch
    RNG, seeded by the caller, drives it)."""
    if not callable(augment):
        raise InvalidParameterError(f"augment must be callable as augment(x, generator) -> x'; got {augment!r}")
    try:
        params = [p for p in inspect.signature(augment).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):  # builtins without a signature
        params = [None, None]
    if len(params) >= 2 or any(p is not None and p.kind == p.VAR_POSITIONAL for p in params):
        return augment
    return lambda x, generator: augment(x)


def _as_rows(X, name: str = "X"):
    torch = require_torch()
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    return torch.as_tensor(as_points(X, name).astype(np.float32))


def _dry_run(encoder, projector, X, augment, name: str) -> None:
    """One eval-mode pass of two augmented samples: shape mistakes surface before any training."""
    torch = require_torch()
    was = (encoder.training, projector.training if projector is not None else False)
    encoder.eval()
    if projector is not None:
        projector.eval()
    try:
        with torch.no_grad():
            a = augment(X[:2].clone(), torch.Generator().manual_seed(0))
            if tuple(a.shape) != tuple(X[:2].shape):
                raise InputShapeError(f"{name} changed the batch shape {tuple(X[:2].shape)} into {tuple(a.shape)}; "
                                      "an augmentation must return a batch of the same shape")
            h = encoder(a)
            if h.ndim != 2:
                raise InputShapeError(f"the encoder must return (N, d) features; got shape {tuple(h.shape)}")
            if projector is not None:
                projector(h)
    except (RuntimeError, TypeError) as exc:  # torch's shape mismatch errors
        raise InputShapeError(f"the encoder/projector cannot process the augmented inputs: {exc}") from exc
    finally:
        encoder.train(was[0])
        if projector is not None:
            projector.train(was[1])


def train_ssl(encoder, projector, X, augment: Callable, *, loss: str | Callable = "nt_xent", epochs: int = 30,
              batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.0, temperature: float = 0.5,
              seed: int = 0, threads: int | None = None, callback: Callable | None = None,
              progress: bool | None = None) -> list[dict]:
    """Self-supervised training of ``projector(encoder(x))`` on two augmented views of every sample; Adam.

    Parameters
    ----------
    encoder, projector : torch modules; the projector maps encoder features to the loss space.
    X : (N, features) array or tensor of unlabelled training rows.
    augment : ``augment(x, generator) -> x'`` on a batch tensor (e.g. :func:`nnkscope.nn.augment.compose`); called
        twice per batch, for the two views, with a seeded generator.
    loss : ``"nt_xent"`` (SimCLR, with ``temperature``), ``"vicreg"``, or ``loss(z1, z2) -> scalar tensor``.
    seed : seeds the initial shuffling, the augmentation draws and torch's global RNG: the same seed and thread
        count give the same weights.  threads : torch threads during training (None: leave as is).
    callback : ``callback(epoch, encoder, projector)`` after every epoch; returning True stops training.

    Returns
    -------
    One ``{"epoch", "loss"}`` per epoch (mean loss over the epoch's batches).

    Examples
    --------
    >>> import torch
    >>> from nnkscope.nn.augment import compose
    >>> X = torch.randn(64, 40)
    >>> enc, proj = mlp_encoder(40, [32], 16), projector_head(16, 16, 8)
    >>> hist = train_ssl(enc, proj, X, compose(["shift", "noise"], 0.5, (40,)), epochs=2, batch_size=32)
    >>> [h["epoch"] for h in hist]
    [1, 2]
    """
    from .._runtime import progress_bar

    torch = require_torch()
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise InvalidParameterError(f"loss must be one of {list(LOSSES)} or a callable loss(z1, z2); got {loss!r}")
        loss_fn = (lambda a, b: nt_xent_loss(a, b, temperature)) if loss == "nt_xent" else LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        raise InvalidParameterError(f"loss must be one of {list(LOSSES)} or a callable loss(z1, z2); got {loss!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InvalidParameterError(f"epochs must be an integer >= 0; got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise InvalidParameterError(f"batch_size must be an integer >= 2 (the losses compare samples within a "
                                    f"batch); got {batch_size!r}")
    if not temperature > 0:
        raise InvalidParameterError(f"temperature must be positive; got {temperature!r}")
    Xt = _as_rows(X)
    if len(Xt) < 2:
        raise InputShapeError(f"self-supervised training needs at least 2 samples; got {len(Xt)}")
    augment = _augment_caller(augment)
    _dry_run(encoder, projector, Xt, augment, "augment")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 7919)  # its own stream: batch order and draws do not interact
    params = list(encoder.parameters()) + list(projector.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    history = []
    bar = progress_bar(epochs, "SSL training", progress, unit="epochs")
    try:
        for epoch in range(1, epochs + 1):
            encoder.train()
            projector.train()
            perm = torch.randperm(len(Xt), generator=order_gen)
            total, count = 0.0, 0
            for lo in range(0, len(Xt), batch_size):
                idx = perm[lo:lo + batch_size]
                if len(idx) < 2:
                    continue  # BatchNorm and the contrastive loss need two samples
                xb = Xt[idx]
                v1, v2 = augment(xb, aug_gen), augment(xb, aug_gen)
                z = projector(encoder(torch.cat([v1, v2])))  # one pass: BatchNorm sees both views
                value = loss_fn(z[:len(idx)], z[len(idx):])
                opt.zero_grad()
                value.backward()
                opt.step()
                total += float(value.detach()) * len(idx)
                count += len(idx)
            history.append({"epoch": epoch, "loss": total / max(count, 1)})
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4g}")
            if callback is not None:
                encoder.eval()
                projector.eval()
                if callback(epoch, encoder, projector) is True:
                    break
    finally:
        bar.close()
        encoder.eval()
        projector.eval()
        torch.set_num_threads(old_threads)
    return history


def embed(module, X, batch_size: int = 2048) -> np.ndarray:
    """Eval-mode outputs of ``module`` on rows of ``X`` as a float64 array (no gradients)."""
    torch = require_torch()
    Xt = X if torch.is_tensor(X) else torch.as_tensor(np.asarray(X, np.float32))
    module.eval()
    with torch.no_grad():
        out = [module(Xt[lo:lo + batch_size]).double().reshape(len(Xt[lo:lo + batch_size]), -1)
               for lo in range(0, len(Xt), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


# ---------------------------------------------------------------------------------------------------------------
# invariance


def orbit_diameters(originals: np.ndarray, versions: np.ndarray, *, tau: float = 1e-10):
    """``(diameter, nnk_degree)`` per sample: the NNK neighbourhood (cosine kernel) of each original among its own
    versions, and the polytope diameter of the original with its selected versions on unit-norm features.

    ``originals`` (N, d), ``versions`` (N, V, d).  The same measurement as
    :func:`nnkscope.studies.invariance.augmentation_diameters`, here so the torch layer can use it.

    Examples
    --------
    >>> o = np.array([[1.0, 0.0]]); v = np.array([[[1.0, 0.0], [3.0, 0.0]]])   # versions along the original
    >>> orbit_diameters(o, v)[0].tolist()
    [0.0]
    """
    O = np.asarray(originals, np.float64)
    V = np.asarray(versions, np.float64)
    if V.ndim != 3 or O.ndim != 2 or V.shape[0] != O.shape[0] or V.shape[2] != O.shape[1]:
        raise InputShapeError(f"versions must be (N, V, d) matching originals (N, d) = {O.shape}; got {V.shape}")
    n, nv, d = V.shape
    Xc = V.reshape(n * nv, d)
    cand = np.arange(n * nv).reshape(n, nv)
    theta, _, _ = solve_candidates(O, Xc, Kernel("cosine"), cand, tau=tau, progress=False)
    diam = polytope_diameter(np.concatenate([O, Xc]), cand + n, theta, normalize=True)
    return diam, np.count_nonzero(theta, axis=1)


def _spread(U: np.ndarray, block: int = 64) -> np.ndarray:
    """Mean pairwise distance among each sample's unit-norm versions ``U`` (N, V, d), from the differences
    themselves (not from 2 - 2 cos, whose rounding turns equal copies into ~1e-8), a block of samples at a time."""
    n, v, _ = U.shape
    out = np.empty(n)
    for lo in range(0, n, block):
        B = U[lo:lo + block]
        out[lo:lo + block] = np.linalg.norm(B[:, :, None, :] - B[:, None, :, :], axis=-1).sum(axis=(1, 2))
    return out / (v * (v - 1))


def augmentation_invariance(encoder, projector, X, augment: Callable, n_views: int = 16, *, seed: int = 0,
                            batch_size: int = 2048, tau: float = 1e-10):
    """Per sample and per head, how far an augmentation moves the representation.

    Each row of ``X`` is augmented ``n_views`` times (``augment(x, generator)`` with a generator seeded by ``seed``);
    the original and its copies go through ``encoder`` (head ``"encoder"``) and then ``projector`` (head
    ``"projector"``; pass None to measure the encoder only).

    A copy identical to its original (a draw that changed nothing: a zero shift, a flip not taken) is replaced by
    another copy of the same sample: an exact duplicate of the original would be its whole NNK neighbourhood and
    hide what the other copies do.  ``identity_copies`` counts them; a sample none of whose copies moved has
    diameter and spread 0.

    Returns
    -------
    DataFrame, one row per (sample, head): ``diameter`` (NNK polytope diameter of the original among its copies,
    unit-norm features, in [0, 2]; 0 = invariant), ``nnk_degree`` (copies in the NNK neighbourhood), ``spread``
    (mean distance between two of the measured unit-norm copies), ``typical_distance`` (mean distance from the
    unit-norm original to the other samples' originals: the head's own scale, so ``spread / typical_distance``
    compares heads of different geometry), ``identity_copies``.  A sample with an all-zero feature row (possible
    after a ReLU) has no direction: it gets NaN there and ``zero_rows`` counts them.

    Examples
    --------
    >>> import torch
    >>> enc = mlp_encoder(40, [32], 16).eval()
    >>> X = torch.randn(5, 40)
    >>> t = augmentation_invariance(enc, None, X, lambda x, g: x.clone(), n_views=4)   # a no-op augmentation
    >>> t.groupby("head").diameter.max().tolist()
    [0.0]
    """
    import pandas as pd

    torch = require_torch()
    if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 2:
        raise InvalidParameterError(f"n_views must be an integer >= 2 (copies per sample); got {n_views!r}")
    Xt = _as_rows(X)
    augment = _augment_caller(augment)
    _dry_run(encoder, projector, Xt, augment, "augment")
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # for one-argument augmentations that draw from the global RNG

    def features(rows):
        # each batch of copies goes through the modules in the same shapes as the originals, so a copy equal to
        # its original gets bit-identical features (a no-op augmentation measures exactly 0)
        enc = embed(encoder, rows, batch_size)
        out = {"encoder": enc}
        if projector is not None:
            out["projector"] = embed(projector, torch.as_tensor(enc, dtype=torch.float32), batch_size)
        return out

    heads = features(Xt)
    copies = {h: [] for h in heads}
    identity = []  # (n, V): the draw left the sample unchanged (a zero shift, a flip not taken, ...)
    try:
        for _ in range(n_views):
            with torch.no_grad():
                v = augment(Xt.clone(), gen)
            if tuple(v.shape) != tuple(Xt.shape):
                raise InputShapeError(f"augment changed the batch shape {tuple(Xt.shape)} into {tuple(v.shape)}; "
                                      "it must return the same shape")
            identity.append((v == Xt).all(dim=1).numpy())
            for h, F in features(v).items():
                copies[h].append(F)
    finally:
        torch.random.set_rng_state(torch_state)
    n = len(Xt)
    identity = np.stack(identity, axis=1)
    moved = ~identity.all(axis=1)
    # an unchanged copy reproduces the original, and NNK then selects it alone (diameter 0 whatever the other copies
    # do): it says nothing about the transformation, so it is replaced by one of the sample's moved copies
    fill = np.where(identity, np.argmax(~identity, axis=1)[:, None], np.arange(n_views)[None, :])
    versions = {h: np.take_along_axis(np.stack(c, axis=1), fill[:, :, None], axis=1) for h, c in copies.items()}
    frames = []
    for head, O in heads.items():
        V = versions[head]
        zero = (np.linalg.norm(O, axis=1) == 0) | (np.linalg.norm(V, axis=2) == 0).any(axis=1)
        diam = np.where(moved, np.nan, 0.0)  # no copy moved: nothing to measure, the sample is invariant
        deg = np.zeros(n, np.int64)
        spread = np.where(moved, np.nan, 0.0)
        typical = np.full(n, np.nan)
        nonzero = np.flatnonzero(~zero)
        if len(nonzero):
            typical[nonzero] = _typical_distance(O[nonzero], seed)
        ok = np.flatnonzero(~zero & moved)
        if len(ok):
            diam[ok], deg[ok] = orbit_diameters(O[ok], V[ok], tau=tau)
            U = V[ok] / np.linalg.norm(V[ok], axis=2, keepdims=True)
            spread[ok] = _spread(U)
        diam[zero], spread[zero] = np.nan, np.nan
        frames.append(pd.DataFrame({"sample": np.arange(n), "head": head, "diameter": diam, "nnk_degree": deg,
                                    "spread": spread, "typical_distance": typical,
                                    "identity_copies": identity.sum(axis=1), "zero_rows": int(zero.sum())}))
    return pd.concat(frames, ignore_index=True)


def _typical_distance(O: np.ndarray, seed: int, n_ref: int = 512, block: int = 256) -> np.ndarray:
    """Mean distance from each unit-norm row to the other rows (to a seeded sample of ``n_ref`` of them when there
    are more): the scale of the head's geometry, against which an augmentation's spread is small or large."""
    U = O / np.linalg.norm(O, axis=1, keepdims=True)
    n = len(U)
    ref = np.arange(n) if n <= n_ref else np.sort(np.random.default_rng(seed).choice(n, n_ref, replace=False))
    out = np.empty(n)
    for lo in range(0, n, block):
        B = U[lo:lo + block]
        D = np.sqrt(np.clip(2.0 - 2.0 * B @ U[ref].T, 0.0, None))
        own = (np.arange(lo, lo + len(B))[:, None] == ref[None, :])  # a row is not its own reference
        out[lo:lo + block] = np.where(own, 0.0, D).sum(1) / np.maximum((~own).sum(1), 1)
    return out


def effective_rank(F) -> float:
    """Roy & Vetterli's effective rank ``exp(H(p))``, ``p`` the normalised singular values of the centred rows.

    Examples
    --------
    >>> round(effective_rank(np.r_[np.eye(4), -np.eye(4)]), 6)   # four equal singular values
    4.0
    """
    F = np.asarray(F, np.float64)
    s = np.linalg.svd(F - F.mean(0), compute_uv=False)
    if s.sum() == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))
