"""Every study kind's report section (except layerwise/training) against the report's contract, built from small
synthetic tables written with RunStore: plotly figures with data, takeaways computed from the numbers (and their
thresholds), a DataFrame table whose every column the glossary explains."""

import re

import numpy as np
import pandas as pd
import pytest

go = pytest.importorskip("plotly.graph_objects")
pytest.importorskip("duckdb")

from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.figures import GENERIC, Figure, Term, columns  # noqa: E402
from nnkscope.studies.registry import KINDS  # noqa: E402

KEYED = ("model ", "layer ", "seed ", "epoch ", "run ")
MAX_BYTES = 150_000  # one figure's JSON without the page template


def check_contract(sec: dict) -> dict:
    """The section follows the report contract; returns it for kind-specific checks."""
    assert set(sec) >= {"title", "takeaways", "figures", "table", "glossary"}
    assert isinstance(sec["title"], str) and sec["title"]
    assert sec["takeaways"] and all(isinstance(s, str) and re.search(r"\d", s) for s in sec["takeaways"])
    gloss = sec["glossary"]
    assert all(isinstance(t, Term) and t.definition for t in gloss.values())
    tables = sec["table"].values() if isinstance(sec["table"], dict) else [sec["table"]]
    assert tables and all(isinstance(t, pd.DataFrame) and len(t) for t in tables)
    missing = [c for c in columns(sec["table"]) if c not in gloss and c not in GENERIC]
    assert not missing, f"table columns without a glossary entry: {missing}"
    assert sec["figures"]
    for f in sec["figures"]:
        assert isinstance(f, Figure) and f.title and f.caption
        assert isinstance(f.plot, go.Figure) and len(f.plot.data) > 0
        assert all(t in gloss or t in GENERIC for t in f.terms), f.terms
        for tr in f.plot.data:
            has = [v for v in ("x", "y", "z") if getattr(tr, v, None) is not None and len(getattr(tr, v))]
            assert has, f"empty trace in {f.title}"
            if (tr.legendgroup or "").startswith(KEYED):  # the report colours keyed traces page-wide
                assert getattr(getattr(tr, "marker", None), "color", None) is None, (f.title, tr.legendgroup)
                assert getattr(getattr(tr, "line", None), "color", None) is None, (f.title, tr.legendgroup)
        lean = go.Figure(f.plot)
        lean.layout.template = None
        assert len(lean.to_json()) < MAX_BYTES, (f.title, len(lean.to_json()))
    return sec


def _store(tmp_path, tables: dict, params=None) -> RunStore:
    """A run folder with each ``{table: [(keys, DataFrame), ...]}`` written part by part."""
    store = RunStore(tmp_path / "run", params or {})
    for name, parts in tables.items():
        for keys, df in parts:
            store.write(name, df, **keys)
    return store


def _section(kind, store):
    return check_contract(KINDS[kind].section(store))


def test_compare(tmp_path):
    reps = [("a", "blocks.0"), ("a", "blocks.1"), ("b", "blocks.1")]
    parts, r = [], np.random.default_rng(0)
    for i, (am, al) in enumerate(reps):
        for bm, bl in reps[i + 1:]:
            j = float(r.uniform(0.1, 0.6))
            parts.append(({"a_model": am, "a_layer": al, "b_model": bm, "b_layer": bl}, pd.DataFrame([{
                "jaccard": j, "jaccard_shuffled": 0.05, "jaccard_ratio": j / 0.05, "edge_agreement": j,
                "edge_agreement_shuffled": 0.04, "degree_spearman": 0.5, "degree_spearman_shuffled": 0.01,
                "linear_cka": j + 0.3, "a_dim": 16, "b_dim": 32}])))
    sec = _section("compare", _store(tmp_path, {"compare": parts}))
    best = max(parts, key=lambda p: p[1].jaccard_ratio[0])
    assert f"{best[1].jaccard_ratio[0]:.2g}x" in sec["takeaways"][0]
    assert "3 of 3 pairs" in sec["takeaways"][1] and "Spearman 1" in sec["takeaways"][2]  # CKA = J + 0.3
    heat = sec["figures"][0].plot.data[0]
    assert heat.type == "heatmap" and np.allclose(np.diag(np.array(heat.z, float)), 1)


