"""Activation capture: hooks reproduce a manual forward pass; streaming equals in-memory; clear errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnkscope.nn.capture import CaptureError, LayerNotFoundError, capture, select_modules  # noqa: E402
from nnkscope.nn.models import MLP  # noqa: E402


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    model = MLP(6, 16, 2, 3, batchnorm=True)
    model.eval()
    return model


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(70, 6)).astype(np.float32)


def test_hooks_capture_exactly_the_manual_forward_pass(mlp, data):
    got = capture(mlp, data, "blocks.*", batch_size=16)
    assert list(got) == ["blocks.0", "blocks.1", "blocks.2"]
    with torch.no_grad():
        x = torch.as_tensor(data)
        for i, block in enumerate(mlp.blocks):
            x = block(x)
            np.testing.assert_array_equal(got[f"blocks.{i}"], x.numpy())
    head = capture(mlp, data, ["head"])["head"]
    with torch.no_grad():
        np.testing.assert_array_equal(head, mlp(torch.as_tensor(data)).numpy())


def test_streaming_equals_in_memory_and_leaves_no_partial_files(tmp_path, mlp, data):
    mem = capture(mlp, data, torch.nn.ReLU, batch_size=70)
    disk = capture(mlp, data, torch.nn.ReLU, batch_size=9, out_dir=tmp_path)
    assert list(mem) == list(disk) == ["blocks.0.2", "blocks.1.2", "blocks.2.2"]
    for name in mem:
        np.testing.assert_array_equal(mem[name], disk[name])
        assert (tmp_path / f"{name}.npy").exists()
    assert not list(tmp_path.glob("*.part"))


def test_dataloader_batches_and_pooling():
    torch.manual_seed(1)
    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv1d(4, 2, 3))
    X = torch.randn(20, 1, 12)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, torch.zeros(20)), batch_size=6)
    with torch.no_grad():
        ref = conv[:2](X)
    flat = capture(conv, loader, "1")["1"]
    mean = capture(conv, loader, "1", pooling="mean")["1"]
    chan = capture(conv, loader, "1", pooling="channels")["1"]
    np.testing.assert_allclose(flat, ref.reshape(20, -1).numpy())
    np.testing.assert_allclose(mean, ref.mean(-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(chan, ref.numpy())
    assert chan.shape == (20, 4, 10)


def test_unknown_layer_lists_the_available_ones(mlp):
    with pytest.raises(LayerNotFoundError, match=r"no module matches 'blocks\.9'; available: blocks, blocks\.0"):
        select_modules(mlp, "blocks.9")
    with pytest.raises(LayerNotFoundError):
        select_modules(mlp, torch.nn.Conv2d)


def test_a_model_that_raises_is_reported_and_nothing_is_left(tmp_path, data):
    class Faulty(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = self.lin(x)
            if self.calls == 3:
                raise RuntimeError("boom")
            return out

    with pytest.raises(CaptureError, match="batch 2.*boom"):
        capture(Faulty(), data, "lin", batch_size=10, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_glob_levels(mlp):
    assert list(select_modules(mlp, "blocks.*")) == ["blocks.0", "blocks.1", "blocks.2"]
    assert "blocks.1.2" in select_modules(mlp, "blocks.**")
    assert list(select_modules(mlp, "blocks.?.1")) == ["blocks.0.1", "blocks.1.1", "blocks.2.1"]
    linear = select_modules(mlp, lambda name, m: isinstance(m, torch.nn.Linear) and name != "head")
    assert list(linear) == ["blocks.0.0", "blocks.1.0", "blocks.2.0"]
