"""``nnkscope.analyze`` (one call from Python) and the Lightning / Hugging Face Trainer callbacks, on tiny models on
the CPU."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")

import nnkscope  # noqa: E402
from nnkscope.errors import InputShapeError, InvalidParameterError  # noqa: E402
from nnkscope.nn.capture import capture  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.layerwise import measure_layers  # noqa: E402

METRICS = ["layer_index", "mean_nnk_degree", "loo_error_nnk", "homogeneous_fraction_H", "separation_fuzziness",
           "label_variation", "nc1"]


@pytest.fixture
def data():
    r = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = (np.eye(3)[y] @ r.normal(size=(3, 6)) + 0.8 * r.normal(size=(60, 6))).astype(np.float32)
    return X, y


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def test_package_import_stays_light():
    code = "import sys, nnkscope; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_analyze_a_model_equals_measure_layers_by_hand(tmp_path, data):
    X, y = data
    net = _net()
    res = nnkscope.analyze(net, X=X.astype(np.float64), y=y, layers=["0", "2"], out=tmp_path / "run", k=8)
    assert res.report.exists() and res.report.name == "report.html"
    ref = RunStore(tmp_path / "ref")
    measure_layers({"input": X, **capture(net, X, ["0", "2"])}, y, ref, k=8)
    b = ref.read("layers").sort_values("layer_index").reset_index(drop=True)
    pd.testing.assert_frame_equal(res.layers[METRICS], b[METRICS])
    assert res.layers.layer.tolist() == ["input", "0", "2"] and set(res.layers.model) == {"Sequential"}
    assert sorted(set(res.points()["sample"])) == list(range(60))
    # the same call again resumes (nothing to do); another model into the same folder is refused
    nnkscope.analyze(net, X=X, y=y, layers=["0", "2"], out=tmp_path / "run", k=8, report=False)
    with pytest.raises(InvalidParameterError, match="the model weights changed"):
        nnkscope.analyze(_net(1), X=X, y=y, layers=["0", "2"], out=tmp_path / "run", k=8, report=False)


def test_analyze_features_and_default_layers(tmp_path, data):
    X, y = data
    feats = {"raw": X, "hidden": np.tanh(X @ np.random.default_rng(1).normal(size=(6, 4)))}
    res = nnkscope.analyze(feats, y=y, out=tmp_path / "run", k=8, report=False)
    ref = RunStore(tmp_path / "ref")
    measure_layers(feats, y, ref, k=8)
    b = ref.read("layers").sort_values("layer_index").reset_index(drop=True)
    pd.testing.assert_frame_equal(res.layers[METRICS], b[METRICS])
    np.savez(tmp_path / "f.npz", **feats)
    res2 = nnkscope.analyze(str(tmp_path / "f.npz"), y=y, out=tmp_path / "run2", k=8, report=False)
    pd.testing.assert_frame_equal(res2.layers[METRICS], b[METRICS])
    res3 = nnkscope.analyze(_net(), X=X, y=y, out=tmp_path / "run3", k=8, report=False)  # direct children
    assert res3.layers.layer.tolist() == ["input", "0", "1", "2"]


@pytest.mark.parametrize("call, error, match", [
    (lambda X, y, o: nnkscope.analyze(_net(), X=X[:, :5], y=y, out=o), InputShapeError,
     r"X has shape \(60, 5\).*mat1 and mat2 shapes cannot be multiplied"),
    (lambda X, y, o: nnkscope.analyze(_net(), X=X, y=y[:-1], out=o), InputShapeError, r"one label per row \(60\)"),
    (lambda X, y, o: nnkscope.analyze(_net(), X=X, y=y, layers=["9"], out=o), InvalidParameterError,
     "no module matches '9'"),
    (lambda X, y, o: nnkscope.analyze(_net(), y=y, out=o), InvalidParameterError, "needs the inputs X"),
    (lambda X, y, o: nnkscope.analyze({"a": X}, y=y, out=o, kk=3), InvalidParameterError, r"unknown setting\(s\)"),
    (lambda X, y, o: nnkscope.analyze({"a": X}, out=o), InvalidParameterError, "needs labels"),
    (lambda X, y, o: nnkscope.analyze([1, 2], y=y, out=o), InvalidParameterError, "got list"),
])
def test_analyze_refuses_bad_input_before_writing(tmp_path, data, call, error, match):
    X, y = data
    with pytest.raises(error, match=match):
        call(X, y, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_layer_monitor_checks_its_arguments(tmp_path, data):
    from nnkscope.studies.integrations import LayerMonitor

    X, y = data
    with pytest.raises(InvalidParameterError, match="every must be a positive"):
        LayerMonitor(tmp_path / "r", X, y, ["0"], every=0)
    with pytest.raises(InvalidParameterError, match="give X and layers"):
        LayerMonitor(tmp_path / "r", y=y)
    with pytest.raises(InputShapeError, match="one label per row"):
        LayerMonitor(tmp_path / "r", X, y[:5], ["0"])
    m = LayerMonitor(tmp_path / "r", X, y, ["0"], every=3, k=8)
    assert [e for e in range(8) if m.due(e)] == [0, 3, 6]


def test_lightning_callback(tmp_path, data):
    L = pytest.importorskip("lightning")
    from nnkscope.studies.integrations import LightningCallback

    X, y = data

    class Lit(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            x, t = batch
            return torch.nn.functional.cross_entropy(self(x), t)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ds = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    dl = torch.utils.data.DataLoader(ds, batch_size=20)
    module = Lit()
    cb = LightningCallback(tmp_path / "run", X, y, ["net.0", "net.2"], every=2, k=8)
    trainer = L.Trainer(max_epochs=2, callbacks=[cb], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, dl)
    t = RunStore(tmp_path / "run", create=False).read("layers")
    pairs = sorted(set(zip(t.epoch, t.layer, strict=True)))
    assert pairs == [(e, n) for e in (0, 2) for n in ("input", "net.0", "net.2")]
    # epoch 2 was measured on the trained weights: they give the same numbers measured by hand
    ref = RunStore(tmp_path / "ref")
    measure_layers({"input": X, **capture(module, X, ["net.0", "net.2"])}, y, ref, k=8)
    a = t[t.epoch == 2].sort_values("layer_index").reset_index(drop=True)
    pd.testing.assert_frame_equal(a[METRICS], ref.read("layers").sort_values("layer_index")
                                  .reset_index(drop=True)[METRICS])


def test_huggingface_trainer_callback(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from nnkscope.studies.integrations import TrainerCallback

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    words = "the a ball team won match food cook bread sun rain cold".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=3)
    model = transformers.BertForSequenceClassification(cfg)
    r = np.random.default_rng(0)
    topics = [words[2:6], words[6:9], words[9:12]]
    y = np.repeat([0, 1, 2], 8)
    texts = [" ".join(r.choice(topics[c], 3)) for c in y]
    enc = tok(texts, padding=True, return_tensors="pt")

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                    "labels": torch.tensor(y[i])}

    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), num_train_epochs=2,
                                          per_device_train_batch_size=12, report_to=[], use_cpu=True,
                                          save_strategy="no", logging_strategy="no", seed=0, disable_tqdm=True)
    cb = TrainerCallback(tmp_path / "run", y=y, texts=texts, tokenizer=tok, k=5)
    transformers.Trainer(model=model, args=args, train_dataset=DS(), callbacks=[cb]).train()
    t = RunStore(tmp_path / "run", create=False).read("layers")
    pairs = sorted(set(zip(t.epoch, t.layer, strict=True)))
    assert pairs == [(e, n) for e in (0, 1, 2) for n in ("embeddings", "layer1", "layer2")]
    assert model.training  # the callback gave the model back in the mode it found it