def test_compare_features(tmp_path):
    layers_a, layers_b = ["l1", "l2", "l3"], ["l1", "l2"]
    parts = []
    for ia, la in enumerate(layers_a):
        for ib, lb in enumerate(layers_b):
            j = 0.9 if la == lb else 0.1  # same-named layers alike
            rows = [{"measure": "linear_cka", "value": j, "chance": np.nan},
                    {"measure": "nnk_jaccard", "value": j, "chance": 0.2}]
            parts.append(({"model_a": "a", "layer_a": la, "model_b": "b", "layer_b": lb}, pd.DataFrame(rows).assign(
                dim_a=5, dim_b=3, n=60, index_a=ia, index_b=ib)))
    sec = _section("compare-features", _store(tmp_path, {"similarity": parts}))
    heat = sec["figures"][0].plot.data
    assert [h.name for h in heat] == ["linear_cka", "nnk_jaccard"] and list(heat[0].y) == layers_a
    assert np.array(heat[1].z, float)[1, 1] == 0.9
    assert sec["takeaways"][1] == ("a vs b, nnk_jaccard: most similar l1 ~ l1 (0.900); 2 of 6 layer pairs reach >= 2x "
                                   "their shuffled chance level (counted as shared structure); same-named layers 0.9 "
                                   "on average.")


def _stability_tables(n=50):
    """Three runs: seed1 a noisy copy of seed0 (per-sample values agree), seed2 unrelated."""
    r = np.random.default_rng(0)
    deg = r.integers(2, 9, n).astype(float)
    vals = {0: (deg, r.uniform(0.2, 1.5, n))}
    vals[1] = (deg + r.integers(0, 2, n), vals[0][1] + r.normal(0, 0.01, n))
    vals[2] = (r.integers(2, 9, n).astype(float), r.uniform(0.2, 1.5, n))
    pts = pd.concat([pd.DataFrame({"labels": "true", "run": f"seed{s}", "seed": s, "sample": np.arange(n),
                                   "nnk_degree": d, "diameter": m}) for s, (d, m) in vals.items()], ignore_index=True)
    rows = []
    for a, b, j in ((0, 1, 0.6), (0, 2, 0.1), (1, 2, 0.1)):
        rows.append({"labels": "true", "run_a": f"seed{a}", "run_b": f"seed{b}", "ks_nnk_degree": 0.05,
                     "spearman_nnk_degree": 0.9 if b == 1 else 0.0, "spearman_nnk_degree_shuffled": 0.01,
                     "ks_diameter": 0.2, "spearman_diameter": 0.95 if b == 1 else 0.1,
                     "spearman_diameter_shuffled": -0.01, "jaccard": j, "jaccard_shuffled": 0.05,
                     "jaccard_ratio": j / 0.05})
    return pd.DataFrame(rows), pts


def test_stability(tmp_path):
    t, pts = _stability_tables()
    sec = _section("stability", _store(tmp_path, {"stability": [({}, t)], "stability_points": [({}, pts)]}))
    dist, scatter, pairs = sec["figures"]
    assert {tr.legendgroup for tr in dist.plot.data} == {"seed 0", "seed 1", "seed 2"}
    first = scatter.plot.data[0]  # seed0 vs seed1 NNK degree, sample by sample
    a, b = pts[pts.run == "seed0"].nnk_degree.to_numpy(), pts[pts.run == "seed1"].nnk_degree.to_numpy()
    assert list(first.x) == list(a) and list(first.y) == list(b)
    assert scatter.plot.layout.annotations[0].text.endswith(f"(Spearman {t.spearman_nnk_degree[0]:.2g})")
    ticks = [tr.x for tr in pairs.plot.data if tr.type == "bar"][0]
    assert list(ticks) == ["s0-s1", "s0-s2", "s1-s2"]  # short, distinct tick labels
    assert sec["takeaways"][0] == ("Across 3 pair(s) of runs, NNK neighbourhoods overlap 0.267 = 5.3x chance: stable "
                                   "(>= 2x counts as stable).")
    assert "they differ" in sec["takeaways"][2]  # KS 0.2 > 0.1
    # an old run folder without per-sample values: the pair figure alone
    old = _section("stability", _store(tmp_path / "old", {"stability": [({}, t)]}))
    assert [f.title for f in old["figures"]] == ["Run pairs against chance"]


