"""Invariance of a representation to a family of transformations (research notes §9, R8a).

For each sample, the NNK neighbourhood of its original among its own transformed versions (cosine kernel, all
versions as candidates) and the polytope diameter of that neighbourhood on unit-norm features: 0 = the versions
land on the original (invariant), up to 2 = they spread over opposite directions.
"""

from __future__ import annotations

import numpy as np

from ..engine.kernels import Kernel
from ..engine.solvers import solve_candidates
from ..errors import InputShapeError
from ..measures.manifold import polytope_diameter

__all__ = ["augmentation_diameters"]


def augmentation_diameters(originals: np.ndarray, versions: np.ndarray, *, tau: float = 1e-10):
    """``(diameter, nnk_degree)`` per sample from features ``originals`` (N, d) and ``versions`` (N, V, d).

    Examples
    --------
    >>> o = np.array([[1.0, 0.0]]); v = np.array([[[1.0, 0.0], [2.0, 0.0]]])   # versions along the original
    >>> augmentation_diameters(o, v)[0].tolist()
    [0.0]
    """
    O = np.asarray(originals, np.float64)
    V = np.asarray(versions, np.float64)
    if V.ndim != 3 or V.shape[0] != O.shape[0] or V.shape[2] != O.shape[1]:
        raise InputShapeError(f"versions must be (N, V, d) matching originals (N, d) = {O.shape}; got {V.shape}")
    n, nv, d = V.shape
    # one local problem per sample: query = its original, candidates = its V versions
    Xc = V.reshape(n * nv, d)
    cand = np.arange(n * nv).reshape(n, nv)
    theta, _, _ = solve_candidates(O, Xc, Kernel("cosine"), cand, tau=tau, progress=False)
    Z = np.concatenate([O, Xc])  # polytope of the original with its NNK-selected versions
    diam = polytope_diameter(Z, cand + n, theta, normalize=True)
    return diam, np.count_nonzero(theta, axis=1)
