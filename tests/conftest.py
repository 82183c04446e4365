import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for `import helpers` from every test folder


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


from hypothesis import settings  # noqa: E402

# derandomize: the same examples on every run and machine, so a green run means the same thing everywhere
settings.register_profile("nnkscope", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("nnkscope")