def test_invariance(tmp_path):
    r = np.random.default_rng(0)
    parts = []
    for augment, scale, rot in ((False, 1.0, 0.3), (True, 0.4, 0.8)):
        for seed in (0, 1):
            parts.append(({"augment": augment, "seed": seed}, pd.DataFrame({
                "sample": np.arange(30), "diameter": scale * r.uniform(0.5, 1.5, 30), "nnk_degree": 3.0,
                "accuracy_upright": 0.9, "accuracy_rot90": rot})))
    store = _store(tmp_path, {"invariance": parts})
    sec = _section("invariance", store)
    t = store.read("invariance")
    d0, d1 = t[~t.augment].diameter.mean(), t[t.augment].diameter.mean()
    assert sec["takeaways"][0].startswith(f"Training with rotations changes the mean diameter by "
                                          f"{100 * (d1 - d0) / d0:+.0f}%") and "more invariant" in sec["takeaways"][0]
    dist = sec["figures"][0].plot
    assert {tr.legendgroup for tr in dist.data} == {"run with augmentation, seed 0", "run with augmentation, seed 1",
                                                    "run without augmentation, seed 0",
                                                    "run without augmentation, seed 1"}
    bars = {tr.name: list(tr.y) for tr in sec["figures"][1].plot.data}
    assert bars == {"upright": [0.9, 0.9], "rotated 90 degrees": [0.3, 0.8]}


def test_width_sweep(tmp_path):
    parts = []
    for w, H, gap in ((8, 0.4, 0.0), (64, 0.8, 0.02), (1024, 0.95, 0.05)):
        parts.append(({"width": w}, pd.DataFrame([{
            "homogeneous_fraction_H": H, "mean_homogeneity": H + 0.02, "loo_error_weighted": 0.1,
            "loo_error_unweighted": 0.1 + gap, "gap": gap, "mean_nnk_degree": 6.0, "dead_rows": 0, "epochs": 30,
            "train_error": 0.0 if w > 8 else 0.05, "test_error": 0.2 - H / 10}])))
    sec = _section("width-sweep", _store(tmp_path, {"width_sweep": parts}))
    assert sec["figures"][0].plot.layout.xaxis.type == "log"
    assert "at 2 of 3 widths (64, 1024)" in sec["takeaways"][1]
    assert sec["takeaways"][2].startswith("2 of 3 widths interpolate")


def test_label_propagation(tmp_path):
    parts = []
    for g, base in (("knn", 0.3), ("nnk-max", 0.2)):
        for k in (5, 10, 20):
            err = base + (0.01 * k if g == "knn" else 0.0) + np.array([0.0, 0.01, -0.01])
            parts.append(({"graph": g, "k": k}, pd.DataFrame({
                "split": [0, 1, 2], "error": err, "edges": 100 * (k if g == "knn" else 3), "isolated_nodes": 0,
                "unreachable": 0, "n_nodes": 200, "n_labelled": 20})))
    sec = _section("label-propagation", _store(tmp_path, {"label_propagation": parts}))
    assert sec["takeaways"][0].startswith("The best NNK graph beats kNN at 3 of 3 values of K")
    err = sec["figures"][0].plot
    band, line = err.data[0], err.data[1]
    assert band.fill == "toself" and line.legendgroup == "graph knn" and list(line.y) == [0.35, 0.4, 0.5]
    assert "knn +0.1500, nnk-max +0.0000" in sec["takeaways"][-1]


