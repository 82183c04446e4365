"""Every estimate of the layer table has a seeded bootstrap interval (or a documented exemption); the compare
tables carry intervals and p-values; the UMAP view."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("duckdb")

from nnkscope.errors import InvalidParameterError  # noqa: E402
from nnkscope.store import RunStore  # noqa: E402
from nnkscope.studies.layerwise import CI_EXEMPT, measure_layers  # noqa: E402


def _features():
    r = np.random.default_rng(0)
    y = np.repeat([0, 1, 2, 3], 50)
    scales = np.geomspace(2.0, 0.2, 10)  # distinct eigenvalues: no statistic sits on a tie
    H = r.normal(size=(200, 10)) * scales + 1.2 * r.normal(size=(4, 10))[y]  # classes apart, not perfectly
    return {"input": H + r.normal(size=(200, 10)), "hidden": H}, y


def _layers(tmp_path, name, **kw):
    feats, y = _features()
    store = RunStore(tmp_path / name)
    measure_layers(feats, y, store, k=10, **kw)
    return store.read("layers").sort_values("layer_index").reset_index(drop=True)


def test_every_scalar_column_has_an_interval_or_an_exemption(tmp_path):
    t = _layers(tmp_path, "a", n_boot=60)
    bounds = {c for c in t.columns if c.endswith(("_ci_low", "_ci_high"))}
    estimates = [c for c in t.columns if c not in bounds and c not in CI_EXEMPT]
    assert len(estimates) >= 25  # the NNK, label, class-geometry, ID and spectral columns
    for c in estimates:
        assert {f"{c}_ci_low", f"{c}_ci_high"} <= bounds, c
        assert pd.api.types.is_float_dtype(t[c]), c
    assert not [c for c in CI_EXEMPT if f"{c}_ci_low" in t.columns]
    assert bounds == {f"{c}_ci_{s}" for c in estimates for s in ("low", "high")}
    for c in estimates:  # on this well-conditioned data each interval holds its estimate (up to rounding)
        lo, hi, v = t[f"{c}_ci_low"], t[f"{c}_ci_high"], t[c]
        tol = 1e-9 * np.maximum(1.0, np.abs(v))
        assert ((lo <= v + tol) & (v - tol <= hi)).all(), (c, lo.tolist(), v.tolist(), hi.tolist())
        assert (hi > lo).any() or c in ("id_pca", "median_nnk_degree", "median_local_id"), c


def test_intervals_are_seeded_and_part_of_the_identity(tmp_path):
    a, b = _layers(tmp_path, "a", n_boot=40), _layers(tmp_path, "b", n_boot=40)
    ci = [c for c in a.columns if c.endswith("_ci_low")]
    pd.testing.assert_frame_equal(a[ci], b[ci])
    assert not [c for c in _layers(tmp_path, "off", n_boot=0).columns if "_ci_" in c]
    feats, y = _features()
    with pytest.raises(InvalidParameterError, match="measured differently"):
        measure_layers(feats, y, RunStore(tmp_path / "a"), k=10, n_boot=41)
    with pytest.raises(InvalidParameterError, match="n_boot"):
        measure_layers(feats, y, RunStore(tmp_path / "c"), k=10, n_boot=-1)
    with pytest.raises(InvalidParameterError, match="view"):
        measure_layers(feats, y, RunStore(tmp_path / "c"), k=10, view="tsne")


def test_umap_view_from_the_graph_neighbours(tmp_path):
    pytest.importorskip("umap")
    feats, y = _features()
    views = []
    for name in ("u1", "u2"):
        store = RunStore(tmp_path / name)
        measure_layers({"hidden": feats["hidden"]}, y, store, k=10, n_boot=0, view="umap")
        views.append(store.read("points")[["view_x", "view_y"]].to_numpy())
        assert store.read("layers")["view"].tolist() == ["umap"]
    assert np.isfinite(views[0]).all() and np.array_equal(views[0], views[1])  # seeded
    # the picture keeps the classes apart: each point's nearest other point in 2-D mostly shares its label
    E = views[0]
    d = ((E[:, None] - E[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.9


def test_compare_features_table_has_intervals_and_p_values(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("yaml")
    from nnkscope.studies.registry import resolve_config, run_study

    r = np.random.default_rng(0)
    H = r.normal(size=(60, 5))
    np.savez(tmp_path / "a.npz", l1=H)
    np.savez(tmp_path / "b.npz", l1=H @ r.normal(size=(5, 3)) + 0.3 * r.normal(size=(60, 3)), l2=r.normal(size=(60, 4)))
    cfg = {"features": [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")], "k": 8, "bootstrap": 50,
           "permutations": 19}
    _, t = run_study("compare-features", resolve_config("compare-features", cfg), tmp_path / "run")
    assert {"ci_low", "ci_high", "p_value"} <= set(t.columns)
    assert (t.ci_low <= t.ci_high).all()
    related = t[t.layer_b == "l1"]
    # related pairs: the interval holds the value (for unrelated ones the percentile interval of linear CKA, biased
    # upward at N = 60 and more so with repeated rows, can sit above it)
    assert (related.ci_low <= related.value + 1e-12).all() and (related.value <= related.ci_high + 1e-12).all()
    assert (related.p_value == 1 / 20).all()  # a linear image of A: no permutation does as well
    assert ((t.p_value >= 1 / 20) & (t.p_value <= 1)).all()
    off = dict(cfg, intervals_max_n=59)
    _, t2 = run_study("compare-features", resolve_config("compare-features", off), tmp_path / "run2")
    assert t2[["ci_low", "ci_high", "p_value"]].isna().all().all()
    with pytest.raises(InvalidParameterError, match="bootstrap"):
        resolve_config("compare-features", dict(cfg, bootstrap=-1))


def test_spectral_intervals_to_first_order_above_the_exact_budget(tmp_path, monkeypatch):
    """Above EXACT_SPECTRA_MAX the resamples' spectra are taken to first order: the spectral intervals are the
    percentiles of the summaries of ``first_order_spectra`` on the same seeded resamples (their agreement with
    exact resampling is tested in tests/measures/test_first_order_spectra.py), and nothing else changes."""
    import sys

    from nnkscope.measures.spectral import first_order_spectra, summarize_spectrum
    from nnkscope.measures.uncertainty import bootstrap_weights, percentile_interval

    lw = sys.modules["nnkscope.studies.layerwise"]  # the package re-exports a function of the same name
    exact = _layers(tmp_path, "exact", n_boot=100)
    monkeypatch.setattr(lw, "EXACT_SPECTRA_MAX", 0)
    first = _layers(tmp_path, "first", n_boot=100)
    feats, _ = _features()
    W = np.concatenate(list(bootstrap_weights(200, 100, seed=0)))
    spectral = {"rankme": "rankme", "participation_ratio": "participation_ratio", "stable_rank": "stable_rank",
                "spectral_alpha": "alpha"}
    for i, name in enumerate(first.layer):
        reps = [summarize_spectrum(lam) for lam in first_order_spectra(feats[name], W)]
        for col, key in spectral.items():
            lo, hi = percentile_interval(np.array([r[key] for r in reps])[:, None])
            np.testing.assert_allclose([first[f"{col}_ci_low"][i], first[f"{col}_ci_high"][i]], [lo[0], hi[0]],
                                       rtol=1e-12)
            assert first[f"{col}_ci_low"][i] != exact[f"{col}_ci_low"][i]
    others = [c for c in exact.columns if c.endswith(("_ci_low", "_ci_high")) and not c.startswith(tuple(spectral))
              and not c.startswith("id_pca")]
    pd.testing.assert_frame_equal(exact[others], first[others])
