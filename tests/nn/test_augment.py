"""Augmentations against numpy / scipy oracles, the SSL training loop, and augmentation invariance per head."""

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from nnkscope.errors import InputShapeError, InvalidParameterError  # noqa: E402
from nnkscope.nn.augment import (  # noqa: E402
    AUGMENTATIONS_1D,
    AUGMENTATIONS_2D,
    augmentation,
    compose,
)
from nnkscope.nn.models import weights_fingerprint  # noqa: E402
from nnkscope.nn.ssl import (  # noqa: E402
    augmentation_invariance,
    build_encoder,
    effective_rank,
    orbit_diameters,
    projector_head,
    train_ssl,
)
from nnkscope.studies.invariance import augmentation_diameters  # noqa: E402


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def signals(n=40, length=40, seed=0):
    """Smooth random signals (sums of a few sinusoids): a stand-in for MNIST-1D that needs no generator."""
    r = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    f = r.uniform(1, 4, size=(n, 3, 1))
    return np.sum(r.normal(size=(n, 3, 1)) * np.sin(2 * np.pi * f * t + r.uniform(0, 6, size=(n, 3, 1))),
                  axis=1).astype(np.float32)


@pytest.mark.parametrize("shape,names", [((40,), AUGMENTATIONS_1D), ((28, 28), AUGMENTATIONS_2D),
                                         ((8, 8), AUGMENTATIONS_2D)])
def test_zero_strength_is_the_identity_and_ranges_grow_with_strength(shape, names):
    x = torch.rand(30, int(np.prod(shape)))
    for name in names:
        assert torch.equal(augmentation(name, 0.0, shape)(x, gen()), x), name
        top = {}
        for s in (0.25, 0.5, 1.0):
            y, p = augmentation(name, s, shape).transform(x, gen(1))
            assert y.shape == x.shape and p.shape[0] == 30 and torch.isfinite(y).all()
            top[s] = float(p.abs().max())
        assert not torch.equal(y, x), name  # at s = 1 (at 0.25 a blur of an 8x8 image rounds to the identity)
        assert top[0.25] < top[0.5] < top[1.0], name
        # the same generator seed gives the same draws
        a = augmentation(name, 0.7, shape)
        assert torch.equal(a(x, gen(3)), a(x, gen(3)))


def test_shift_is_a_circular_roll_and_scale_a_linear_resampling():
    x = torch.tensor(signals(10))
    y, p = augmentation("shift", 1.0, (40,)).transform(x, gen(2))
    for i in range(10):
        assert torch.equal(y[i], torch.roll(x[i], int(p[i, 0])))
        assert abs(p[i, 0]) <= 8 and p[i, 0] == round(float(p[i, 0]))
    y, p = augmentation("scale", 1.0, (40,)).transform(x, gen(2))
    t = np.arange(40.0)
    for i in range(10):
        pos = 19.5 + (t - 19.5) / (1 + float(p[i, 0]))   # the stretched signal at t reads the original at pos
        np.testing.assert_allclose(y[i].numpy(), np.interp(pos, t, x[i].numpy()), atol=1e-5)


def test_blur_and_noise_1d_against_numpy():
    x = torch.tensor(signals(6))
    y, p = augmentation("blur", 1.0, (40,)).transform(x, gen(4))
    for i in range(6):
        sigma, r = float(p[i, 0]), 6
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        padded = np.pad(x[i].numpy().astype(np.float64), r, mode="edge")
        np.testing.assert_allclose(y[i].numpy(), np.convolve(padded, k / k.sum(), mode="valid"), atol=1e-5)
    x = torch.zeros(200, 40)
    y, p = augmentation("noise", 1.0, (40,)).transform(x, gen(5))
    ratio = y.std(dim=1).numpy() / p[:, 0].numpy()
    assert abs(np.median(ratio) - 1) < 0.1 and p.max() <= 0.4


def test_rotation_matches_scipy_and_translation_moves_pixels():
    from nnkscope.nn.datasets import rotate_images

    x = torch.rand(5, 28 * 28)
    y, p = augmentation("rotate", 1.0, (28, 28)).transform(x, gen(6))
    for i in range(5):
        ref = rotate_images(x[i:i + 1].numpy(), 28, [float(p[i, 0])])[0, 0].reshape(28, 28)
        np.testing.assert_allclose(y[i].numpy().reshape(28, 28)[4:-4, 4:-4], ref[4:-4, 4:-4], atol=1e-4)
    img = torch.zeros(1, 81)
    img[0, 4 * 9 + 4] = 1.0  # the centre pixel of a 9x9 image
    a = augmentation("translate", 1.0, (9, 9))
    shifted = a._affine(img, *(torch.tensor([v], dtype=torch.float64) for v in (0.0, 1.0, 2.0, -1.0)))
    assert np.argwhere(shifted.numpy().reshape(9, 9) > 0.999).tolist() == [[3, 6]]  # dy=-1 (up), dx=+2 (right)


