"""FGSM / PGD / noise against hand-computed gradients of a linear softmax model; eps = 0 is the identity; bad
input is refused."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.nn.attacks import fgsm, gaussian_noise, input_gradient, perturb_weights, pgd  # noqa: E402


@pytest.fixture
def linear():
    r = np.random.default_rng(0)
    W, b = r.normal(size=(4, 6)), r.normal(size=4)
    m = torch.nn.Linear(6, 4)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(W, dtype=torch.float32))
        m.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    X = r.normal(size=(20, 6)).astype(np.float32)
    y = r.integers(0, 4, 20)
    return m, W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64), X, y


def hand_gradient(W, b, X, y):
    """d/dx of cross-entropy(softmax(Wx + b), y) = W' (softmax - onehot(y)), written out per row."""
    Z = X.astype(np.float64) @ W.T + b
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    P[np.arange(len(y)), y] -= 1.0
    return P @ W


def ce(W, b, X, y):
    Z = X.astype(np.float64) @ W.T + b
    return float((np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1) - Z[np.arange(len(y)), y]).sum())


def test_gradient_and_fgsm_by_hand(linear):
    m, W, b, X, y = linear
    G = hand_gradient(W, b, X, y)
    np.testing.assert_allclose(input_gradient(m, X, y), G, rtol=1e-4, atol=1e-5)
    eps = 0.1
    np.testing.assert_allclose(fgsm(m, X, y, eps), X + eps * np.sign(G), atol=1e-6)
    l2 = X + eps * G / np.linalg.norm(G, axis=1, keepdims=True)
    np.testing.assert_allclose(fgsm(m, X, y, eps, norm="l2"), l2, atol=1e-5)
    assert ce(W, b, fgsm(m, X, y, eps), y) > ce(W, b, X, y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_one_step_is_fgsm_and_stays_in_the_ball(linear, norm):
    m, W, b, X, y = linear
    eps = 0.3
    np.testing.assert_allclose(pgd(m, X, y, eps, norm=norm, steps=1, step_size=eps), fgsm(m, X, y, eps, norm=norm),
                               atol=1e-6)
    Xa = pgd(m, X, y, eps, norm=norm, steps=20)
    d = Xa.astype(np.float64) - X
    size = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
    assert size.max() <= eps * (1 + 1e-5) and size.min() > 0.5 * eps
    # many steps of ascent beat one: the loss of PGD is at least FGSM's on a linear model here
    assert ce(W, b, Xa, y) >= ce(W, b, fgsm(m, X, y, eps, norm=norm), y) - 1e-6
    clipped = pgd(m, X, y, eps, norm=norm, steps=5, clip=(-0.5, 0.5), random_start=True, seed=1)
    assert clipped.min() >= -0.5 and clipped.max() <= 0.5


def test_eps_zero_leaves_inputs_and_weights_unchanged(linear):
    m, _, _, X, y = linear
    for out in (fgsm(m, X, y, 0.0), fgsm(m, X, y, 0, norm="l2"), pgd(m, X, y, 0.0), gaussian_noise(X, 0.0)):
        assert out.dtype == np.float32 and np.array_equal(out, X)
    same = perturb_weights(m, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), m.state_dict().values(), strict=True))


def test_relative_weight_noise():
    m = torch.nn.Linear(200, 100)
    before = m.weight.detach().clone()
    noisy = perturb_weights(m, 0.2, seed=3)
    assert torch.equal(m.weight, before)  # the original is untouched
    delta = (noisy.weight - before).detach()
    rms = before.pow(2).mean().sqrt()
    assert float(delta.std() / rms) == pytest.approx(0.2, rel=0.03)
    again = perturb_weights(m, 0.2, seed=3)
    assert torch.equal(again.weight, noisy.weight)


def test_gaussian_noise_strength():
    X = np.zeros((400, 50))
    assert gaussian_noise(X, 0.3, seed=1).std() == pytest.approx(0.3, rel=0.02)
    assert (gaussian_noise(X, 0.3, seed=1) == gaussian_noise(X, 0.3, seed=1)).all()


def test_bad_input(linear):
    m, _, _, X, y = linear
    for call in (lambda: fgsm(m, X, y, -0.1), lambda: pgd(m, X, y, -1.0), lambda: gaussian_noise(X, -0.5),
                 lambda: perturb_weights(m, -0.1)):
        with pytest.raises(InvalidParameterError, match=">= 0"):
            call()
    with pytest.raises(InvalidParameterError, match="norm must be"):
        fgsm(m, X, y, 0.1, norm="l1")
    with pytest.raises(InvalidParameterError, match="steps"):
        pgd(m, X, y, 0.1, steps=0)
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidParameterError, match="without gradients"):
        fgsm(sk, X, y, 0.1)

    class Detached(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = m

        def forward(self, x):
            return self.lin(x).detach()

    with pytest.raises(InvalidParameterError, match="no gradient"):
        pgd(Detached(), X, y, 0.1)
    with pytest.raises(InvalidParameterError, match="no gradient"):
        fgsm(Detached(), X, y, 0.1)
