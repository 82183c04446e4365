"""NT-Xent and VICReg against oracles written here in plain numpy from the formulas, and by-hand values."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnkscope.errors import InputShapeError, InvalidParameterError  # noqa: E402
from nnkscope.nn.ssl import nt_xent_loss, vicreg_loss  # noqa: E402


def nt_xent_oracle(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """SimCLR (Chen et al. 2020, eq. 1): l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau),
    averaged over the 2N ordered positive pairs."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    n2 = len(z)
    n = n2 // 2

    def sim(a, b):
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    total = 0.0
    for i in range(n2):
        j = i + n if i < n else i - n
        denominator = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(z[i], z[j]) / tau) / denominator)
    return total / n2


def vicreg_oracle(z1, z2, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4) -> float:
    """VICReg (Bardes et al. 2022, eqs. 1-6): lam s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]."""
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n, d = z1.shape
    s = sum(np.sum((z1[i] - z2[i]) ** 2) for i in range(n)) / (n * d)  # mean squared error

    def v(z):
        out = 0.0
        for j in range(d):
            var = sum((z[i, j] - z[:, j].mean()) ** 2 for i in range(n)) / (n - 1)
            out += max(0.0, gamma - math.sqrt(var + eps))
        return out / d

    def c(z):
        zc = z - z.mean(0)
        out = 0.0
        for a in range(d):
            for b in range(d):
                if a != b:
                    out += (sum(zc[i, a] * zc[i, b] for i in range(n)) / (n - 1)) ** 2
        return out / d

    return lam * s + mu * (v(z1) + v(z2)) + nu * (c(z1) + c(z2))


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_nt_xent_against_the_oracle(rng, tau, n):
    z1, z2 = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    assert float(nt_xent_loss(_t(z1), _t(z2), tau)) == pytest.approx(nt_xent_oracle(z1, z2, tau), rel=1e-12)


def test_nt_xent_by_hand():
    # two orthogonal samples, identical views, tau = 1: every row sees its positive at cos 1 and two rows at cos 0
    z = _t([[1.0, 0.0], [0.0, 1.0]])
    assert float(nt_xent_loss(z, z, 1.0)) == pytest.approx(math.log(math.e + 2) - 1, abs=1e-15)
    # the loss only sees directions
    assert float(nt_xent_loss(3 * z, 0.5 * z, 1.0)) == pytest.approx(math.log(math.e + 2) - 1, abs=1e-15)


@pytest.mark.parametrize("coeffs", [{}, {"sim_coeff": 1.0, "std_coeff": 0.5, "cov_coeff": 3.0, "gamma": 2.0}])
def test_vicreg_against_the_oracle(rng, coeffs):
    z1, z2 = rng.normal(size=(6, 3)) * [0.3, 1.0, 2.0], rng.normal(size=(6, 3))
    oracle = vicreg_oracle(z1, z2, coeffs.get("sim_coeff", 25.0), coeffs.get("std_coeff", 25.0),
                           coeffs.get("cov_coeff", 1.0), coeffs.get("gamma", 1.0))
    assert float(vicreg_loss(_t(z1), _t(z2), **coeffs)) == pytest.approx(oracle, rel=1e-12)


def test_vicreg_by_hand():
    # identical views (invariance 0); dimension 0 has variance 2 (std above 1: no penalty), dimension 1 is constant
    # (std sqrt(1e-4) = 0.01: penalty 0.99), covariance zero: 25 * 2 * (0.99 / 2) = 24.75
    z = _t([[1.0, 0.0], [-1.0, 0.0]])
    assert float(vicreg_loss(z, z)) == pytest.approx(24.75, abs=1e-12)
    # two views apart by 1 in every coordinate: the invariance term alone is 25 * 1
    w = _t([[1.0, 3.0], [-1.0, -3.0], [2.0, 0.0], [-2.0, 0.0]])
    assert float(vicreg_loss(w, w + 1, std_coeff=0.0, cov_coeff=0.0)) == pytest.approx(25.0, abs=1e-12)


def test_losses_backpropagate_and_refuse_bad_batches():
    z1 = torch.randn(4, 3, requires_grad=True)
    for loss in (nt_xent_loss(z1, z1.detach() + 0.1), vicreg_loss(z1, z1.detach() + 0.1)):
        z1.grad = None
        loss.backward()
        assert z1.grad is not None and torch.isfinite(z1.grad).all()
    with pytest.raises(InputShapeError, match="same shape"):
        nt_xent_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(InputShapeError, match="at least 2"):
        vicreg_loss(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(InvalidParameterError, match="temperature"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0)
