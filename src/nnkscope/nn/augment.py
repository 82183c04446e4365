"""Data augmentations in plain torch, each with a strength knob ``s`` in [0, 1] (optional ``[torch]`` extra).

For self-supervised training and for measuring invariance (research notes §9, §10).  No torchvision: the
transformations are written here, batched, and driven by a ``torch.Generator`` so every draw is reproducible.
Inputs are rows, as everywhere in nnkscope: ``(N, L)`` signals or ``(N, side * side)`` square images.

Every family draws a random parameter per sample whose range grows linearly with ``s``; at ``s = 0`` the
transformation is the identity *exactly* (bit for bit), so an encoder's diameter for it is 0.  At ``s = 1``:

1-D signals (MNIST-1D, length 40; ranges scale with length / 40)

* ``shift``: circular shift by an integer in [-8, 8] samples;
* ``scale``: time stretch about the centre by a factor 1 + u, u in [-0.4, 0.4] (linear interpolation, edges held);
* ``amplitude``: multiplication by 1 + u, u in [-0.5, 0.5];
* ``blur``: Gaussian smoothing with sigma in [0, 2] samples (edges held);
* ``noise``: additive Gaussian noise with sigma in [0, 0.4].

2-D images (28x28 MNIST; spatial ranges scale with side / 28, so 8x8 digits work too)

* ``translate``: shift by (dx, dy), each in [-4, 4] pixels (bilinear, zero outside);
* ``rotate``: rotation about the centre by an angle in [-60, 60] degrees;
* ``scale``: zoom about the centre by a factor 1 + u, u in [-0.3, 0.3];
* ``crop``: a random crop of side ``side / z``, z in [1, 1.6], anywhere inside the image, resized back;
* ``elastic``: a smooth random displacement field (Gaussian-smoothed noise, width 4 pixels) of RMS size
  alpha in [0, 3] pixels;
* ``blur``: Gaussian smoothing with sigma in [0, 1.5] pixels (zero outside);
* ``noise``: additive Gaussian noise with sigma in [0, 0.3].

:func:`augmentation` builds one family (call it for a batch, or ``transform`` to get the drawn parameters too, the
targets of the "predict the transformation" probes); :func:`compose` chains several, in the canonical order
(geometry, then blur, then amplitude, then noise) whatever order they are named in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InputShapeError, InvalidParameterError
from .models import require_torch

__all__ = ["AUGMENTATIONS_1D", "AUGMENTATIONS_2D", "Augmentation", "Compose", "augmentation", "compose",
           "valid_augmentations", "check_strength"]

AUGMENTATIONS_1D = ("shift", "scale", "amplitude", "blur", "noise")
AUGMENTATIONS_2D = ("translate", "rotate", "scale", "crop", "elastic", "blur", "noise")
_ORDER = ("shift", "translate", "rotate", "scale", "crop", "elastic", "blur", "amplitude", "noise")
# the drawn parameters of each family (the regression targets): their names, one column each
_PARAMS = {("shift", 1): ("shift",), ("scale", 1): ("stretch",), ("amplitude", 1): ("gain",),
           ("blur", 1): ("sigma",), ("noise", 1): ("sigma",), ("translate", 2): ("dx", "dy"),
           ("rotate", 2): ("degrees",), ("scale", 2): ("zoom",), ("crop", 2): ("zoom", "ox", "oy"),
           ("elastic", 2): ("alpha",), ("blur", 2): ("sigma",), ("noise", 2): ("sigma",)}


def _ndim(shape) -> int:
    shape = tuple(int(v) for v in shape)
    if len(shape) == 1 and shape[0] >= 2:
        return 1
    if len(shape) == 2 and shape[0] == shape[1] and shape[0] >= 2:
        return 2
    raise InputShapeError(f"augmentations take 1-D signals (length,) or square images (side, side); got shape {shape}")


def valid_augmentations(shape) -> tuple[str, ...]:
    """The augmentation names available for samples of this shape.

    Examples
    --------
    >>> valid_augmentations((40,))
    ('shift', 'scale', 'amplitude', 'blur', 'noise')
    """
    return AUGMENTATIONS_1D if _ndim(shape) == 1 else AUGMENTATIONS_2D


def check_strength(strength, name: str = "strength") -> float:
    """A strength in [0, 1] (0 = identity, 1 = the strongest setting), or a clear error."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(strength) <= 1.0:
        raise InvalidParameterError(f"{name} must be a number in [0, 1] (0 = no augmentation, 1 = strongest); "
                                    f"got {strength!r}")
    return float(strength)