def test_early_stopping_deepnnk(tmp_path):
    epochs = np.array([1, 2, 3, 4, 5])
    parts = []
    for arm, best in (("model", 3), ("regularised", 5)):
        loo = 0.1 + 0.02 * np.abs(epochs - best)
        test = 0.2 + 0.02 * np.abs(epochs - 3)
        parts.append(({"seed": 0, "arm": arm}, pd.DataFrame({
            "epoch": epochs, "loo_error_nnk": loo, "loo_error_wknn": loo + 0.01, "mean_nnk_degree": 5.0,
            "dead_rows": 0, "train_error": 0.05, "test_error": test, "nnk_test_error": test + 0.01})))
    sec = _section("early-stopping", _store(tmp_path, {"early_stopping": parts}))
    assert "lowest at epoch 3 and test error at epoch 3: they agree" in sec["takeaways"][0]
    assert "lowest at epoch 5 and test error at epoch 3: they disagree" in sec["takeaways"][1]
    fig = sec["figures"][0].plot
    assert [a.text for a in fig.layout.annotations][:2] == ["model, seed 0", "regularised, seed 0"]
    assert len(fig.data) == 10 and fig.layout.xaxis.type is None  # 1..5 epochs: linear axis


def test_early_stopping_channelwise(tmp_path):
    parts = [({"seed": 0, "arm": a}, pd.DataFrame([{"epochs_trained": n, "freeze_epochs": f, "best_epochs": "",
                                                   "n_frozen": nf, "test_accuracy": acc}]))
             for a, n, f, nf, acc in (("cw", 4, "2,3", 2, 0.8), ("validation", 5, "", np.nan, 0.78),
                                      ("fixed", 6, "", np.nan, 0.7))]
    loo = [({"seed": 0}, pd.DataFrame({"epoch": [1, 2, 1, 2, 3], "channel": [0, 0, 1, 1, 1],
                                       "loo_error_nnk": [0.5, 0.4, 0.6, 0.5, 0.45]}))]
    sec = _section("early-stopping", _store(tmp_path, {"early_stopping": parts, "channel_loo": loo}))
    assert sec["takeaways"][1:] == ["Channel-wise freezing vs validation: +0.020 test accuracy, a difference (>= 0.01 "
                                    "counts).", "Channel-wise freezing vs fixed: +0.100 test accuracy, a difference "
                                    "(>= 0.01 counts)."]
    ch = sec["figures"][1].plot
    assert [list(tr.x) for tr in ch.data] == [[1, 2], [1, 2, 3]]


def test_reliability(tmp_path):
    ln = [({"seed": s}, pd.DataFrame([{"fraction": 0.1, "n_train": 300, "n_flipped": 30, "k": 8, "auroc": a,
                                       "baseline_auroc": 0.7, "wknn_auroc": 0.75, "precision": 0.5,
                                       "baseline_precision": 0.4}])) for s, a in ((0, 0.9), (1, 0.8))]
    ood = [({"held_out": "8,9", "seed": s}, pd.DataFrame([{"n_train": 250, "n_in": 100, "n_out": 20, "k": 8,
                                                           "auroc": 0.6, "baseline_auroc": 0.605,
                                                           "auroc_interpolation_error": 0.55,
                                                           "auroc_nnk_means": 0.58}])) for s in (0, 1)]
    sec = _section("reliability", _store(tmp_path, {"label_noise": ln, "ood": ood}))
    assert sec["takeaways"][:2] == [
        "Label noise, 10% flipped (2 seed(s)): AUROC NNK 0.85 vs kNN vote 0.7: NNK detects better (a margin of "
        "0.01 counts; 0.5 is chance).",
        "OOD, held out 8,9 (2 seed(s)): AUROC NNK 0.6 vs kNN distance 0.605: no difference (a margin of 0.01 counts; "
        "0.5 is chance)."]
    bars = {tr.name: dict(zip(tr.x, tr.y, strict=True)) for tr in sec["figures"][0].plot.data}
    assert bars["NNK"] == {"label noise, 10% flipped": 0.85, "OOD, held out 8,9": 0.6}
    assert "OOD, held out 8,9" not in bars["weighted kNN"] and set(sec["table"]) == {"label noise", "OOD"}


