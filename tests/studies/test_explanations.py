"""Explanations of test points in layerwise runs: the table reproduces the NNK classifier on independently
recomputed features, thumbnails are the test images, the report section follows the contract, resume and errors."""

import base64
import io
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("duckdb")
go = pytest.importorskip("plotly.graph_objects")
plt = pytest.importorskip("matplotlib.pyplot")

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.measures.interpolation import NNKClassifier  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.studies.explanations import explanations_section  # noqa: E402
from nnkscope.studies.figures import Figure, Term  # noqa: E402
from nnkscope.studies.registry import resolve_config, run_study  # noqa: E402

GENERIC = {"model", "layer", "seed", "epoch"}  # keys the report's page explains once
CFG = {"data": {"name": "digits", "n_train": 300, "n_test": 120}, "model": {"width": 16, "depth": 1},
       "train": {"epochs": 3}, "k": 8, "eval_per_class": 10, "explain": {"n_queries": 6, "n_train": 0}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "run"
    cfg = resolve_config("layerwise", CFG)
    store, _ = run_study("layerwise", cfg, out)
    return cfg, store, out


def test_table_reproduces_the_nnk_classifier_on_recomputed_features(run):
    from nnkscope.nn.capture import capture
    from nnkscope.studies.common import build_model, load_data, train

    cfg, store, _ = run
    t = store.read("explanations")
    layers = store.read("layers")
    last = layers.sort_values("layer_index").layer.iloc[-1]
    assert (t.layer == last).all() and last != "input" and (t.epoch == 3).all()
    assert t["query"].nunique() == 6
    # the same model trained again (seeded) and its features captured independently of the study
    data = load_data(cfg["data"])
    model = build_model(cfg["model"], data, cfg["seed"])
    train(model, data.X_train, data.y_train, dict(cfg["train"]), cfg["seed"])
    F = capture(model, np.concatenate([data.X_train, data.X_test]), [last])[last]
    F_train, F_test = F[:len(data.X_train)], F[len(data.X_train):]
    queries = t.groupby("query", sort=True).first()
    clf = NNKClassifier(k=8).fit(F_train, data.y_train)
    assert queries.prediction.tolist() == clf.predict(F_test[queries.index.to_numpy()]).tolist()
    assert queries.label.tolist() == data.y_test[queries.index.to_numpy()].tolist()
    assert (queries.correct == (queries.prediction == queries.label)).all()
    # neighbours are training rows with their own labels; shares sum to 1 per query
    assert (t.neighbor_label.to_numpy() == data.y_train[t.neighbor.to_numpy()]).all()
    assert np.allclose(t.groupby("query").share.sum(), 1.0)
    # thumbnails are the 8x8 images, dark ink on white, scaled by the training range
    lo, hi = float(data.X_train.min()), float(data.X_train.max())
    r = t.iloc[0]
    for png, row in ((r.query_thumbnail, data.X_test[r["query"]]), (r.neighbor_thumbnail, data.X_train[r.neighbor])):
        img = plt.imread(io.BytesIO(base64.b64decode(png)))
        expect = np.round(255 * (1 - np.clip((row.reshape(8, 8) - lo) / (hi - lo), 0, 1))) / 255
        assert img.shape == (8, 8) and np.allclose(img, expect, atol=1e-6)


def test_section_follows_the_report_contract(run):
    _, store, out = run
    sec = explanations_section(store)
    assert sec["title"] and all(re.search(r"\d", s) for s in sec["takeaways"])
    per_query = store.read("explanations").groupby("query").first()
    right, low = int(per_query.correct.sum()), int((per_query.reliability < 0.5).sum())
    assert f"{right} of 6 explained test points are predicted correctly" in sec["takeaways"][0]
    assert f"{low} of 6 explanations have reliability below 0.5" in sec["takeaways"][1]
    missing = [c for c in sec["table"].columns if c not in sec["glossary"] and c not in GENERIC]
    assert not missing and all(isinstance(v, Term) for v in sec["glossary"].values())
    assert "query_thumbnail" not in sec["table"]
    assert [f.title for f in sec["figures"]] == ["Why each test point got its prediction",
                                                 "Reliability of each explanation",
                                                 "Test points and their heaviest neighbours"]
    for f in sec["figures"]:
        assert isinstance(f, Figure) and isinstance(f.plot, go.Figure) and f.caption and len(f.plot.data)
        lean = go.Figure(f.plot)
        lean.layout.template = None
        assert len(lean.to_json()) < 150_000
    bars = sec["figures"][0].plot.data
    assert sum(len(b.x) for b in bars) == len(store.read("explanations"))
    # every query (6 <= 8 shown) with at most 6 of its neighbours, hover text on each
    assert len(sec["figures"][2].plot.layout.images) == 6 + np.minimum(per_query.n_neighbors, 6).sum()
    assert len(sec["figures"][2].plot.data[0].hovertext) == len(sec["figures"][2].plot.layout.images)
    page = write_report(out).read_text()
    assert "Explanations: test points and their NNK neighbours" in page


def test_resume_recomputes_nothing_and_errors_come_first(run, tmp_path):
    cfg, _, out = run
    parts = sorted((out / "explanations").rglob("part.parquet"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    run_study("layerwise", cfg, out)
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    bad = resolve_config("layerwise", dict(CFG, explain={"layer": "blocks.9"}))
    with pytest.raises(InvalidParameterError, match=r"explain.layer 'blocks.9' is not one of the measured layers "
                                                    r"\['input', 'blocks.0'"):
        run_study("layerwise", bad, tmp_path / "bad")
    assert not (tmp_path / "bad" / "layers").exists()
    with pytest.raises(InvalidParameterError, match="explain.n_queries"):
        resolve_config("layerwise", dict(CFG, explain={"n_queries": -1}))
    off = resolve_config("layerwise", dict(CFG, explain={"n_queries": 0}))
    store, _ = run_study("layerwise", off, tmp_path / "off")
    assert "explanations" not in store.tables()


def test_own_data_keeps_the_users_row_ids_and_labels(tmp_path):
    from nnkscope.nn.datasets import load_digits

    X, y = load_digits()
    labels = np.array([f"d{v}" for v in y[:400]])
    np.save(tmp_path / "X.npy", X[:400].astype(np.float32))
    np.save(tmp_path / "y.npy", labels)
    cfg = resolve_config("layerwise", {"data": {"X": str(tmp_path / "X.npy"), "y": str(tmp_path / "y.npy")},
                                       "model": {"width": 16, "depth": 1}, "train": {"epochs": 2}, "k": 8,
                                       "eval_per_class": 5, "explain": {"n_queries": 4}})
    store, _ = run_study("layerwise", cfg, tmp_path / "run")
    t = store.read("explanations")
    assert t["query"].nunique() == 4 and "query_thumbnail" not in t  # 64 features, no image shape: no thumbnails
    assert (labels[t["query"].to_numpy()] == t["label"].to_numpy()).all()
    assert (labels[t["neighbor"].to_numpy()] == t["neighbor_label"].to_numpy()).all()
    assert not set(t["query"]) & set(t["neighbor"])  # queries come from the test split, neighbours from training
    assert len(explanations_section(store)["figures"]) == 2
