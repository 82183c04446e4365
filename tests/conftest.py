import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for `import oracles`


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float64)


@pytest.fixture(scope="session")
def digits_labels() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def clustered(n: int, d: int, seed: int, n_clusters: int = 10) -> np.ndarray:
    """Embedding-like data: Gaussian clusters on a low-dimensional latent space, mapped to d dimensions."""
    r = np.random.default_rng(seed)
    latent = min(d, 8)
    centres = r.normal(scale=3.0, size=(n_clusters, latent))
    z = centres[r.integers(n_clusters, size=n)] + r.normal(size=(n, latent))
    return (z @ r.normal(size=(latent, d)) + 0.1 * r.normal(size=(n, d))).astype(np.float32)


from hypothesis import settings  # noqa: E402

# derandomize: the same examples on every run and machine, so a green run means the same thing everywhere
settings.register_profile("nnkscope", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("nnkscope")