def _check_name(name, shape) -> None:
    valid = valid_augmentations(shape)
    if name not in valid:
        kind = "1-D signals" if _ndim(shape) == 1 else "2-D images"
        raise InvalidParameterError(f"unknown augmentation {name!r} for {kind}; valid ones: {list(valid)}")


class Augmentation:
    """One augmentation family at strength ``s`` for samples of ``shape``: ``aug(x, generator) -> x'``.

    Parameters
    ----------
    name : one of :data:`AUGMENTATIONS_1D` (shape ``(L,)``) or :data:`AUGMENTATIONS_2D` (shape ``(side, side)``).
    strength : in [0, 1]; 0 is the identity.  shape : the shape of one sample (inputs are flattened rows).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(8.0).reshape(1, 8)
    >>> aug = augmentation("shift", 1.0, (8,))
    >>> y, p = aug.transform(x, torch.Generator().manual_seed(0))
    >>> bool(torch.equal(torch.roll(x, int(p[0, 0]), dims=1), y))
    True
    >>> bool(torch.equal(augmentation("rotate", 0.0, (5, 5))(torch.ones(2, 25)), torch.ones(2, 25)))
    True
    """

    def __init__(self, name: str, strength: float = 1.0, shape: Sequence[int] = (40,)):
        self.shape = tuple(int(v) for v in shape)
        self.ndim = _ndim(self.shape)
        _check_name(name, self.shape)
        self.name = name
        self.strength = check_strength(strength)
        self.param_names = _PARAMS[(name, self.ndim)]
        # spatial ranges are set for MNIST-1D (40) and MNIST (28) and follow the sample's size
        self.unit = self.shape[0] / (40.0 if self.ndim == 1 else 28.0)

    def __repr__(self) -> str:
        return f"Augmentation({self.name!r}, strength={self.strength}, shape={self.shape})"

    def __call__(self, x, generator=None):
        return self.transform(x, generator)[0]

    def transform(self, x, generator=None):
        """``(x', params)``: the augmented batch and the (N, n_params) parameters drawn for it."""
        torch = require_torch()
        x = torch.as_tensor(x)
        if not torch.is_floating_point(x):
            x = x.float()
        n_features = int(np.prod(self.shape))
        if x.ndim != 2 or x.shape[1] != n_features:
            raise InputShapeError(f"{self.name} takes rows of {n_features} values (samples of shape {self.shape}); "
                                  f"got a tensor of shape {tuple(x.shape)}")
        n, s = len(x), self.strength
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1  # U[-1, 1] draws, 3 per sample
        fn = getattr(self, f"_{self.name}_{self.ndim}d")
        y, params = fn(x, u, s, generator)
        params = params.reshape(n, -1).to(torch.float64)
        # a sample drawn the zero parameter is returned untouched: the identity exactly, not up to the rounding of
        # a resampling grid (strength 0 -> diameter 0 bit for bit)
        y = torch.where((params == 0).all(1)[:, None], x, y.to(x.dtype))
        return y, params

    # ---- 1-D ---------------------------------------------------------------------------------------------------

    def _shift_1d(self, x, u, s, gen):
        torch = require_torch()
        k = torch.round(u[:, 0] * 8 * self.unit * s).long()
        L = x.shape[1]
        idx = (torch.arange(L)[None, :] - k[:, None]) % L
        return x.gather(1, idx), k

    def _resample_1d(self, x, pos):
        """Linear interpolation of each row at positions ``pos`` (N, L), holding the edge values outside."""
        L = x.shape[1]
        pos = pos.clamp(0, L - 1)
        i0 = pos.floor().long().clamp(0, L - 1)
        w = (pos - i0).to(x.dtype)
        i1 = (i0 + 1).clamp(max=L - 1)
        return x.gather(1, i0) * (1 - w) + x.gather(1, i1) * w

    def _scale_1d(self, x, u, s, gen):
        torch = require_torch()
        stretch = u[:, 0] * 0.4 * s
        L = x.shape[1]
        c = (L - 1) / 2.0
        t = torch.arange(L, dtype=torch.float64)[None, :]
        return self._resample_1d(x, c + (t - c) / (1 + stretch[:, None])), stretch

    def _amplitude_1d(self, x, u, s, gen):
        gain = u[:, 0] * 0.5 * s
        return x * (1 + gain[:, None]).to(x.dtype), gain

    def _blur_1d(self, x, u, s, gen):
        sigma = (u[:, 0] + 1) / 2 * 2.0 * self.unit * s
        r = max(1, math.ceil(3 * 2.0 * self.unit))
        w = _gaussian_weights(sigma, r)  # (N, 2r+1)
        xp = require_torch().cat([x[:, :1].expand(-1, r), x, x[:, -1:].expand(-1, r)], dim=1)
        return (xp.unfold(1, 2 * r + 1, 1) * w[:, None, :].to(x.dtype)).sum(-1), sigma

    def _noise_1d(self, x, u, s, gen):
        return _add_noise(x, (u[:, 0] + 1) / 2 * 0.4 * s, gen)

    # ---- 2-D ---------------------------------------------------------------------------------------------------

    def _affine(self, x, angle_deg, zoom, dx, dy):
        """Warp each image by rotation, zoom about the centre and translation (output = T(input))."""
        torch = require_torch()
        n, side = len(x), self.shape[0]
        c = (side - 1) / 2.0
        a = torch.deg2rad(angle_deg)
        cos, sin = torch.cos(a) / zoom, torch.sin(a) / zoom
        # inverse map in normalised [-1, 1] coordinates (grid_sample's): source = R(-angle) (p - t) / zoom
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin  # x row: (cos qx - sin qy) / zoom
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos   # y row: (sin qx + cos qy) / zoom
        tx, ty = dx / c, dy / c
        theta[:, 0, 2] = -(cos * tx - sin * ty)
        theta[:, 1, 2] = -(sin * tx + cos * ty)
        theta = theta.to(x.dtype)
        r = torch.linspace(-1, 1, side, dtype=x.dtype)
        gy, gx = torch.meshgrid(r, r, indexing="ij")  # affine_grid by broadcasting (its batched matmul is slower)
        grid = torch.stack([theta[:, 0, 0, None, None] * gx + theta[:, 0, 1, None, None] * gy
                            + theta[:, 0, 2, None, None],
                            theta[:, 1, 0, None, None] * gx + theta[:, 1, 1, None, None] * gy
                            + theta[:, 1, 2, None, None]], dim=-1)
        return torch.nn.functional.grid_sample(x.reshape(n, 1, side, side), grid, mode="bilinear",
                                               padding_mode="zeros", align_corners=True).reshape(n, -1)

    def _zeros(self, n):
        return require_torch().zeros(n, dtype=require_torch().float64)

    def _translate_2d(self, x, u, s, gen):
        d = u[:, :2] * 4 * self.unit * s
        zero = self._zeros(len(x))
        return self._affine(x, zero, zero + 1, d[:, 0], d[:, 1]), d

    def _rotate_2d(self, x, u, s, gen):
        angle = u[:, 0] * 60 * s
        zero = self._zeros(len(x))
        return self._affine(x, angle, zero + 1, zero, zero), angle

    def _scale_2d(self, x, u, s, gen):
        zoom = u[:, 0] * 0.3 * s
        zero = self._zeros(len(x))
        return self._affine(x, zero, 1 + zoom, zero, zero), zoom

    def _crop_2d(self, x, u, s, gen):
        torch = require_torch()
        z = 1 + (u[:, 0] + 1) / 2 * 0.6 * s
        half = (self.shape[0] - 1) / 2.0
        # the crop's centre offset keeps the whole crop inside the image; zooming in about it moves it to the centre
        off = u[:, 1:3] * (1 - 1 / z[:, None]) * half
        zero = self._zeros(len(x))
        y = self._affine(x, zero, z, -off[:, 0] * z, -off[:, 1] * z)
        return y, torch.stack([z - 1, off[:, 0], off[:, 1]], dim=1)

    def _elastic_2d(self, x, u, s, gen):
        torch = require_torch()
        n, side = len(x), self.shape[0]
        alpha = (u[:, 0] + 1) / 2 * 3 * self.unit * s
        field = torch.randn(2 * n, side, side, generator=gen, dtype=torch.float64).to(x.dtype)
        field = _smooth_2d(field, torch.tensor([4 * self.unit])).reshape(n, 2, side, side)
        rms = field.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        field = field / rms * alpha[:, None, None, None].to(x.dtype)
        r = torch.arange(side, dtype=x.dtype)
        py, px = torch.meshgrid(r, r, indexing="ij")
        sy, sx = py[None] + field[:, 0], px[None] + field[:, 1]
        grid = torch.stack([sx / (side - 1) * 2 - 1, sy / (side - 1) * 2 - 1], dim=-1)
        y = torch.nn.functional.grid_sample(x.reshape(n, 1, side, side), grid, mode="bilinear",
                                            padding_mode="zeros", align_corners=True)
        return y.reshape(n, -1), alpha

    def _blur_2d(self, x, u, s, gen):
        n, side = len(x), self.shape[0]
        sigma = (u[:, 0] + 1) / 2 * 1.5 * self.unit * s
        return _smooth_2d(x.reshape(n, side, side), sigma).reshape(n, -1), sigma

    def _noise_2d(self, x, u, s, gen):
        return _add_noise(x, (u[:, 0] + 1) / 2 * 0.3 * s, gen)


