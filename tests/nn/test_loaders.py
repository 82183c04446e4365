"""Loaders of the user's own model and data: checkpoints in the layouts training code writes, arrays, texts."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnkscope.errors import FileFormatError, InvalidParameterError  # noqa: E402
from nnkscope.nn.loaders import (  # noqa: E402
    build_user_model,
    feature_files,
    load_array,
    load_checkpoint,
    load_source,
    load_texts,
    model_input,
)


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {f"module.{k}": v for k, v in s.items()},                      # DataParallel
    lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}, "epoch": 3},   # Lightning-style file
    lambda s: {"model_state_dict": s, "optimizer": {"lr": 0.1}},
])
def test_checkpoint_layouts(tmp_path, wrap):
    src = _net(1)
    torch.save(wrap(src.state_dict()), tmp_path / "w.pt")
    got = load_checkpoint(_net(2), tmp_path / "w.pt")
    assert _same(got, src)


def test_checkpoint_refusals(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(FileFormatError, match="not a state_dict"):
        load_checkpoint(_net(), tmp_path / "list.pt")
    with pytest.raises(FileFormatError, match="no such file"):
        load_checkpoint(_net(), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(FileFormatError, match="could not read"):
        load_checkpoint(_net(), tmp_path / "junk.pt")
    torch.save(_net(), tmp_path / "whole.pt")
    with pytest.raises(FileFormatError, match="weights_only=True"):
        load_checkpoint(_net(), tmp_path / "whole.pt")
    assert _same(load_checkpoint(None, tmp_path / "whole.pt", trusted=True), _net())
    with pytest.raises(InvalidParameterError, match="holds weights, not a model"):
        torch.save(_net().state_dict(), tmp_path / "w.pt")
        load_checkpoint(None, tmp_path / "w.pt")


def test_factory_is_seeded_and_checked(tmp_path):
    a = build_user_model("torch.nn:Linear", {"in_features": 3, "out_features": 2}, seed=5)
    b = build_user_model("torch.nn:Linear", {"in_features": 3, "out_features": 2}, seed=5)
    assert _same(a, b) and not a.training
    with pytest.raises(InvalidParameterError, match=r"returned float, not a torch.nn.Module"):
        build_user_model("builtins:float")
    with pytest.raises(InvalidParameterError, match=r"raised TypeError.*check model.kwargs"):
        build_user_model("torch.nn:Linear", {"width": 3})
    (tmp_path / "bad.py").write_text("raise RuntimeError('half-written file')\n")
    with pytest.raises(InvalidParameterError, match="running .*bad.py raised RuntimeError: half-written"):
        build_user_model(f"{tmp_path}/bad.py:Net")


def test_arrays_and_texts(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.arange(4))
    assert load_array(f"{tmp_path}/d.npz:y").tolist() == [0, 1, 2, 3]
    with pytest.raises(FileFormatError, match=r"holds 2 arrays \['X', 'y'\]; name one as 'd.npz:NAME'"):
        load_array(str(tmp_path / "d.npz"))
    torch.save(torch.arange(3.0), tmp_path / "t.pt")
    assert load_array(str(tmp_path / "t.pt")).tolist() == [0.0, 1.0, 2.0]
    (tmp_path / "s.txt").write_text("a cat\r\n\nthe end\n")
    assert load_texts(str(tmp_path / "s.txt")) == ["a cat", "", "the end"]  # line i is row i, blank or not
    assert load_source(["x", "y"])[0].tolist() == ["x", "y"]
    with pytest.raises(FileFormatError, match="unknown suffix '.csv'"):
        (tmp_path / "a.csv").write_text("1\n")
        load_array(str(tmp_path / "a.csv"))
    # floating inputs follow the model's dtype; token ids stay integers
    assert model_input(_net(), np.zeros((2, 3))).dtype == np.float32
    assert model_input(_net(), np.zeros((2, 3), np.int64)).dtype == np.int64


def test_feature_files_read_headers_only(tmp_path):
    np.savez(tmp_path / "f.npz", b=np.ones((5, 2)), a=np.zeros((5, 3)))
    loaders, n = feature_files(tmp_path / "f.npz")
    assert list(loaders) == ["b", "a"] and n == 5  # file order, not alphabetical
    assert loaders["a"]().shape == (5, 3) and loaders["a"]().dtype == np.float64
    np.save(tmp_path / "b.npy", np.ones((5, 2)))
    with pytest.raises(InvalidParameterError, match="layer names repeat"):
        feature_files([tmp_path / "b.npy", tmp_path / "f.npz"])