def test_robustness(tmp_path):
    parts = []
    for kind, strengths in (("gaussian", [0.0, 0.1, 0.2]), ("fgsm_linf", [0.0, 0.05])):
        for s in strengths:
            rows = [{"model": "mlp", "layer": layer, "overlap": 1 - s * slope, "diameter": 0.5 + s, "loo_error": 0.1,
                     "accuracy": 0.9 - s, "diameter_change": s, "nnk_degree": 5.0, "degree_change": 0.0,
                     "nnk_error": 0.1, "interpolation_error": 0.2, "dead_rows": 0}
                    for layer, slope in (("blocks.0", 1.0), ("blocks.1", 3.0))]
            parts.append(({"perturbation": kind, "strength": s}, pd.DataFrame(rows)))
    det = pd.DataFrame([{"model": "mlp", "layer": "blocks.1", "score": sc, "auroc": a, "baseline_auroc": 0.7,
                         "knn_distance_auroc": 0.6, "auroc_successful": a, "baseline_auroc_successful": 0.7,
                         "knn_distance_auroc_successful": 0.6, "attack_success": 0.4, "clean_accuracy": 0.9,
                         "attacked_accuracy": 0.5}
                        for sc, a in (("score", 0.8), ("disagreement", 0.75), ("interpolation_error", 0.65))])
    sec = _section("robustness", _store(tmp_path, {"robustness": parts, "adversarial_detector": [
        ({"attack": "pgd_linf", "eps": 0.05}, det)]}))
    # blocks.1 loses half its neighbours at 0.2 (1 - 0.6), blocks.0 never within 0.2
    fgsm, gauss = sec["takeaways"][:2]  # perturbations in table order
    assert gauss.startswith("gaussian: blocks.1 breaks first, at strength 0.2")
    assert "1 of 2 layers break by 0.2" in gauss
    assert fgsm.startswith("fgsm_linf: no layer breaks up to strength 0.05")
    assert "best NNK score score AUROC 0.8 vs best kNN baseline 0.7: NNK detects better" in sec["takeaways"][2]
    over = sec["figures"][0].plot
    groups = {tr.legendgroup for tr in over.data if tr.legendgroup}
    assert groups == {"layer blocks.0", "layer blocks.1", "accuracy of the model"}
    acc = [tr for tr in over.data if tr.legendgroup == "accuracy of the model"]
    assert [list(a.y) for a in acc] == [[0.9, 0.85], [0.9, 0.8, 0.7]] and acc[0].line.color == "black"
    assert len(sec["figures"]) == 4 and set(sec["table"]) == {"per layer", "detector"}


def test_redundancy(tmp_path):
    red, prune = [], []
    r = np.random.default_rng(0)
    for p in (0.0, 0.5):
        for seed in (0, 1, 2):
            rows = [{"layer": layer, "layer_index": i, "n_channels": 4, "overlap": 0.1 * (i + 1) + p / 10 + seed / 100,
                     "overlap_baseline": 0.05, "overlap_ratio": (0.1 * (i + 1) + p / 10 + seed / 100) / 0.05,
                     "redundancy": 0.2, "redundancy_baseline": 0.1, "union_ratio": 1.5, "active_fraction": 0.6,
                     "dead_channels": 0, "test_accuracy": 0.8 + p / 10 + seed / 100} for i, layer in
                    enumerate(["conv1", "conv2"])]
            red.append(({"dropout": p, "seed": seed}, pd.DataFrame(rows)))
            ov = r.uniform(0, 0.5, 8)
            prune.append(({"dropout": p, "seed": seed}, pd.DataFrame({
                "layer": ["conv1"] * 4 + ["conv2"] * 4, "channel": [0, 1, 2, 3] * 2, "overlap": ov,
                "mean_abs_activation": ov[::-1], "accuracy_drop": -ov})))
    sec = _section("redundancy", _store(tmp_path, {"redundancy": red, "channel_pruning": prune}))
    conv1, conv2 = sec["takeaways"]
    assert conv1.startswith("conv1: channel overlap 2.7x the permutation baseline: redundant")  # 0.135 / 0.05
    assert "rho +1.00 [+1.00, +1.00] (interval excludes 0" in conv1 and "overlap -1," in conv1
    by_layer = sec["figures"][0].plot
    assert {tr.legendgroup for tr in by_layer.data} == {"dropout 0", "dropout 0.5", "permutation baseline"}
    assert set(sec["table"]) == {"correlations", "per model and layer"}


