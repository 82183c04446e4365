"""Seeded synthetic embeddings shared by the benchmarks."""

from __future__ import annotations

import numpy as np


def embedding_like(n: int, d: int, *, latent: int = 16, n_clusters: int = 200, noise: float = 0.3,
                   seed: int = 0) -> np.ndarray:
    """Gaussian clusters on a ``latent``-dimensional space, mapped linearly to ``d`` dimensions, plus noise.

    Low intrinsic dimension inside a high ambient dimension, like learned representations. Generated in blocks
    so that 10^6 x 768 does not need a float64 copy.
    """
    r = np.random.default_rng(seed)
    centres = r.normal(scale=3.0, size=(n_clusters, latent))
    proj = r.normal(size=(latent, d)) / np.sqrt(latent)
    out = np.empty((n, d), np.float32)
    for lo in range(0, n, 65536):
        hi = min(n, lo + 65536)
        z = centres[r.integers(n_clusters, size=hi - lo)] + r.normal(size=(hi - lo, latent))
        out[lo:hi] = z @ proj + noise * r.normal(size=(hi - lo, d))
    return out


def labelled_layer(n: int, d: int, seed: int, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A layer of a classification study: :func:`embedding_like` rows and seeded labels of ``n_classes`` classes."""
    return embedding_like(n, d, seed=seed), np.random.default_rng(seed).integers(0, n_classes, n)


def peak_rss_gib() -> float:
    """This process's peak resident set.  VmHWM, not ru_maxrss: Linux carries ru_maxrss across the fork + exec that
    starts a spawned process, so it would report the parent's peak (e.g. from writing the data) as the child's."""
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
