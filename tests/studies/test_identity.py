"""A stored layer is reused only when everything that produced it matches; undefined geometry is NaN with a reason."""

import numpy as np
import pytest

pytest.importorskip("torch")

from nnkscope.errors import FileFormatError, InvalidParameterError  # noqa: E402
from nnkscope.nn.models import MLP  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.layerwise import layerwise, measure_layers  # noqa: E402
from nnkscope.studies.registry import load_config, resolve_config  # noqa: E402


@pytest.fixture
def feats():
    r = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    return {"a": r.normal(size=(120, 6)), "b": np.eye(3)[y] * 4 + r.normal(size=(120, 3))}, y


def test_same_measurement_is_skipped_and_a_changed_one_refused(tmp_path, feats):
    X, y = feats
    store = RunStore(tmp_path / "run")
    assert sorted(measure_layers(X, y, store, k=8)) == ["a", "b"]
    assert measure_layers(X, y, store, k=8) == {}
    with pytest.raises(InvalidParameterError, match=r"k 8 -> 5.*new run folder"):
        measure_layers(X, y, store, k=5)
    with pytest.raises(InvalidParameterError, match="the data changed"):
        measure_layers({"a": X["a"] + 1.0, "b": X["b"]}, y, store, k=8)
    with pytest.raises(InvalidParameterError, match="the labels changed"):
        measure_layers(X, y[::-1].copy(), store, k=8)
    with pytest.raises(InvalidParameterError, match="kernel 'cosine' -> 'gaussian'"):
        measure_layers(X, y, store, k=8, kernel="gaussian")
    # replacing recomputes and never mixes: the table holds the k=5 rows only
    assert sorted(measure_layers(X, y, store, k=5, on_change="replace")) == ["a", "b"]
    t = store.read("layers")
    assert len(t) == 2 and set(t["k"]) == {5}


def test_retrained_model_is_not_taken_for_the_stored_one(tmp_path):
    import torch

    r = np.random.default_rng(1)
    X = r.normal(size=(90, 4)).astype(np.float32)
    y = np.repeat([0, 1, 2], 30)
    torch.manual_seed(0)
    model = MLP(4, 8, 1, 3)
    store = RunStore(tmp_path / "run")
    assert set(layerwise(model, X, y, "blocks.*", store, k=5)) == {"input", "blocks.0", "blocks.1"}
    assert layerwise(model, X, y, "blocks.*", store, k=5) == {}
    with torch.no_grad():
        model.blocks[0][0].weight.add_(0.5)  # "retrained"
    with pytest.raises(InvalidParameterError, match="model weights changed"):
        layerwise(model, X, y, "blocks.*", store, k=5)


def test_string_and_tensor_labels(tmp_path, feats):
    torch = pytest.importorskip("torch")
    X, y = feats
    names = np.array(["cat", "dog", "eel"])[y]
    a = measure_layers(X, names, RunStore(tmp_path / "s"), k=8)
    b = measure_layers(X, torch.as_tensor(y), RunStore(tmp_path / "t"), k=8)
    assert a["b"]["loo_error_nnk"] == b["b"]["loo_error_nnk"]


def test_undefined_class_geometry_is_nan_with_a_reason(tmp_path):
    r = np.random.default_rng(2)
    y = np.repeat([0, 1, 2, 3], 30)
    H = r.normal(size=(120, 5))
    coinciding = H - np.array([H[y == c].mean(0) for c in range(4)])[y]  # every class mean is the same point
    narrow = r.normal(size=(120, 2))  # 2 dimensions < K - 1 = 3
    feats = {"coinciding": coinciding, "narrow": narrow, "fine": np.eye(4)[y] * 3 + r.normal(size=(120, 4))}
    store = RunStore(tmp_path / "run")
    measure_layers(feats, y, store, k=8)
    t = store.read("layers").set_index("layer")
    assert np.isnan(t.loc["coinciding", "nc1"]) and "coincide" in t.loc["coinciding", "undefined"]
    assert np.isnan(t.loc["narrow", "separation_fuzziness"]) and "K-1" in t.loc["narrow", "undefined"]
    assert np.isfinite(t.loc["fine", "nc1"]) and t.loc["fine", "undefined"] == ""
    assert np.isfinite(t.loc["narrow", "loo_error_nnk"])  # the rest of the layer is measured