def _ssl_store(tmp_path):
    """A family of four models: the encoder diameter under 'shift' falls as NNK transfer rises (rho = -1)."""
    from nnkscope.studies.kinds.ssl import mgm_table
    from nnkscope.studies.ssl import best_predictors, correlate

    params = {"correlation": {"strength": 1.0, "confidence": 0.9}, "transfer": {"shots": [1, 5]}}
    tables = {t: [] for t in ("ssl_training", "ssl_invariance", "ssl_semantic", "ssl_transfer")}
    for i, strength in enumerate([0.25, 0.5, 1.0, 1.0]):
        keys = {"family": "fam", "model": f"m{i}"}
        tables["ssl_training"].append((keys, pd.DataFrame({"epoch": [1, 2], "loss": [2.0 - i / 10, 1.5 - i / 10],
                                                           "method": "simclr", "strength": strength})))
        inv = [{"method": "simclr", "head": head, "augmentation": aug, "strength": s, "train_strength": strength,
                "trained_with": aug == "shift", "diameter_mean": (1.0 - i / 10) * (0.5 if head == "projector" else 1),
                "diameter_relative": 0.5, "spread_mean": 0.3 if head == "projector" else 0.6, "spread_relative": 0.2}
               for head in ("encoder", "projector") for aug in ("shift", "noise") for s in (0.25, 0.5, 1.0)]
        tables["ssl_invariance"].append((keys, pd.DataFrame(inv)))
        tables["ssl_semantic"].append((keys, pd.DataFrame([{"head": h, "nnk_degree": 5.0 + i, "diameter": 0.5,
                                                            "local_id": 3.0 - i / 4, "effective_rank": 10.0 + i}
                                                           for h in ("encoder", "projector")])))
        tr = [{"head": "encoder", "task": t, "shots": sh, "score": 0.5 + i / 10 if t == "nnk" else 0.6,
               "score_std": 0.0} for t, sh in (("nnk", 5), ("linear", 5), ("regress_shift", 0), ("regress_noise", 0))]
        tables["ssl_transfer"].append((keys, pd.DataFrame(tr)))
    store = _store(tmp_path, tables, params)
    corr = correlate(mgm_table(store, "fam", 1.0), store.read("ssl_transfer"), n_boot=100, confidence=0.9, seed=0)
    store.write("ssl_correlation", corr, family="fam")
    store.write("ssl_predictors", best_predictors(corr), family="fam")
    return store


def test_ssl(tmp_path):
    sec = _section("ssl", _ssl_store(tmp_path))
    scatter = sec["figures"][0].plot
    titles = [a.text for a in scatter.layout.annotations if "rho" in a.text]
    assert len(titles) == 3 * 2 * 2  # tasks x augmentations x heads
    assert titles[0] == "shift, encoder<br>rho -1.00 [-1.00, -1.00]"
    assert scatter.layout.yaxis.title.text == "NNK 5-shot"
    first = [tr for tr in scatter.data if tr.xaxis == "x"]
    assert [tr.legendgroup for tr in first] == ["model m0", "model m1", "model m2", "model m3"]
    assert [tr.y[0] for tr in first] == [0.5, 0.6, 0.7, 0.8]
    assert any(s.startswith("fam (R9): the projector is more invariant than the encoder (mean diameter under the "
                            "model's own augmentations at its training strength) in 4 of 4 cases")
               for s in sec["takeaways"])
    assert [f.title for f in sec["figures"]] == ["fam: invariance vs transfer", "fam: encoder vs projector (R9), per "
                                                 "model", "fam: encoder vs projector (R9), across strength",
                                                 "Training loss"]


def test_lines_bands_and_bars():
    from nnkscope.studies.figures import lines

    t = pd.DataFrame({"x": [1, 2, 1, 2], "y": [0.5, 0.6, 0.7, 0.8], "sd": [0.1, 0.1, np.nan, np.nan],
                      "g": ["a", "a", "b", "b"]})
    fig = lines(t, "x", "y", by="g", key="seed {}", band="sd")
    # a band (the shaded polygon y +- sd, no legend) for a, none for b whose spread is unknown
    assert [tr.legendgroup for tr in fig.data] == ["seed a", "seed a", "seed b"]
    assert list(fig.data[0].y) == [0.6, 0.7, 0.5, 0.4] and fig.data[0].showlegend is False
    bars = lines(t, "x", "y", by="g", band="sd", mode="bar")
    assert list(bars.data[0].error_y.array) == [0.1, 0.1] and bars.data[1].error_y.array is None
