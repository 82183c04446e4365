"""The ``ssl`` study kind end to end on the quick config (tables, resume, report), its config errors (all raised
before training), and its statistics against oracles."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("duckdb")
pytest.importorskip("plotly")
pytest.importorskip("yaml")

from nnkscope.cli import main  # noqa: E402
from nnkscope.errors import InvalidParameterError, TooFewPointsError  # noqa: E402
from nnkscope.report import write_report  # noqa: E402
from nnkscope.studies.registry import KINDS, load_config, resolve_config, run_study  # noqa: E402
from nnkscope.studies.ssl import (  # noqa: E402
    best_predictors,
    few_shot_scores,
    kernel_ridge_r2,
    ridge_r2,
    spearman_ci,
    spearman_permutation_p,
)

from .test_sections import check_contract  # noqa: E402

QUICK = Path(__file__).resolve().parents[2] / "examples" / "studies" / "ssl-quick.yaml"
FULL = QUICK.with_name("ssl.yaml")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("mnist1d")
    cfg = load_config("ssl", QUICK)
    out = tmp_path_factory.mktemp("ssl") / "run"
    store, table = run_study("ssl", cfg, out)
    return cfg, out, store, table


def test_quick_config_end_to_end(quick_run):
    cfg, out, store, corr = quick_run
    fam = cfg["families"][0]
    assert len(fam["models"]) >= 4 and len(fam["augmentations"]) >= 3
    for name in ("ssl_training", "ssl_invariance", "ssl_transfer", "ssl_correlation", "ssl_semantic",
                 "ssl_predictors"):
        assert name in store.tables()
    train = store.read("ssl_training")
    assert {"model", "epoch", "loss"} <= set(train.columns) and train.groupby("model").epoch.max().eq(8).all()
    inv = store.read("ssl_invariance")
    assert {"model", "method", "head", "augmentation", "diameter_mean", "diameter_median", "spread_mean"} <= set(
        inv.columns)
    assert set(inv["head"]) == {"encoder", "projector"} and set(inv.augmentation) == set(fam["augmentations"])
    assert inv.diameter_mean.between(0, 2).all() and set(inv.method) == {"simclr", "vicreg"}
    transfer = store.read("ssl_transfer")
    assert {"model", "task", "shots", "score"} <= set(transfer.columns)
    acc = transfer[transfer.task.isin(["nnk", "linear"])]
    assert sorted(acc.shots.unique()) == [1, 5] and acc.score.between(0, 1).all()
    assert set(transfer.task) >= {"regress_shift", "regress_scale", "regress_noise"}
    assert {"head", "augmentation", "task", "spearman", "ci_low", "ci_high", "n_models"} <= set(corr.columns)
    assert (corr.n_models == 4).all() and set(corr["head"]) == {"encoder", "projector"}
    ok = corr.dropna(subset=["spearman"])
    assert ((ok.ci_low <= ok.spearman + 1e-12) & (ok.spearman <= ok.ci_high + 1e-12)).all()
    assert (ok.spearman.abs() <= 1).all()
    assert ok.p_value.between(2 / 24 - 1e-12, 1).all()  # 4 models: no p below 2/4!
    # trained weights are kept, and reload to the same encoder features
    assert len(list((out / "ssl_models").rglob("*.pt"))) == len(fam["models"])
    write_report(out)
    page = (out / "report.html").read_text()
    assert "invariance vs transfer" in page and "encoder vs projector" in page and "(R9)" in page
    sec = check_contract(KINDS["ssl"].section(store))
    assert [f.title for f in sec["figures"]][:3] == [f"{fam['name']}: invariance vs transfer",
                                                     f"{fam['name']}: encoder vs projector (R9), per model",
                                                     f"{fam['name']}: encoder vs projector (R9), across strength"]


def test_quick_config_resumes_without_recomputing(quick_run):
    cfg, out, store, corr = quick_run
    parts = sorted(out.rglob("part.parquet")) + sorted((out / "ssl_models").rglob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    _, again = run_study("ssl", cfg, out)
    pd.testing.assert_frame_equal(corr.reset_index(drop=True), again.reset_index(drop=True))
    assert sorted(out.rglob("part.parquet")) + sorted((out / "ssl_models").rglob("*.pt")) == parts
    assert [p.stat().st_mtime_ns for p in parts] == stamps


def test_resume_after_an_interrupted_model_reuses_its_weights(quick_run, tmp_path):
    import shutil

    cfg, out, store, _ = quick_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    victim = sorted((copy / "ssl_transfer").rglob("part.parquet"))[0]
    victim.unlink()
    (copy / "ssl_correlation" / "family=mnist1d" / "part.parquet").unlink()
    trained = {p: p.stat().st_mtime_ns for p in (copy / "ssl_training").rglob("part.parquet")}
    run_study("ssl", cfg, copy)
    assert victim.exists()
    assert {p: p.stat().st_mtime_ns for p in trained} == trained  # nothing was retrained
    a = pd.read_parquet(victim)
    b = pd.read_parquet(out / victim.relative_to(copy))
    pd.testing.assert_frame_equal(a, b)  # the reloaded weights measure the same


def _quick_with(**changes):
    cfg = load_config("ssl", QUICK)
    fam = cfg["families"][0]
    for key, value in changes.items():
        if key == "models":
            fam["models"] = value
        elif key == "model0":
            fam["models"][0].update(value)
        else:
            fam[key] = value
    return cfg


def test_bad_config_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"ssl.families\[0\].models\[0\].augment: unknown augmentation "
                                                    r"'rotate' for mnist1d; valid ones: \['shift', 'scale', "
                                                    r"'amplitude', 'blur', 'noise'\]"):
        resolve_config("ssl", _quick_with(model0={"augment": ["shift", "rotate"]}))
    with pytest.raises(InvalidParameterError, match=r"augmentations: unknown augmentation 'crop' for mnist1d"):
        resolve_config("ssl", _quick_with(augmentations=["shift", "crop"]))
    with pytest.raises(InvalidParameterError, match=r"models\[0\].strength must be a number in \[0, 1\]"):
        resolve_config("ssl", _quick_with(model0={"strength": 1.5}))
    with pytest.raises(InvalidParameterError, match=r"invariance.strengths must be a list of a number in \[0, 1\]"):
        resolve_config("ssl", dict(_quick_with(), invariance={"strengths": [0.5, -0.1]}))
    cfg = _quick_with()
    with pytest.raises(InvalidParameterError, match=r"has 3 model\(s\); correlating .* needs at least 4"):
        resolve_config("ssl", _quick_with(models=cfg["families"][0]["models"][:3]))
    with pytest.raises(InvalidParameterError, match="method must be one of"):
        resolve_config("ssl", _quick_with(model0={"method": "byol"}))
    with pytest.raises(InvalidParameterError, match="repeats"):
        resolve_config("ssl", _quick_with(models=[cfg["families"][0]["models"][0]] * 4))
    with pytest.raises(InvalidParameterError, match="does not fit"):
        resolve_config("ssl", _quick_with(encoder={"kind": "cnn2d"}))
    # through the CLI: refused with exit code 2 and nothing written
    bad = tmp_path / "bad.yaml"
    bad.write_text(QUICK.read_text().replace("augment: [scale, noise]", "augment: [scale, nosie]"))
    assert main(["study", "ssl", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_data_dependent_checks_come_before_training(tmp_path):
    cfg = resolve_config("ssl", {
        "families": [{"name": "digits", "data": {"name": "digits", "n_train": 100, "n_test": 60},
                      "encoder": {"kind": "mlp", "hidden": [8], "out_dim": 8}, "projector": {"hidden": 8,
                                                                                             "out_dim": 4},
                      "train": {"epochs": 1}, "augmentations": ["translate", "rotate", "noise"],
                      "models": [{"augment": ["rotate"], "seed": s} for s in range(4)]}],
        "transfer": {"shots": [50], "n_eval": 50, "n_fit": 50}, "semantic": {"n_eval": 50, "k": 5},
        "invariance": {"n_eval": 20}})
    with pytest.raises(InvalidParameterError, match="50-shot transfer needs 50 training samples of every class"):
        run_study("ssl", cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "ssl_training").exists()


def test_full_protocol_config_resolves():
    cfg = load_config("ssl", FULL)
    names = [f["data"]["name"] for f in cfg["families"]]
    assert names == ["mnist1d", "mnist"]
    assert all(len(f["models"]) >= 6 for f in cfg["families"])
    assert {m["method"] for f in cfg["families"] for m in f["models"]} == {"simclr", "vicreg"}
    assert resolve_config("ssl")["families"] == cfg["families"]  # the file spells out the defaults


# ---------------------------------------------------------------------------------------------------------------
# statistics against oracles


def test_spearman_ci_against_scipy_and_a_loop(rng):
    from scipy.stats import spearmanr

    x = rng.normal(size=9)
    y = x + rng.normal(size=9)
    y[3] = y[4]  # a tie
    rho, lo, hi = spearman_ci(x, y, n_boot=300, confidence=0.9, seed=7)
    assert rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    idx = np.random.default_rng(7).integers(9, size=(300, 9))
    boot = []
    for row in idx:
        a, b = x[row], y[row]
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            boot.append(spearmanr(a, b).statistic)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(boot, [5, 95])), abs=1e-12)
    assert lo <= rho <= hi
    with pytest.raises(TooFewPointsError, match="at least 4 models"):
        spearman_ci([1, 2, 3], [3, 2, 1])
    r, _, _ = spearman_ci([1, 1, 1, 1], [1, 2, 3, 4])
    assert np.isnan(r)


def test_spearman_permutation_p_against_enumeration(rng):
    from itertools import permutations

    from scipy.stats import spearmanr

    assert spearman_permutation_p([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(2 / 24)
    x, y = rng.normal(size=6), rng.normal(size=6)
    obs = abs(spearmanr(x, y).statistic)
    exact = np.mean([abs(spearmanr(x, np.array(p)).statistic) >= obs - 1e-12 for p in permutations(y)])
    assert spearman_permutation_p(x, y) == pytest.approx(exact, abs=1e-12)
    # beyond 8 models: seeded random orderings, close to the exact value
    x = rng.normal(size=9)
    y = rng.normal(size=9) + 0.5 * x
    rx, ry = np.argsort(np.argsort(x)) - 4.0, np.argsort(np.argsort(y)) - 4.0
    P = np.array(list(permutations(ry)))
    exact = np.mean(np.abs(P @ rx) >= abs(rx @ ry) - 1e-9)
    assert spearman_permutation_p(x, y, n_perm=20000) == pytest.approx(exact, abs=0.01)


def test_ridge_probes_against_scikit_learn(rng):
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    A = rng.normal(size=(120, 5))
    Y = np.c_[A @ rng.normal(size=5) + 0.3 * rng.normal(size=120), np.sin(A[:, 0]) + 2]
    fit, ev = slice(0, 80), slice(80, None)
    for alpha in (0.1, 3.0):
        # standardising the targets does not change ridge's predictions: plain Ridge is the oracle
        pred = Ridge(alpha=alpha).fit(A[fit], Y[fit]).predict(A[ev])
        expected = np.mean([r2_score(Y[ev][:, j], pred[:, j]) for j in range(2)])
        assert ridge_r2(A[fit], Y[fit], A[ev], Y[ev], alpha) == pytest.approx(expected, abs=1e-10)
        # kernel ridge with the fit mean as intercept (KernelRidge has none) and per-output scaling
        mu, sd = Y[fit].mean(0), Y[fit].std(0)
        kr = KernelRidge(alpha=alpha, kernel="rbf", gamma=0.2).fit(A[fit], (Y[fit] - mu) / sd)
        pred = kr.predict(A[ev]) * sd + mu
        expected = np.mean([r2_score(Y[ev][:, j], pred[:, j]) for j in range(2)])
        assert kernel_ridge_r2(A[fit], Y[fit], A[ev], Y[ev], alpha, 0.2) == pytest.approx(expected, abs=1e-8)


def test_few_shot_and_best_predictors():
    y = np.repeat(np.arange(3), 4)
    F = np.eye(3)[y] + 0.01 * np.arange(12)[:, None]
    rows = few_shot_scores(F, y, F, y, [1, 4], episodes=2)
    assert all(r["score"] == 1.0 for r in rows)
    with pytest.raises(TooFewPointsError, match="5-shot"):
        few_shot_scores(F, y, F, y, [5])
    corr = pd.DataFrame({"head": ["encoder", "projector", "encoder"], "augmentation": ["shift", "shift", "semantic"],
                         "mgm": ["diameter", "diameter", "nnk_degree"], "task": ["nnk", "nnk", "regress_shift"],
                         "shots": [5, 5, 0], "spearman": [-0.3, 0.8, 0.1], "ci_low": [-0.9, 0.2, -0.5],
                         "ci_high": [0.4, 1.0, 0.6], "n_models": [6] * 3})
    best = best_predictors(corr).set_index("task")
    assert best.loc["nnk", "head"] == "projector" and bool(best.loc["nnk", "ci_excludes_zero"])
    assert not bool(best.loc["regress_shift", "ci_excludes_zero"])
