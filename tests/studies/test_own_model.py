"""The user's own model, data and saved features: YAML, --features, compare, and every bad input refused (with a
clear nnkscope error) before anything is written."""

import re
import textwrap

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")
pytest.importorskip("yaml")

from nnkscope.cli import main  # noqa: E402
from nnkscope.errors import FileFormatError, InputShapeError, InvalidParameterError, NNKScopeError  # noqa: E402
from nnkscope.nn.capture import capture  # noqa: E402
from nnkscope.nn.models import weights_fingerprint  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.layerwise import measure_layers  # noqa: E402
from nnkscope.studies.registry import load_config, run_study  # noqa: E402

METRICS = ["layer_index", "mean_nnk_degree", "loo_error_nnk", "homogeneous_fraction_H", "separation_fuzziness",
           "label_variation", "nc1"]

NET = '''
import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, width=8, n_classes=3):
        super().__init__()
        self.conv1 = nn.Conv1d(1, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.fc1 = nn.Linear(width, 16)
        self.head = nn.Linear(16, n_classes)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(torch.relu(self.fc1(x.mean(-1))))


def broken(**kwargs):
    raise ValueError("no such architecture")


def make_data():
    import numpy as np
    r = np.random.default_rng(5)
    return r.normal(size=(30, 1, 12)), np.repeat([0, 1, 2], 10)
'''

CONFIG = """\
model:
  factory: net.py:TinyCNN
  kwargs: {width: 8}
  checkpoint: tiny.pt
data:
  X: x.npy
  y: y.npy
layers: [conv1, conv2, fc1, head]
train: {epochs: 0}
k: 8
"""


def _tiny(width=8, seed=3):
    """The same architecture as net.py, built here (the test's own copy, not the file's)."""
    nn = torch.nn

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(1, width, 3, padding=1)
            self.conv2 = nn.Conv1d(width, width, 3, padding=1)
            self.fc1 = nn.Linear(width, 16)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.head(torch.relu(self.fc1(x.mean(-1))))

    torch.manual_seed(seed)
    return TinyCNN()


@pytest.fixture
def user(tmp_path):
    """A project folder outside the package: net.py, a checkpoint, inputs (N, 1, 12) and string labels."""
    d = tmp_path / "project"
    d.mkdir()
    (d / "net.py").write_text(NET)
    r = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], 30)
    X = r.normal(size=(3, 1, 12))[codes] + 0.6 * r.normal(size=(90, 1, 12))
    y = np.array(["cat", "dog", "eel"])[codes]
    np.save(d / "x.npy", X)
    np.save(d / "y.npy", y)
    torch.save(_tiny().state_dict(), d / "tiny.pt")
    (d / "study.yaml").write_text(CONFIG)
    return d, X, y


def _config(d, text: str = CONFIG, **replace):
    for old, new in replace.items():
        text = text.replace(old, new)
    (d / "s.yaml").write_text(text)
    return d / "s.yaml"


