"""The layer-wise / training study end to end on a tiny config, its resume, and the report."""

import re

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")

from nnkscope.cli import main  # noqa: E402
from nnkscope.nn.datasets import load_digits, per_class_subset  # noqa: E402
from nnkscope.nn.models import MLP, train_classifier  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies import TrainingCallback, layerwise  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    X, y = load_digits()
    idx = per_class_subset(y, 20, seed=0)
    return X[idx], y[idx]


def test_training_study_end_to_end_and_resume(tmp_path, tiny):
    X, y = tiny
    torch.manual_seed(0)
    model = MLP(64, 32, 1, 10)
    store = RunStore(tmp_path / "run", params={"tiny": True})
    cb = TrainingCallback(store, X, y, "blocks.*", every=0, epochs=[1, 3], k=10)
    train_classifier(model, X, y, epochs=3, seed=0, callback=cb)
    layers = store.read("layers")
    assert sorted(layers.epoch.unique()) == [1, 3]
    assert set(layers.layer) == {"input", "blocks.0", "blocks.1"}
    assert layers.groupby("epoch").layer_index.apply(sorted).tolist() == [[0, 1, 2], [0, 1, 2]]
    points = store.read("points")
    assert len(points) == 2 * 3 * len(X) and not points.drop(columns="label").isna().any().any()
    assert len(store.read("fits")) == 2
    # the input layer's metrics do not depend on training
    a = points[(points.layer == "input") & (points.epoch == 1)].drop(columns="epoch").reset_index(drop=True)
    b = points[(points.layer == "input") & (points.epoch == 3)].drop(columns="epoch").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # resume: a second pass over finished units computes nothing and changes nothing
    before = store.read("points")
    assert layerwise(model, X, y, "blocks.*", store, epoch=3, k=10) == {}
    pd.testing.assert_frame_equal(store.read("points"), before)
    # the report: Plotly figures (layers, epochs, distributions), takeaways, the point explorer
    page = write_report(tmp_path / "run").read_text()
    assert len(re.findall(r"<div class='plot' data-spec=", page)) == 3
    assert "separation fuzziness" in page and "the law of equi-separation (threshold r &lt;= -0.95)" in page
    assert page.count("class='explorer'") == 1


def test_study_measures_the_layers_a_manual_pass_produces(tmp_path, tiny):
    from nnkscope.measures.metrics import point_metrics
    from nnkscope.nn.models import hidden_features

    X, y = tiny
    torch.manual_seed(1)
    model = MLP(64, 16, 1, 10)
    store = RunStore(tmp_path / "r")
    layerwise(model, X, y, "blocks.*", store, k=8, include_input=False)
    H = hidden_features(model, X)[1]
    df, _ = point_metrics(H, y, 8, duplicates="keep", check_class_sizes=False)
    got = store.read("points").query("layer == 'blocks.1'").reset_index(drop=True)
    np.testing.assert_allclose(got.nnk_degree, df.nnk_degree)
    np.testing.assert_allclose(got.interpolation_error, df.interpolation_error, atol=1e-6)


def test_cli_demo_and_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out and (tmp_path / "demo" / "report.html").exists()
    assert main(["report", str(tmp_path / "demo"), "-o", str(tmp_path / "again.html")]) == 0
    page = (tmp_path / "again.html").read_text()
    # 4 figures of the training study (across layers, through training, distributions, curve), 3 of explanations
    assert page.count("<div class='plot' data-spec=") == 4 + 3 and "Reliability of each explanation" in page
    assert main(["report", str(tmp_path / "nothing")]) == 2