def _add_noise(x, sigma, gen):
    torch = require_torch()
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return x + (noise * sigma[:, None]).to(x.dtype), sigma


def _gaussian_weights(sigma, r: int):
    """(N, 2r+1) normalised Gaussian weights per sample; sigma = 0 gives the exact identity (a unit impulse)."""
    torch = require_torch()
    sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    t = torch.arange(-r, r + 1, dtype=torch.float64)[None, :]
    safe = sigma.clamp_min(1e-8)[:, None]
    w = torch.exp(-0.5 * (t / safe) ** 2)
    w = w / w.sum(1, keepdim=True)
    impulse = (t == 0).to(torch.float64).expand_as(w)
    return torch.where((sigma < 1e-6)[:, None], impulse, w)


def _smooth_2d(img, sigma):
    """Separable Gaussian smoothing of (N, H, W) images, zeros outside: one sigma per image, or one for all."""
    torch = require_torch()
    F = torch.nn.functional
    n, h, w = img.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    r = max(1, math.ceil(3 * float(sigma.max())))
    k = _gaussian_weights(sigma, r).to(img.dtype)  # (1 or N, 2r+1)
    if len(k) == 1:  # one kernel for every image: two plain convolutions
        out = F.conv2d(img[:, None], k.reshape(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(out, k.reshape(1, 1, -1, 1), padding=(r, 0))[:, 0]
    # a kernel per image: grouped convolutions, one group per image
    out = F.conv2d(img[None], k.reshape(n, 1, 1, -1), padding=(0, r), groups=n)
    return F.conv2d(out, k.reshape(n, 1, -1, 1), padding=(r, 0), groups=n)[0]


class Compose:
    """Several augmentation families applied one after the other (canonical order), each with its own draws.

    Examples
    --------
    >>> import torch
    >>> c = compose(["noise", "shift"], 0.5, (40,))
    >>> [a.name for a in c.augmentations]
    ['shift', 'noise']
    >>> c(torch.zeros(3, 40), torch.Generator().manual_seed(0)).shape
    torch.Size([3, 40])
    """

    def __init__(self, augmentations: Sequence[Augmentation]):
        self.augmentations = sorted(augmentations, key=lambda a: _ORDER.index(a.name))

    def __call__(self, x, generator=None):
        for aug in self.augmentations:
            x = aug(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.augmentations})"


def augmentation(name: str, strength: float = 1.0, shape: Sequence[int] = (40,)) -> Augmentation:
    """One augmentation family (see the module docstring for the names and their ranges)."""
    return Augmentation(name, strength, shape)


def compose(names: Sequence[str] | str, strength: float = 1.0, shape: Sequence[int] = (40,)) -> Compose:
    """The named families at one strength, applied in the canonical order; names are checked before anything runs.

    Examples
    --------
    >>> compose(["shift", "rotate"], 0.5, (40,))
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: unknown augmentation 'rotate' for 1-D signals; valid ones: ['shift', \
'scale', 'amplitude', 'blur', 'noise']
    """
    names = [names] if isinstance(names, str) else list(names)
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"augmentation names repeat in {names}; name each family once")
    return Compose([Augmentation(n, strength, shape) for n in names])