def test_clear_errors_for_bad_augmentations():
    with pytest.raises(InvalidParameterError, match=r"unknown augmentation 'rotate' for 1-D signals; valid ones: "
                                                    r"\['shift', 'scale', 'amplitude', 'blur', 'noise'\]"):
        augmentation("rotate", 0.5, (40,))
    with pytest.raises(InvalidParameterError, match=r"strength must be a number in \[0, 1\]"):
        augmentation("shift", 1.5, (40,))
    with pytest.raises(InvalidParameterError, match="twice|repeat"):
        compose(["shift", "shift"], 0.5, (40,))
    with pytest.raises(InputShapeError, match="rows of 40 values"):
        augmentation("shift", 0.5, (40,))(torch.zeros(3, 41))
    with pytest.raises(InputShapeError, match="square images"):
        augmentation("rotate", 0.5, (4, 5))


def _pair(seed=0, shape=(40,)):
    enc = build_encoder("mlp", shape, hidden=[32], out_dim=16, seed=seed)
    return enc, projector_head(16, 16, 8)


def test_train_ssl_is_deterministic_and_learns():
    X = signals(128)
    aug = compose(["shift", "noise"], 0.5, (40,))
    runs = []
    for _ in range(2):
        enc, proj = _pair()
        hist = train_ssl(enc, proj, X, aug, epochs=4, batch_size=32, lr=3e-3, seed=3, threads=1)
        runs.append((weights_fingerprint(enc), weights_fingerprint(proj), [h["loss"] for h in hist]))
    assert runs[0] == runs[1]
    assert runs[0][2][-1] < runs[0][2][0]  # the contrastive loss falls
    enc, proj = _pair()
    train_ssl(enc, proj, X, aug, epochs=4, batch_size=32, lr=3e-3, seed=4, threads=1)
    assert weights_fingerprint(enc) != runs[0][0]
    enc, proj = _pair()
    hist = train_ssl(enc, proj, X, aug, loss="vicreg", epochs=3, batch_size=32, seed=0)
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_train_ssl_refuses_bad_input_before_training():
    enc, proj = _pair()
    before = weights_fingerprint(enc)
    X = signals(16)
    with pytest.raises(InvalidParameterError, match="loss must be one of"):
        train_ssl(enc, proj, X, compose(["shift"], 0.5, (40,)), loss="byol")
    with pytest.raises(InvalidParameterError, match="batch_size"):
        train_ssl(enc, proj, X, compose(["shift"], 0.5, (40,)), batch_size=1)
    with pytest.raises(InputShapeError, match="same shape"):
        train_ssl(enc, proj, X, lambda x, g: x[:, :20])
    with pytest.raises(InputShapeError, match="cannot process"):
        train_ssl(enc, projector_head(99, 8, 4), X, compose(["shift"], 0.5, (40,)))
    assert weights_fingerprint(enc) == before


def test_no_op_augmentation_has_diameter_zero_in_both_heads():
    enc, proj = _pair()
    train_ssl(enc, proj, signals(64), compose(["noise"], 0.5, (40,)), epochs=1, batch_size=32)
    t = augmentation_invariance(enc, proj, signals(30, seed=1), lambda x, g: x.clone(), n_views=5)
    assert sorted(t["head"].unique()) == ["encoder", "projector"]
    assert (t.diameter == 0).all() and (t.spread == 0).all()
    # the same with a strength-0 augmentation of the library, and a one-argument user function
    t = augmentation_invariance(enc, proj, signals(30, seed=1), augmentation("shift", 0.0, (40,)), n_views=5)
    assert (t.diameter == 0).all()
    t = augmentation_invariance(enc, None, signals(30, seed=1), lambda x: x * 1.0, n_views=3)
    assert (t.diameter == 0).all() and list(t["head"].unique()) == ["encoder"]


