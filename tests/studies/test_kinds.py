"""Every study kind end to end on a tiny config (tables, resume, report), configs, and the study building blocks
against known answers."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("matplotlib")  # the layerwise / training sections
pytest.importorskip("yaml")

from helpers import nnls_oracle  # noqa: E402

from nnkscope.cli import main  # noqa: E402
from nnkscope.errors import FileFormatError, InvalidParameterError  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.studies import ChannelwiseEarlyStopping, DeepNNKMonitor, loo_error  # noqa: E402
from nnkscope.studies.base import load_yaml  # noqa: E402
from nnkscope.studies.invariance import augmentation_diameters  # noqa: E402
from nnkscope.studies.registry import KINDS, load_config, resolve_config, run_study  # noqa: E402
from nnkscope.studies.stability import run_metrics, stability_table  # noqa: E402
from nnkscope.studies.width_sweep import interpolation_geometry  # noqa: E402

from .test_sections import check_contract  # noqa: E402

TINY = {"data": {"name": "digits", "n_train": 300, "n_test": 120}, "model": {"width": 16, "depth": 1},
        "train": {"epochs": 3}}
CONFIGS = {
    "layerwise": dict(TINY, k=8, eval_per_class=10),
    "training": dict(TINY, k=8, eval_per_class=10, epochs=[0, 1, 3]),
    "compare": {"data": TINY["data"], "train": TINY["train"], "k": 8, "eval_per_class": 10,
                "models": [{"name": "a", "model": {"width": 16, "depth": 1}},
                           {"name": "b", "seed": 1, "layers": ["blocks.1"], "model": {"width": 32, "depth": 1}}]},
    "stability": dict(TINY, seeds=[0, 1], layer="blocks.1", k=8, n_eval=100, shuffled_labels=True),
    "invariance": dict(TINY, seeds=[0], layer="blocks.1", angle_step=60, n_eval=20),
    "early-stopping": dict(TINY, seeds=[0], layer="blocks.1", k=8, arms=["model", "regularised"]),
    "width-sweep": dict(TINY, widths=[8, 32], k=8, hold_epochs=2, max_epochs=8),
    "compare-features": {"features": ["a.npz", "b.npz"], "k": 8},  # files written by _config
    "ssl": {"families": [{"name": "digits", "data": TINY["data"], "encoder": {"hidden": [16], "out_dim": 16},
                          "projector": {"hidden": 16, "out_dim": 8}, "train": {"epochs": 2, "batch_size": 64},
                          "augmentations": ["translate", "rotate", "noise"],
                          "models": [{"augment": ["rotate", "noise"], "strength": s, "seed": i}
                                     for i, s in enumerate([0.25, 0.5, 1.0, 1.0])]}],
            "invariance": {"strengths": [0.5, 1.0], "n_views": 4, "n_eval": 20}, "semantic": {"k": 8, "n_eval": 100},
            "transfer": {"shots": [1, 2], "episodes": 1, "k": 8, "n_fit": 100, "n_eval": 100},
            "correlation": {"bootstrap": 100}},
}
TABLE = {"layerwise": "layers", "training": "layers", "compare": "compare", "stability": "stability",
         "invariance": "invariance", "early-stopping": "early_stopping", "width-sweep": "width_sweep",
         "compare-features": "similarity", "ssl": "ssl_correlation"}
OTHER = {"ssl": {"correlation": {"seed": 1}}}  # kinds whose data sits in nested sections: another change
for _kind, _study in KINDS.items():  # kinds whose tiny config is examples/studies/<kind>-quick.yaml
    _quick = Path(__file__).resolve().parents[2] / "examples" / "studies" / f"{_kind}-quick.yaml"
    if _kind not in CONFIGS and _quick.exists():
        CONFIGS[_kind], TABLE[_kind] = load_yaml(_quick), _study.tables[0]


def _config(kind, folder):
    """The tiny config of a kind; a kind that reads files gets them written into ``folder``."""
    cfg = dict(CONFIGS[kind])
    if kind == "compare-features":
        r = np.random.default_rng(0)
        H = r.normal(size=(60, 5))
        np.savez(folder / "a.npz", l1=H, l2=np.tanh(H))
        np.savez(folder / "b.npz", l1=H @ r.normal(size=(5, 3)))
        cfg["features"] = [str(folder / f) for f in cfg["features"]]
    return cfg


def test_every_kind_has_a_tiny_config():
    assert set(CONFIGS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_study_end_to_end_resume_and_report(tmp_path, kind):
    cfg = resolve_config(kind, _config(kind, tmp_path))
    store, table = run_study(kind, cfg, tmp_path / "run")
    write_report(tmp_path / "run")
    assert len(table) > 0
    parts = sorted((tmp_path / "run" / TABLE[kind]).rglob("part.parquet"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    # a second run over the finished folder recomputes nothing and returns the same table
    _, again = run_study(kind, cfg, tmp_path / "run")
    pd.testing.assert_frame_equal(table.reset_index(drop=True), again.reset_index(drop=True))
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h2>" in page and "<li>" in page
    if kind not in ("layerwise", "training"):  # the section of the real run follows the report contract
        check_contract(KINDS[kind].section(store))
    other = dict(_config(kind, tmp_path), k=9) if kind == "compare-features" else dict(
        CONFIGS[kind], **OTHER.get(kind, {"data": {"name": "digits", "n_train": 299}}))
    with pytest.raises(InvalidParameterError, match="other parameters"):
        run_study(kind, resolve_config(kind, other), tmp_path / "run")


def test_channelwise_arms_on_mnist1d(tmp_path):
    pytest.importorskip("mnist1d")
    cfg = resolve_config("early-stopping", {
        "data": {"name": "mnist1d", "n_train": 400, "n_test": 200},
        "model": {"kind": "channel_convnet", "n_channels": 3, "channels": 4}, "train": {"epochs": 6, "lr": 0.01},
        "method": "cw-deepnnk", "arms": ["cw", "validation", "fixed"], "patience": 2, "k": 8})
    _, t = run_study("early-stopping", cfg, tmp_path / "run")
    write_report(tmp_path / "run")
    assert sorted(t.arm) == ["cw", "fixed", "validation"]
    assert ((t.test_accuracy >= 0) & (t.test_accuracy <= 1)).all()
    cw = t[t.arm == "cw"].iloc[0]
    assert cw.epochs_trained <= 6 and len(cw.freeze_epochs.split(",")) == 3
    assert "Channel-wise leave-one-out error" in (tmp_path / "run" / "report.html").read_text()


def test_config_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"unknown key\(s\) \['widht'\] in width-sweep; valid keys"):
        resolve_config("width-sweep", {"widht": [8]})
    with pytest.raises(InvalidParameterError, match=r"unknown key\(s\) \['lr_'\] in stability.train"):
        resolve_config("stability", {"train": {"lr_": 0.1}})
    with pytest.raises(InvalidParameterError, match=r"compare.models\[0\]"):
        resolve_config("compare", {"models": [{"nam": "x"}]})
    with pytest.raises(InvalidParameterError, match="k must be like 25"):
        resolve_config("stability", {"k": "many"})
    with pytest.raises(InvalidParameterError, match="declares study 'compare'"):
        resolve_config("stability", {"study": "compare"})
    with pytest.raises(InvalidParameterError, match="unknown study kind"):
        resolve_config("nope")
    (tmp_path / "bad.yaml").write_text("k: [unclosed")
    with pytest.raises(FileFormatError, match="not valid YAML"):
        load_config("stability", tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("study: width-sweep\nwidths: [8]\nhold_epoch: 3\n")
    assert main(["study", "width-sweep", "--config", str(tmp_path / "typo.yaml"), "--out",
                 str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_cli_study_prints_the_table(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(
        "data: {name: digits, n_train: 300, n_test: 100}\nmodel: {width: 16, depth: 1}\ntrain: {epochs: 2}\n"
        "widths: [8]\nk: 8\nhold_epochs: 1\nmax_epochs: 2\n")
    assert main(["study", "width-sweep", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "homogeneous_fraction_H" in out and "report.html" in out
    assert main(["study", "width-sweep", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "s"),
                 "--show-config"]) == 0
    assert "hold_epochs: 1" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# building blocks with known answers


def test_augmentation_diameters_against_brute_force(rng):
    O = rng.normal(size=(30, 6))
    V = O[:, None, :] + 0.5 * rng.normal(size=(30, 7, 6))
    diam, deg = augmentation_diameters(O, V)
    for i in range(30):
        u = lambda A: A / np.linalg.norm(A, axis=-1, keepdims=True)  # noqa: E731
        o, v = u(O[i]), u(V[i])
        K = 0.5 + 0.5 * v @ v.T
        g = 0.5 + 0.5 * v @ o
        theta = nnls_oracle(K, g, 1e-10)
        P = np.vstack([o, v[theta > 0]])
        brute = max(np.linalg.norm(a - b) for a in P for b in P)
        assert deg[i] == np.count_nonzero(theta > 0)
        assert abs(diam[i] - brute) < 1e-9
    # versions that only rescale the original: invariant, diameter 0
    same, _ = augmentation_diameters(O, O[:, None, :] * np.array([1.0, 2.0, 0.5])[None, :, None])
    assert np.abs(same).max() < 1e-12


def test_stability_identical_runs_and_chance_level(rng):
    X = rng.normal(size=(200, 6))
    a = run_metrics(X, 10)
    t = stability_table({"a": a, "b": run_metrics(X * 3.0, 10)})
    assert t.jaccard[0] == 1.0 and t.ks_nnk_degree[0] == 0 and t.spearman_diameter[0] == pytest.approx(1)
    assert t.jaccard_shuffled[0] < 0.1 and abs(t.spearman_nnk_degree_shuffled[0]) < 0.3
    other = stability_table({"a": a, "c": run_metrics(rng.normal(size=(200, 6)), 10)})
    assert other.jaccard[0] < 0.1  # unrelated point clouds share no neighbourhoods


def test_interpolation_geometry_by_hand():
    # two tight clusters, one mislabelled point inside cluster 0: it is the only non-homogeneous-labelled error
    F = np.r_[np.tile([1.0, 0.0], (8, 1)), np.tile([0.0, 1.0], (8, 1))] + 0.01 * np.arange(16)[:, None] ** 0.5
    y = np.array([0] * 8 + [1] * 8)
    y[3] = 1
    r = interpolation_geometry(F, y, k=4)
    assert r["loo_error_weighted"] >= 1 / 16 and r["homogeneous_fraction_H"] < 1
    assert 0 <= r["mean_homogeneity"] <= 1 and r["gap"] == r["loo_error_unweighted"] - r["loo_error_weighted"]


def test_loo_error_counts_dead_rows():
    F = np.r_[np.eye(2)[[0] * 5 + [1] * 5] + 0.01 * np.arange(10)[:, None], np.zeros((2, 2))]
    r = loo_error(F, np.r_[[0] * 5 + [1] * 5, 0, 1], k=3)
    assert r["dead_rows"] == 2 and r["loo_error_nnk"] == pytest.approx(2 / 12)
    assert loo_error(np.zeros((5, 3)), np.arange(5) % 2)["loo_error_nnk"] == 1.0


class _Toy(torch.nn.Module):
    """Two 'channels' whose features are their own weight times the input."""

    def __init__(self):
        super().__init__()
        self.channels = torch.nn.ModuleList(torch.nn.Linear(2, 2, bias=False) for _ in range(2))

    def channel_features(self, X):
        x = torch.as_tensor(X, dtype=torch.float32)
        return [c(x).detach().double().numpy() for c in self.channels]


def test_channelwise_freezing_and_holding():
    X = np.r_[np.eye(2)[[0] * 6 + [1] * 6]] + 0.01 * np.arange(12)[:, None]
    y = np.array([0] * 6 + [1] * 6)
    model = _Toy()
    with torch.no_grad():
        model.channels[0].weight.copy_(torch.eye(2))  # separates the classes: LOO 0, never improves after
        model.channels[1].weight.copy_(torch.eye(2))
    cb = ChannelwiseEarlyStopping(X, y, k=3, patience=2)
    best = model.channels[0].weight.detach().clone()
    assert cb(1, model) is False
    with torch.no_grad():
        model.channels[0].weight.mul_(-1.0)  # still perfectly separating: no improvement
        model.channels[1].weight.mul_(-1.0)
    assert cb(2, model) is False
    assert cb(3, model) is True  # both channels: 2 checks without improvement
    assert cb.frozen_at == {0: 3, 1: 3} and cb.best_epochs() == {0: 1, 1: 1}
    assert torch.equal(model.channels[0].weight, best)  # restored to the best weights
    with torch.no_grad():
        model.channels[0].weight.add_(1.0)  # an optimiser step moving a frozen channel
    cb.after_step(model)
    assert torch.equal(model.channels[0].weight, best)


def test_deepnnk_monitor_stops_and_restores():
    X = np.r_[np.eye(2)[[0] * 6 + [1] * 6]] + 0.01 * np.arange(12)[:, None]
    y = np.array([0] * 6 + [1] * 6)
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    feats = lambda m, X_: m(torch.as_tensor(X_, dtype=torch.float32)).detach().double().numpy()  # noqa: E731
    mon = DeepNNKMonitor(X, y, feats, k=3, patience=1)
    assert mon(1, model) is False and mon.history[0]["loo_error_nnk"] == 0.0
    kept = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))  # collapses the classes
    assert mon(2, model) is True and mon.best_epoch == 1 and mon.stopped_epoch == 2
    assert torch.equal(model.weight, kept)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "examples" / "studies").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_config_resolves_and_keeps_its_non_path_values(path):
    """Each documented config resolves for its kind; a key that names a layer in one kind (reliability's
    ``features: input``) is not taken for a file path as it is in another (layerwise's ``features``)."""
    import yaml

    from nnkscope.studies.registry import get_kind, load_config

    raw = yaml.safe_load(path.read_text())
    kind = raw.get("study") or path.stem.split("-quick")[0]
    cfg = load_config(kind, path)
    for key, value in raw.items():
        if isinstance(value, str) and key not in get_kind(kind).path_keys and key != "study":
            assert cfg[key] == value, (key, cfg[key], value)
    if "features" in raw and kind == "reliability":  # a layer name: kept as written
        assert cfg["features"] == raw["features"]