def test_yaml_own_model_gives_the_table_of_features_captured_by_hand(tmp_path, user, capsys):
    d, X, y = user
    assert main(["study", "layerwise", "--config", str(d / "study.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert "TinyCNN" in capsys.readouterr().out
    got = RunStore(tmp_path / "run", create=False)
    # by hand: the same architecture, the checkpoint's weights, the inputs as float32, measure_layers
    model = _tiny(seed=99)
    model.load_state_dict(torch.load(d / "tiny.pt", weights_only=True))
    X32 = X.astype(np.float32)
    acts = capture(model, X32, ["conv1", "conv2", "fc1", "head"])
    ref = RunStore(tmp_path / "ref")
    measure_layers({"input": X32, **acts}, y, ref, k=8)
    a = got.read("layers").set_index("layer").sort_values("layer_index")
    b = ref.read("layers").set_index("layer").sort_values("layer_index")
    assert list(a.index) == ["input", "conv1", "conv2", "fc1", "head"] == list(b.index)
    pd.testing.assert_frame_equal(a[METRICS], b[METRICS])
    # identity: the weights as loaded, the data's and labels' content, in every layer's row and in the manifest
    assert set(a.model_fingerprint) == {weights_fingerprint(model)}
    inputs = got.manifest["params"]["inputs"]
    assert inputs["model_fingerprint"] == weights_fingerprint(model)
    assert {"data.X", "data.y", "model.checkpoint", "model.factory", "data_fingerprint"} <= set(inputs)
    # every point is a row of the user's data: `sample` joins back to X and y
    pts = got.query("SELECT sample, layer FROM points WHERE layer = 'fc1' ORDER BY sample")
    assert pts["sample"].tolist() == list(range(90))
    assert (tmp_path / "run" / "report.html").exists()
    # the same folder again: nothing to do, same table
    assert main(["study", "layerwise", "--config", str(d / "study.yaml"), "--out", str(tmp_path / "run")]) == 0


def test_a_changed_file_at_the_same_path_is_refused(tmp_path, user, capsys):
    d, X, y = user
    cfg = load_config("layerwise", d / "study.yaml")
    run_study("layerwise", cfg, tmp_path / "run")
    torch.save(_tiny(seed=4).state_dict(), d / "tiny.pt")  # retrained, saved over the old file
    with pytest.raises(InvalidParameterError, match=r"model.checkpoint.*changed.*new run folder"):
        run_study("layerwise", load_config("layerwise", d / "study.yaml"), tmp_path / "run")
    np.save(d / "x.npy", X + 1.0)
    assert main(["study", "layerwise", "--config", str(d / "study.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "data.X" in capsys.readouterr().err


def test_relative_paths_resolve_from_the_config_folder(tmp_path, user, monkeypatch):
    d, _, _ = user
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load_config("layerwise", d / "study.yaml")
    assert cfg["data"]["X"] == str(d / "x.npy") and cfg["model"]["factory"] == f"{d / 'net.py'}:TinyCNN"
    assert cfg["eval_per_class"] == 0 and cfg["data"]["name"] == ""  # own data: every row, no built-in set


def test_training_own_data_measures_held_out_rows(tmp_path, user):
    d, X, y = user
    cfg = load_config("training", _config(d, **{"train: {epochs: 0}": "train: {epochs: 2, batch_size: 16}\n"
                                                "epochs: [0, 2]"}))
    _, table = run_study("training", cfg, tmp_path / "run")
    assert sorted(set(table.epoch)) == [0, 2]
    store = RunStore(tmp_path / "run", create=False)
    samples = np.sort(store.query("SELECT DISTINCT sample FROM points")["sample"].to_numpy())
    # the seeded stratified split: 20% of each class held out (6 of 30) and measured; the rest trained on
    assert len(samples) == 18 and all((y[samples] == c).sum() == 6 for c in ("cat", "dog", "eel"))
    assert "train_history" in store.tables()


def test_factory_data_and_an_importable_factory(tmp_path, user):
    d, _, _ = user
    cfg = load_config("layerwise", _config(d, **{"X: x.npy\n  y: y.npy": "X: net.py:make_data",
                                                 "  checkpoint: tiny.pt\n": ""}))
    _, table = run_study("layerwise", cfg, tmp_path / "run")
    assert len(table) == 5 and set(table.model) == {"TinyCNN"}


@pytest.mark.parametrize("replace, error, match", [
    ({"net.py:TinyCNN": "nowhere/net.py:TinyCNN"}, FileFormatError, r"no such file .*nowhere/net.py"),
    ({"net.py:TinyCNN": "net.py:broken"}, InvalidParameterError, r"net.py:broken raised ValueError: no such arch"),
    ({"net.py:TinyCNN": "net.py:TinyNet"}, InvalidParameterError, r"has no callable 'TinyNet'; it has .*TinyCNN"),
    ({"net.py:TinyCNN": "no_such_package.models:Net"}, InvalidParameterError, "cannot import module"),
    ({"{width: 8}": "{width: 6}"}, FileFormatError, r"shape mismatches: conv1.bias: file \(8,\) vs model \(6,\), "
                                                    r"conv1.weight: file \(8, 1, 3\) vs model \(6, 1, 3\)"),
    ({"tiny.pt": "renamed.pt"}, FileFormatError, r"missing keys \(in the model, not in the file\): fc1.bias, "
                                                 r"fc1.weight; unexpected keys \(in the file, not in the model\): "
                                                 r"dense.bias, dense.weight"),
    ({"tiny.pt": "whole.pt"}, FileFormatError, r"weights_only=True.*checkpoint_trusted: true"),
    ({"x.npy": "flat.npy"}, InputShapeError, r"X has shape \(90, 12\).*the model raised RuntimeError"),
    ({"y.npy": "short.npy"}, InputShapeError, r"data.y must be 1-D with one label per row \(90\); got shape \(89,"),
    ({"fc1, head": "fc1, fc9"}, InvalidParameterError, r"no module matches 'fc9'; available: conv1, conv2"),
    ({"  y: y.npy\n": ""}, InvalidParameterError, "data.X needs labels"),
    ({"x.npy": "objects.npy"}, FileFormatError, "holds Python objects"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, user, replace, error, match):
    d, X, y = user
    state = _tiny().state_dict()
    torch.save({("dense" + k[3:] if k.startswith("fc1") else k): v for k, v in state.items()}, d / "renamed.pt")
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), d / "whole.pt")  # a whole pickled model
    np.save(d / "flat.npy", X[:, 0])
    np.save(d / "short.npy", y[:-1])
    np.save(d / "objects.npy", np.array([{"a": 1}] * 90, dtype=object), allow_pickle=True)
    with pytest.raises(error, match=match):
        run_study("layerwise", load_config("layerwise", _config(d, **replace)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_whole_model_checkpoint_only_when_trusted(tmp_path, user):
    d, _, _ = user
    import sys

    sys.path.insert(0, str(d))  # the pickle names its class's module; the user's folder is importable
    try:
        import net

        torch.manual_seed(3)
        torch.save(net.TinyCNN(width=8), d / "whole.pt")
        cfg = load_config("layerwise", _config(d, **{"  factory: net.py:TinyCNN\n  kwargs: {width: 8}\n": "",
                                                     "tiny.pt": "whole.pt\n  checkpoint_trusted: true"}))
        _, table = run_study("layerwise", cfg, tmp_path / "run")
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("net", None)
    assert set(table.model) == {"whole"} and len(table) == 5


def test_config_errors_name_the_conflict(user):
    from nnkscope.studies.registry import resolve_config

    d, _, _ = user
    with pytest.raises(InvalidParameterError, match="data.name picks a built-in dataset"):
        resolve_config("layerwise", {"data": {"name": "digits", "X": "x.npy", "y": "y.npy"}})
    with pytest.raises(InvalidParameterError, match="features replace the model"):
        resolve_config("layerwise", {"features": "f.npz", "data": {"y": "y.npy"}, "model": {"factory": "a.py:B"}})
    with pytest.raises(InvalidParameterError, match=r"unknown key\(s\) \['features'\] in training"):
        resolve_config("training", {"features": "f.npz", "data": {"y": "y.npy"}})
    with pytest.raises(InvalidParameterError, match=r"analysed as loaded \(train.epochs: 0\)"):
        resolve_config("layerwise", {"model": {"huggingface": "m"}, "data": {"text": "t.txt", "y": "y.txt"}})
    with pytest.raises(InvalidParameterError, match="unknown key"):
        resolve_config("stability", {"model": {"factory": "a.py:B"}})  # kinds without own models refuse the keys


# ---------------------------------------------------------------------------------------------------------------
# saved features


@pytest.fixture
def feats(tmp_path):
    r = np.random.default_rng(1)
    codes = np.repeat([0, 1, 2], 40)
    layers = {"l1": r.normal(size=(120, 6)), "l2": np.eye(3)[codes] * 2 + r.normal(size=(120, 3)),
              "l3": np.eye(3)[codes] * 5 + r.normal(size=(120, 3))}
    np.savez(tmp_path / "feats.npz", **layers)
    y = np.array(["a", "b", "c"])[codes]
    np.save(tmp_path / "y.npy", y)
    return layers, y


def test_features_cli_gives_the_table_of_measure_layers(tmp_path, feats, capsys):
    layers, y = feats
    out = tmp_path / "run"
    assert main(["study", "layerwise", "--features", str(tmp_path / "feats.npz"), "--labels",
                 str(tmp_path / "y.npy"), "--out", str(out)]) == 0
    ref = RunStore(tmp_path / "ref")
    measure_layers(layers, y, ref)  # the study's default k = 20
    a = RunStore(out, create=False).read("layers").set_index("layer").sort_values("layer_index")
    b = ref.read("layers").set_index("layer").sort_values("layer_index")
    pd.testing.assert_frame_equal(a[METRICS], b[METRICS])
    assert list(a.index) == ["l1", "l2", "l3"] and set(a.model) == {"feats"}
    # several .npy files, in the order given, are the same layers
    for name, H in layers.items():
        np.save(tmp_path / f"{name}.npy", H)
    assert main(["study", "layerwise", "--features", *[str(tmp_path / f"{n}.npy") for n in layers], "--labels",
                 str(tmp_path / "y.npy"), "--out", str(tmp_path / "run2"), "--no-report"]) == 0
    c = RunStore(tmp_path / "run2", create=False).read("layers").set_index("layer").sort_values("layer_index")
    pd.testing.assert_frame_equal(a[METRICS], c[METRICS])
    # report and query work on the run folder
    assert main(["report", str(tmp_path / "run2")]) == 0
    capsys.readouterr()
    assert main(["query", str(out), "SELECT count(DISTINCT sample) AS n FROM points"]) == 0
    assert "120" in capsys.readouterr().out


@pytest.mark.parametrize("make, error, match", [
    (lambda p, y: np.savez(p / "f.npz", a=np.zeros((120, 2, 2)), b=np.zeros((120, 3))), InputShapeError,
     r"layer 'a' has shape \(120, 2, 2\); features must be 2-D"),
    (lambda p, y: np.savez(p / "f.npz", a=np.zeros((120, 2)), b=np.zeros((119, 3))), InputShapeError,
     "layer 'b' has 119 rows but layer 'a' has 120"),
    (lambda p, y: np.savez(p / "f.npz", a=np.ones((119, 2))), InputShapeError,
     r"data.y must be 1-D with one label per row \(119\)"),
    (lambda p, y: (p / "f.npz").write_text("not a zip"), FileFormatError, "cannot read it as .npz"),
])
def test_bad_features_are_refused_before_anything_is_written(tmp_path, feats, capsys, make, error, match):
    make(tmp_path, feats[1])
    argv = ["study", "layerwise", "--features", str(tmp_path / "f.npz"), "--labels", str(tmp_path / "y.npy"),
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    from nnkscope.cli import _study_config, build_parser

    with pytest.raises(error, match=match):
        run_study("layerwise", _study_config(build_parser().parse_args(argv)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_features_flags_are_checked(tmp_path, feats, capsys):
    f, y = str(tmp_path / "feats.npz"), str(tmp_path / "y.npy")
    assert main(["study", "layerwise", "--features", f, "--out", str(tmp_path / "r")]) == 2
    assert "--features needs --labels" in capsys.readouterr().err
    assert main(["study", "training", "--features", f, "--labels", y, "--out", str(tmp_path / "r")]) == 2
    assert "saved features have no training study" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# compare


def test_compare_a_rotated_copy_has_cka_one_on_the_diagonal(tmp_path, feats, capsys):
    layers, y = feats
    r = np.random.default_rng(2)
    rotated = {}
    for name, H in layers.items():
        Q, _ = np.linalg.qr(r.normal(size=(H.shape[1], H.shape[1])))
        rotated[name] = H @ Q
    np.savez(tmp_path / "rot.npz", **rotated)
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "feats.npz"), str(tmp_path / "rot.npz"), "--out", str(out), "-k",
                 "10"]) == 0
    t = RunStore(out, create=False).read("similarity")
    assert len(t) == 3 * 3 * 3  # layer x layer x measure
    assert set(t.measure) == {"linear_cka", "nnk_jaccard", "edge_agreement"}
    assert set(t.model_a) == {"feats"} and set(t.model_b) == {"rot"}
    diag = t[t.layer_a == t.layer_b]
    np.testing.assert_allclose(diag[diag.measure == "linear_cka"].value, 1.0, rtol=0, atol=1e-12)
    # cosine NNK graphs are rotation invariant too: the same neighbourhoods
    np.testing.assert_array_equal(diag[diag.measure == "nnk_jaccard"].value, 1.0)
    off = t[(t.layer_a == "l1") & (t.layer_b == "l3") & (t.measure == "nnk_jaccard")].iloc[0]
    assert off.value < 0.5 and np.isfinite(off.chance)
    # linear CKA against the formula on one off-diagonal pair
    A, B = layers["l2"], rotated["l3"]
    A, B = A - A.mean(0), B - B.mean(0)
    want = np.linalg.norm(B.T @ A) ** 2 / (np.linalg.norm(A.T @ A) * np.linalg.norm(B.T @ B))
    got = t[(t.layer_a == "l2") & (t.layer_b == "l3") & (t.measure == "linear_cka")].value.iloc[0]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    page = (out / "report.html").read_text()
    assert "feats vs rot: layer x layer similarity" in page


def test_compare_with_labels_and_one_file(tmp_path, feats):
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "feats.npz"), "--labels", str(tmp_path / "y.npy"), "--measures",
                 "linear_cka", "--out", str(out)]) == 0
    store = RunStore(out, create=False)
    t = store.read("similarity")
    assert len(t) == 9 and set(t.model_a) == set(t.model_b) == {"feats"}
    np.testing.assert_allclose(t[t.layer_a == t.layer_b].value, 1.0, atol=1e-12)
    assert sorted(store.read("layers").layer) == ["l1", "l2", "l3"]  # the labels add the layer-wise metrics
    assert "Layers and epochs" in (out / "report.html").read_text()


def test_compare_refuses_bad_input(tmp_path, feats, capsys):
    np.savez(tmp_path / "short.npz", l1=np.zeros((100, 3)))
    assert main(["compare", str(tmp_path / "feats.npz"), str(tmp_path / "short.npz"), "--out",
                 str(tmp_path / "c")]) == 2
    assert "has 100 rows but" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "feats.npz"), "--measures", "no_such_measure", "--out",
                 str(tmp_path / "c")]) == 2
    assert "measures must be a list of one of" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_compare_uses_the_similarity_registry(tmp_path, feats):
    """Measures of ``nnkscope.similarity`` (when installed) are used by name: Procrustes, a distance, is 0 on the
    diagonal of a set against its rotated copy."""
    pytest.importorskip("nnkscope.similarity")
    layers, _ = feats
    r = np.random.default_rng(3)
    np.savez(tmp_path / "rot.npz", **{n: H @ np.linalg.qr(r.normal(size=(H.shape[1],) * 2))[0]
                                      for n, H in layers.items()})
    assert main(["compare", str(tmp_path / "feats.npz"), str(tmp_path / "rot.npz"), "--measures", "procrustes",
                 "debiased_cka", "--out", str(tmp_path / "c")]) == 0
    page = (tmp_path / "c" / "report.html").read_text()
    assert re.search(r"procrustes: most similar (l\d) ~ \1 \(0.000\)", page)  # a distance: its minimum
    t = RunStore(tmp_path / "c", create=False).read("similarity")
    diag = t[t.layer_a == t.layer_b]
    np.testing.assert_allclose(diag[diag.measure == "procrustes"].value, 0.0, atol=1e-6)
    np.testing.assert_allclose(diag[diag.measure == "debiased_cka"].value, 1.0, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# a local Hugging Face folder


@pytest.fixture
def tiny_bert(tmp_path):
    """A random 2-layer BERT and a word-level tokenizer, built and saved locally (nothing is downloaded)."""
    transformers = pytest.importorskip("transformers")
    words = "the a ball team won match food cook bread sun rain cold".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16)
    folder = tmp_path / "tinybert"
    transformers.BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    r = np.random.default_rng(0)
    topics = [words[2:6], words[6:9], words[9:12]]
    codes = np.repeat([0, 1, 2], 12)
    texts = [" ".join(r.choice(topics[c], 3)) for c in codes]
    return folder, texts, np.array(["sport", "food", "weather"])[codes]


def test_huggingface_folder_through_yaml(tmp_path, tiny_bert, monkeypatch):
    from nnkscope.nn.capture import hidden_states
    from nnkscope.nn.loaders import load_huggingface

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, texts, y = tiny_bert
    (tmp_path / "sentences.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "labels.txt").write_text("\n".join(y) + "\n")
    (tmp_path / "hf.yaml").write_text(textwrap.dedent("""\
        model: {huggingface: tinybert}
        data: {text: sentences.txt, y: labels.txt}
        train: {epochs: 0}
        k: 6
        """))
    _, table = run_study("layerwise", load_config("layerwise", tmp_path / "hf.yaml"), tmp_path / "run")
    a = table.set_index("layer").sort_values("layer_index")
    assert list(a.index) == ["embeddings", "layer1", "layer2"] and set(a.model) == {"tinybert"}
    bert, tok = load_huggingface(folder)
    ref = RunStore(tmp_path / "ref")
    measure_layers(hidden_states(bert, tok, texts), y, ref, k=6)
    b = ref.read("layers").set_index("layer").sort_values("layer_index")
    pd.testing.assert_frame_equal(RunStore(tmp_path / "run", create=False).read("layers").set_index("layer")
                                  .sort_values("layer_index")[METRICS], b[METRICS])
    with pytest.raises(NNKScopeError, match="not a Hugging Face model folder"):
        load_huggingface(tmp_path)


def test_compare_kind_takes_own_models_on_own_data(tmp_path, user):
    d, X, y = user
    (d / "cmp.yaml").write_text(textwrap.dedent("""\
        data: {X: x.npy, y: y.npy}
        train: {epochs: 0}
        k: 8
        models:
          - {name: loaded, layers: [fc1, head], model: {factory: net.py:TinyCNN, kwargs: {width: 8},
                                                       checkpoint: tiny.pt}}
          - {name: fresh, seed: 1, layers: [fc1], model: {factory: net.py:TinyCNN, kwargs: {width: 8}}}
        """))
    cfg = load_config("compare", d / "cmp.yaml")
    _, t = run_study("compare", cfg, tmp_path / "run")
    pairs = set(zip(t.a_model + ":" + t.a_layer, t.b_model + ":" + t.b_layer, strict=True))
    assert ("loaded:fc1", "loaded:head") in pairs or ("loaded:head", "loaded:fc1") in pairs
    assert len(t) == 6 and set(t.a_dim) | set(t.b_dim) == {12, 16, 3}  # input (1 x 12), fc1, head
    # the loaded model's fc1 equals the checkpoint's, measured by hand
    from nnkscope.measures.compare import linear_cka

    model = _tiny()
    acts = capture(model, X.astype(np.float32), ["fc1", "head"])
    row = t[(t.a_model + t.b_model).str.count("loaded") == 2].iloc[0]
    np.testing.assert_allclose(row.linear_cka, linear_cka(acts["fc1"].astype(np.float64),
                                                          acts["head"].astype(np.float64)), rtol=1e-6)
    inputs = RunStore(tmp_path / "run", create=False).manifest["params"]["inputs"]
    assert {"models[loaded].model_fingerprint", "models[fresh].model_fingerprint", "data_fingerprint"} <= set(inputs)
    with pytest.raises(FileFormatError, match="does not fit the model"):
        text = (d / "cmp.yaml").read_text().replace("{width: 8},\n", "{width: 6},\n", 1)
        (d / "bad.yaml").write_text(text)
        run_study("compare", load_config("compare", d / "bad.yaml"), tmp_path / "run2")
    assert not (tmp_path / "run2").exists()


def test_compare_takes_a_measure_of_the_similarity_registry_by_name(tmp_path, feats):
    """A measure of ``nnkscope.similarity.MEASURES`` is used by name, with the registry's own value; a distance
    (Procrustes) is marked so its most similar pair is its minimum."""
    from nnkscope.similarity import similarity
    from nnkscope.studies.kinds.compare_features import _higher_is_similar
    from nnkscope.studies.registry import resolve_config

    layers, _ = feats
    cfg = resolve_config("compare-features", {"features": [str(tmp_path / "feats.npz")], "k": 8,
                                              "measures": ["linear_cka", "procrustes"]})
    _, t = run_study("compare-features", cfg, tmp_path / "run")
    got = t[(t.measure == "procrustes") & (t.layer_a == "l1") & (t.layer_b == "l3")].value.iloc[0]
    np.testing.assert_allclose(got, similarity(layers["l1"], layers["l3"], "procrustes"), rtol=1e-12)
    assert not _higher_is_similar("procrustes") and _higher_is_similar("linear_cka")
    with pytest.raises(InvalidParameterError, match="measures must be a list of one of"):
        resolve_config("compare-features", {"features": ["a.npz"], "measures": ["mean_gap"]})


def test_study_with_an_approximate_search_records_its_recall(tmp_path, feats):
    """``search: {method: hnsw, ...}`` builds the graphs on HNSW candidates and the layer table says so (method,
    recall against exact search); a search set as the config asks is refused before anything is written."""
    from nnkscope.studies.registry import resolve_config

    layers, _ = feats
    base = {"features": str(tmp_path / "feats.npz"), "data": {"y": str(tmp_path / "y.npy")}, "k": 8,
            "bootstrap": 0, "explain": {"n_queries": 0}}
    cfg = resolve_config("layerwise", dict(base, search={"method": "hnsw", "M": 16, "ef_search": 64,
                                                         "recall_sample": 50}))
    store, _ = run_study("layerwise", cfg, tmp_path / "run")
    t = store.read("layers")
    assert set(t.knn_method) == {"hnsw"} and t.knn_recall.between(0.9, 1.0).all()
    assert sorted(t.layer) == sorted(layers)
    for bad, match in [({"method": "annoy"}, "method of"), ({"method": "hnsw", "nprobe": 4}, "unknown: ..nprobe"),
                       ({"method": "ivf", "nlist": 0}, "positive integers")]:
        with pytest.raises(InvalidParameterError, match=match):
            resolve_config("layerwise", dict(base, search=bad))