@pytest.mark.parametrize("overrides, match", [
    ({"arms": ["bogus"]}, r"arms must be a list of one of"),
    ({"method": "deep"}, r"method must be one of"),
    ({"validation_fraction": 1.5}, r"validation_fraction must be a number in \(0, 1\)"),
])
def test_semantic_config_values_are_refused_early(overrides, match):
    with pytest.raises(InvalidParameterError, match=match):
        resolve_config("early-stopping", overrides)


@pytest.mark.parametrize("kind, overrides, match", [
    ("layerwise", {"eval_per_class": -1}, "eval_per_class must be an integer"),
    ("layerwise", {"data": {"test_size": 1.5}}, r"test_size must be a number in \(0, 1\)"),
    ("layerwise", {"train": {"epochs": -1}}, r"train.epochs must be an integer in \[0"),
    ("layerwise", {"eval_on": "val"}, "eval_on must be one of"),
    ("layerwise", {"pooling": "max"}, "pooling must be one of"),
    ("compare", {"models": [{"name": "m", "model": {"kind": "resnet"}}]}, r"models\[0\].model.kind must be"),
    ("stability", {"seeds": [3]}, "at least two distinct seeds"),
])
def test_config_value_checks(kind, overrides, match):
    with pytest.raises(InvalidParameterError, match=match):
        resolve_config(kind, overrides)