@pytest.mark.parametrize("name", ["shift", "noise"])
def test_diameter_grows_with_strength_on_a_fixed_model(name):
    enc, proj = _pair(seed=1)
    X = signals(120, seed=2)
    means = {}
    for s in (0.0, 0.25, 0.5, 1.0):
        t = augmentation_invariance(enc, proj, X, augmentation(name, s, (40,)), n_views=8, seed=0)
        means[s] = t.groupby("head").diameter.mean()
        assert ((t.diameter >= 0) & (t.diameter <= 2 + 1e-12)).all()
    for head in ("encoder", "projector"):
        series = [means[s][head] for s in (0.0, 0.25, 0.5, 1.0)]
        assert series[0] == 0 and all(a < b for a, b in zip(series, series[1:], strict=False)), (head, series)


def test_diameter_grows_with_rotation_strength_on_images():
    from sklearn.datasets import load_digits

    X = (load_digits().data[:80] / 16).astype(np.float32)
    enc = build_encoder("cnn2d", (8, 8), channels=4, out_dim=16, seed=0)
    means = [augmentation_invariance(enc, None, X, augmentation("rotate", s, (8, 8)), n_views=6).diameter.mean()
             for s in (0.0, 0.5, 1.0)]
    assert means[0] == 0 and means[0] < means[1] < means[2]


def test_orbit_diameters_equal_the_rotation_study_measurement(rng):
    O = rng.normal(size=(25, 6))
    V = O[:, None, :] + 0.4 * rng.normal(size=(25, 5, 6))
    d1, k1 = orbit_diameters(O, V)
    d2, k2 = augmentation_diameters(O, V)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(k1, k2)


def test_unchanged_copies_do_not_hide_the_moved_ones():
    enc, proj = _pair()
    X = signals(20, seed=5)
    calls = []

    def every_other(x, g):  # views 0, 2, 4 unchanged (a "zero shift"), views 1, 3, 5 rolled by 1 to 3 samples
        calls.append(1)
        k = len(calls)
        return x.clone() if k % 2 else torch.roll(x, k // 2, dims=1)

    t = augmentation_invariance(enc, proj, X, every_other, n_views=6)
    assert (t.identity_copies == 3).all() and (t.diameter > 0).all()
    with torch.no_grad():
        O = enc(torch.tensor(X)).double().numpy()
        V = np.stack([enc(torch.roll(torch.tensor(X), s, dims=1)).double().numpy() for s in (1, 2, 3)], axis=1)
    expected, _ = orbit_diameters(O, V)
    np.testing.assert_allclose(t[t["head"] == "encoder"].diameter.to_numpy(), expected, atol=1e-9)


def test_typical_distance_is_the_mean_distance_to_the_other_samples():
    enc, proj = _pair()
    X = signals(25, seed=4)
    t = augmentation_invariance(enc, proj, X, augmentation("noise", 0.5, (40,)), n_views=3)
    for head, module in (("encoder", enc), ("projector", lambda x: proj(enc(x)))):
        with torch.no_grad():
            F = module(torch.tensor(X)).double().numpy()
        U = F / np.linalg.norm(F, axis=1, keepdims=True)
        D = np.linalg.norm(U[:, None] - U[None], axis=-1)
        brute = D.sum(1) / (len(U) - 1)
        np.testing.assert_allclose(t[t["head"] == head].typical_distance.to_numpy(), brute, atol=1e-6)


def test_user_modules_and_zero_rows():
    class Half(torch.nn.Module):  # a user's encoder: keeps the first half of the signal; ReLU can zero a row
        def forward(self, x):
            return torch.relu(x[:, :20])

    X = signals(20)
    X[0, :20] = -1.0  # all-zero features after the ReLU: no direction, reported as NaN
    t = augmentation_invariance(Half(), None, X, augmentation("noise", 0.5, (40,)), n_views=4)
    assert isinstance(t, pd.DataFrame) and np.isnan(t.diameter[0]) and t.zero_rows[0] >= 1
    assert np.isfinite(t.diameter[1:]).all()
    with pytest.raises(InvalidParameterError, match="n_views"):
        augmentation_invariance(Half(), None, X, augmentation("noise", 0.5, (40,)), n_views=1)


def test_effective_rank_by_hand():
    assert effective_rank(np.r_[np.eye(3), -np.eye(3)]) == pytest.approx(3.0)
    F = np.c_[np.arange(10.0), np.zeros(10)]  # one direction of variation
    assert effective_rank(F) == pytest.approx(1.0)