def test_yaml_files_that_are_wrong_in_every_way(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("k: 5\nk: 7\n")
    with pytest.raises(FileFormatError, match="duplicate key 'k' at line 2"):
        load_config("layerwise", dup)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("layers: caf\xe9\n".encode("latin-1"))
    with pytest.raises(FileFormatError, match="not UTF-8"):
        load_config("layerwise", latin)
    with pytest.raises(FileFormatError, match="is a folder"):
        load_config("layerwise", tmp_path)


def test_layer_table_has_peer_measures_and_intervals(tmp_path, feats):
    X, y = feats
    store = RunStore(tmp_path / "run")
    measure_layers(X, y, store, k=8)
    t = store.read("layers").set_index("layer")
    for col in ("id_twonn", "id_mle", "id_pca", "rankme", "participation_ratio", "stable_rank", "spectral_alpha"):
        assert np.isfinite(t[col]).all(), col
    assert t.loc["b", "id_pca"] <= 3  # three informative directions
    for col in ("loo_error_nnk", "mean_nnk_degree", "homogeneous_fraction_H", "mean_diameter"):
        assert (t[f"{col}_ci_low"] <= t[col] + 1e-12).all() and (t[col] <= t[f"{col}_ci_high"] + 1e-12).all(), col
    assert (t["mean_nnk_degree_ci_high"] > t["mean_nnk_degree_ci_low"]).all()  # a real interval, not a point


def test_another_nnkscope_version_is_never_resumed(tmp_path, feats, monkeypatch):
    import importlib

    import nnkscope._version

    lw = importlib.import_module("nnkscope.studies.layerwise")  # the package exports a function of that name

    X, y = feats
    store = RunStore(tmp_path / "run")
    measure_layers(X, y, store, k=8)
    assert set(store.read("layers")["nnkscope_version"]) == {lw.__version__}
    monkeypatch.setattr(lw, "__version__", "99.0")  # as if the package were upgraded between the two calls
    with pytest.raises(InvalidParameterError, match=r"nnkscope \S+ -> 99.0"):
        measure_layers(X, y, store, k=8)
    RunStore(tmp_path / "study", params={"k": 8})
    monkeypatch.setattr(nnkscope._version, "__version__", "99.0")
    with pytest.raises(InvalidParameterError, match="written by nnkscope .* this is 99.0.*new folder"):
        RunStore(tmp_path / "study", params={"k": 8})
    assert RunStore(tmp_path / "study", create=False).tables() == []  # still readable


def test_layer_table_equals_the_standalone_measures(tmp_path, monkeypatch):
    """The layer's shared covariance decomposition and class-geometry arithmetic give what each measure gives on
    its own: NC1 and D as neural_collapse / separation_fuzziness, the spectral summaries and PCA dimension as
    spectral_summary / intrinsic_dimension, and (above SPECTRAL_VIEW_MAX points) the view is the top-2 principal
    scores of every point (an SVD oracle, up to each axis's sign)."""
    import importlib

    from nnkscope import spectral_summary
    from nnkscope.measures.collapse import neural_collapse, separation_fuzziness
    from nnkscope.measures.intrinsic import intrinsic_dimension

    lw = importlib.import_module("nnkscope.studies.layerwise")
    monkeypatch.setattr(lw, "SPECTRAL_VIEW_MAX", 100)
    r = np.random.default_rng(4)
    y = np.repeat([0, 1, 2], 60)
    H = r.normal(size=(180, 6)) * [4.0, 3.0, 2.0, 1.0, 0.5, 0.25] + 2 * np.eye(3, 6)[y] + 10.0
    store = RunStore(tmp_path / "run")
    measure_layers({"h": H}, y, store, k=8, n_boot=0)
    t = store.read("layers").iloc[0]
    assert t["nc1"] == pytest.approx(neural_collapse(H, y)["nc1"], rel=1e-10)
    assert t["separation_fuzziness"] == pytest.approx(separation_fuzziness(H, y), rel=1e-10)
    spec = spectral_summary(H)
    for col, key in (("rankme", "rankme"), ("participation_ratio", "participation_ratio"),
                     ("stable_rank", "stable_rank"), ("spectral_alpha", "alpha")):
        assert t[col] == pytest.approx(spec[key], rel=1e-10), col
    assert t["id_pca"] == intrinsic_dimension(H, "pca")
    assert t["view"] == "pca"
    pts = store.read("points").sort_values("node")
    U, S, _ = np.linalg.svd(H - H.mean(axis=0), full_matrices=False)
    for col, j in (("view_x", 0), ("view_y", 1)):
        v = pts[col].to_numpy()
        np.testing.assert_allclose(np.sign(v @ U[:, j]) * v, U[:, j] * S[j], atol=1e-9 * S[0])


def test_saved_layers_are_held_one_at_a_time(tmp_path, monkeypatch):
    """Layers given as loaders (e.g. memory-mapped .npy files) are loaded for their fingerprint, let go, and
    loaded again when their unit runs: a study of many layers holds one at a time, not all of them."""
    import importlib
    import weakref

    lw = importlib.import_module("nnkscope.studies.layerwise")
    r = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    layers = [np.eye(3)[y] * (i + 1) + r.normal(size=(90, 3)) for i in range(4)]
    live = [0]

    def gone():
        live[0] -= 1

    def loader(i):
        def load():
            H = layers[i].copy()  # a fresh array per load, like np.load
            live[0] += 1
            weakref.finalize(H, gone)
            return H
        return load

    seen = []
    original = lw._measure_unit

    def unit(*args, **kwargs):
        seen.append(live[0])  # arrays alive when a unit starts: only the ones being measured
        return original(*args, **kwargs)

    monkeypatch.setattr(lw, "_measure_unit", unit)
    out = measure_layers({f"l{i}": loader(i) for i in range(4)}, y, RunStore(tmp_path / "run"), k=8, n_boot=0)
    assert sorted(out) == ["l0", "l1", "l2", "l3"] and seen == [0, 0, 0, 0]


@pytest.mark.parametrize("duplicates", ["keep", "error"])
def test_label_variation_shares_the_graphs_search(tmp_path, feats, monkeypatch, duplicates):
    """One neighbour search per layer: label variation reads the NNK graph's cosine candidates, also when the
    study's settings refuse duplicates (the graph then found none, so its candidates are the "keep" ones), and
    equals label_variation's own search."""
    import nnkscope.engine.neighbors as nbm
    from nnkscope.engine.settings import GraphSettings
    from nnkscope.measures.labels import label_variation

    X, y = feats
    searches = []
    knn = nbm.knn
    monkeypatch.setattr(nbm, "knn", lambda *a, **kw: searches.append(1) or knn(*a, **kw))
    measure_layers(X, y, RunStore(tmp_path / duplicates), settings=GraphSettings(k=12, kernel="cosine",
                                                                                 duplicates=duplicates))
    assert searches == []  # the graph's search is the pipeline's; nothing searched again
    t = RunStore(tmp_path / duplicates).read("layers").set_index("layer")
    for name, H in X.items():
        assert t.loc[name, "label_variation"] == pytest.approx(label_variation(H, y, 10), rel=1e-12)
