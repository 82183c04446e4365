"""Study kind ``stability``: the same model trained with several seeds, compared sample by sample."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, each, integer
from ..common import build_model, config_data, layer_features, run_units, train
from ..figures import Figure, Term, density, fmt, lines, section

MAX_POINTS = 2000  # per-sample values kept per run (table stability_points): bounded whatever n_eval is


def run_stability(cfg: dict, store: RunStore, progress=None, executor=None):
    """Train one model per seed (and, with ``shuffled_labels``, per seed on permuted labels), compare the runs.
    Each (labels, seed) model is a unit (:func:`~nnkscope.studies.common.run_units`), on ``executor``'s workers
    when one is given; a unit saves its run (NNK graph and per-sample metrics, table ``stability_runs``), so a
    stopped study resumes with the runs not yet saved, and the comparison is made once every run is in."""
    import pandas as pd

    from ..stability import stability_table

    if store.has("stability"):
        return store.read("stability")
    variants = [False, True] if cfg["shuffled_labels"] else [False]
    todo = [{"shuffled_labels": v, "seed": int(seed)} for v in variants for seed in cfg["seeds"]]
    todo = [keys for keys in todo if not store.has("stability_runs", **_run_keys(**keys))]
    run_units(_seed_unit, config_data, cfg, store, todo, executor=executor, progress=progress, desc="models")
    saved = store.read("stability_runs")
    rows, points = [], []
    for shuffled_labels in variants:
        runs = {}
        for seed in cfg["seeds"]:
            keys = _run_keys(shuffled_labels, int(seed))
            graph, metrics = _saved_run(saved[(saved["labels"] == keys["labels"]) & (saved["seed"] == keys["seed"])])
            runs[f"seed{seed}"] = graph, metrics
            n = min(len(metrics["nnk_degree"]), MAX_POINTS)
            points.append(pd.DataFrame({"labels": keys["labels"], "run": f"seed{seed}", "seed": int(seed),
                                        "sample": np.arange(n), **{m: v[:n] for m, v in metrics.items()}}))
        t = stability_table(runs)
        t.insert(0, "labels", "shuffled" if shuffled_labels else "true")
        rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    store.write("stability_points", pd.concat(points, ignore_index=True))
    store.write("stability", table)  # last: its presence marks the run done
    return table


def _run_keys(shuffled_labels: bool, seed: int) -> dict:
    return {"labels": "shuffled" if shuffled_labels else "true", "seed": seed}


def _seed_unit(cfg: dict, store: RunStore, data, shuffled_labels: bool, seed: int) -> None:
    """One run: the layer's NNK graph on the evaluation points and its per-sample metrics (``run_metrics``), saved
    as one row per sample (its candidates and weights in columns ``candidate_j`` / ``theta_j``)."""
    import pandas as pd

    from ..stability import run_metrics

    ytr = np.random.default_rng(seed).permutation(data.y_train) if shuffled_labels else data.y_train
    model = build_model(cfg["model"], data, seed)
    train(model, data.X_train, ytr, cfg["train"], seed)
    Xe = data.X_test[:min(cfg["n_eval"], len(data.X_test))]
    G, metrics = run_metrics(layer_features(model, Xe, cfg["layer"]), cfg["k"])
    df = pd.DataFrame({"node": np.arange(G.n_nodes), **metrics, "error": G.errors, "status": G.status})
    for j in range(G.k):
        df[f"candidate_{j}"], df[f"theta_{j}"] = G.candidates[:, j], G.theta[:, j]
    store.write("stability_runs", df, **_run_keys(shuffled_labels, seed))


def _saved_run(df) -> tuple:
    """``(graph, metrics)`` of a run as saved by :func:`_seed_unit` (exactly: Parquet keeps every bit)."""
    from ...engine.graph import NNKGraph

    df = df.sort_values("node")
    k = sum(c.startswith("candidate_") for c in df.columns)
    graph = NNKGraph(df[[f"candidate_{j}" for j in range(k)]].to_numpy(np.int64),
                     df[[f"theta_{j}" for j in range(k)]].to_numpy(np.float64), df["error"].to_numpy(np.float64),
                     df["status"].to_numpy(np.uint8))
    metrics = {name: df[name].to_numpy(np.float64) for name in ("nnk_degree", "diameter")}
    return graph, metrics


STABLE_RATIO = 2.0  # NNK-neighbour overlap at least this many times chance counts as stable neighbourhoods
STABLE_RHO = 0.5  # per-sample Spearman across seeds at least this counts as the same samples standing out
SAME_KS = 0.1  # KS distance at most this counts as the same distribution
SHOWN = 400  # per-sample points drawn per scatter panel (the first ones: the same samples in every panel)
METRICS = {"nnk_degree": "NNK degree", "diameter": "polytope diameter"}

GLOSSARY = {
    "labels": Term("the runs' training labels: true, or shuffled (a control whose geometry carries no class "
                   "structure)"),
    "run_a": Term("first run of the pair (seedN: trained with seed N)"),
    "run_b": Term("second run of the pair"),
    "ks_nnk_degree": Term("Kolmogorov-Smirnov distance between the two runs' NNK-degree distributions", "[0, 1]",
                          f"0 = same distribution (<= {SAME_KS:g} counted as same)", "nnkscope (R14)"),
    "ks_diameter": Term("Kolmogorov-Smirnov distance between the two runs' diameter distributions", "[0, 1]",
                        f"0 = same distribution (<= {SAME_KS:g} counted as same)", "nnkscope (R14)"),
    "spearman_nnk_degree": Term("Spearman correlation of each sample's NNK degree in the two runs", "[-1, 1]",
                                "higher = the same samples have many neighbours in both runs", "nnkscope (R14)"),
    "spearman_nnk_degree_shuffled": Term("the same with one run's samples shuffled: chance (~0)", "[-1, 1]",
                                         "the floor to compare with", "nnkscope (R14)"),
    "spearman_diameter": Term("Spearman correlation of each sample's polytope diameter in the two runs", "[-1, 1]",
                              "higher = the same samples sit in wide neighbourhoods in both runs", "nnkscope (R14)"),
    "spearman_diameter_shuffled": Term("the same with one run's samples shuffled: chance (~0)", "[-1, 1]",
                                       "the floor to compare with", "nnkscope (R14)"),
}


def _pair_name(r) -> str:
    name = f"{r.run_a.replace('seed', 's')}-{r.run_b.replace('seed', 's')}"  # short: ticks must not collide
    return name if r.labels == "true" else f"{name} shuffled"


def _points_figures(p, pairs) -> list:
    import pandas as pd

    figs = []
    dens = []
    for m in METRICS:
        for lab, sub in p.groupby("labels", sort=False):
            d = density(sub, m, "seed", bins=25)
            dens.append(d.rename(columns={m: "x"}).assign(
                panel=METRICS[m] + ("" if lab == "true" else " (shuffled labels)")))
    figs.append(Figure("Per-seed distributions", lines(pd.concat(dens, ignore_index=True), "x", "density",
                                                       by="seed", key="seed {}", panel="panel", mode="lines",
                                                       x_title="value", y_title="density", cols=2),
                       "Each seed's distribution of the per-sample metric, overlaid: curves on top of each other "
                       "mean the runs agree in distribution (KS distance small).", ("nnk_degree", "diameter")))
    scat, titles = [], {}
    for r in pairs[pairs.labels == "true"].head(3).itertuples():
        a = p[(p.labels == "true") & (p.run == r.run_a)].set_index("sample")
        b = p[(p.labels == "true") & (p.run == r.run_b)].set_index("sample")
        for m in METRICS:
            both = pd.DataFrame({"a": a[m], "b": b[m]}).dropna().head(SHOWN).reset_index()
            panel = f"{METRICS[m]}: {r.run_a} vs {r.run_b}"
            titles[panel] = f"{panel} (Spearman {fmt(getattr(r, 'spearman_' + m), 2)})"
            scat.append(both.assign(panel=panel))
    if scat:
        figs.append(Figure("Per-sample values, seed A vs seed B", lines(
            pd.concat(scat, ignore_index=True), "a", "b", panel="panel", mode="markers", titles=titles, cols=2,
            diagonal=True, x_title="value in run A", y_title="value in run B", hover=("sample",)),
            f"One point per evaluation sample (the first {SHOWN}); on the dashed diagonal the two runs give the "
            "sample the same value.", ("nnk_degree", "diameter", "spearman_nnk_degree", "spearman_diameter")))
    return figs


def _stability_section(store: RunStore) -> dict:
    import pandas as pd

    t = store.read("stability")
    tables = store.tables()
    figs = _points_figures(store.read("stability_points"), t) if "stability_points" in tables else []
    stats = [("spearman_nnk_degree", "Spearman of NNK degree"), ("spearman_diameter", "Spearman of diameter"),
             ("jaccard", "NNK-neighbour Jaccard")]
    bars = []
    for col, label in stats:
        for what, src in (("observed", col), ("chance", "jaccard_shuffled" if col == "jaccard" else col + "_shuffled")):
            bars.append(t.assign(pair=[_pair_name(r) for r in t.itertuples()], statistic=label, what=what,
                                 value=t[src])[["pair", "statistic", "what", "value", "run_a", "run_b"]])
    figs.append(Figure("Run pairs against chance", lines(
        pd.concat(bars, ignore_index=True), "pair", "value", by="what", panel="statistic", mode="bar",
        colour={"observed": "#4477AA", "chance": "#BBBBBB"}, x_title="pair of runs (s0-s1: seed 0 vs seed 1)",
        y_title="value", hover=("run_a", "run_b")),
        "Per pair of runs, each statistic next to its shuffled chance level: a bar far above its grey twin is "
        "structure the runs share.", [c for c, _ in stats] + ["jaccard_shuffled"]))
    real = t[t.labels == "true"]
    ratio = real.jaccard_ratio.mean()
    takeaways = [
        f"Across {len(real)} pair(s) of runs, NNK neighbourhoods overlap {fmt(real.jaccard.mean())} = "
        f"{fmt(ratio, 2)}x chance: {'stable' if ratio >= STABLE_RATIO else 'not stable'} (>= {STABLE_RATIO:g}x "
        "counts as stable).",
        f"Per-sample Spearman across seeds: NNK degree {fmt(real.spearman_nnk_degree.mean(), 2)}, diameter "
        f"{fmt(real.spearman_diameter.mean(), 2)} (>= {STABLE_RHO:g} counts as the same samples standing out; "
        f"chance {fmt(real.spearman_diameter_shuffled.mean(), 2)}).",
        f"Largest KS distance between runs: {fmt(real.ks_nnk_degree.max())} (degree), {fmt(real.ks_diameter.max())} "
        f"(diameter); <= {SAME_KS:g} counts as the same distribution: "
        f"{'same' if max(real.ks_nnk_degree.max(), real.ks_diameter.max()) <= SAME_KS else 'they differ'}."]
    shuf = t[t.labels == "shuffled"]
    if len(shuf):
        takeaways.append(f"With shuffled training labels the overlap is {fmt(shuf.jaccard_ratio.mean(), 2)}x chance "
                         f"(vs {fmt(ratio, 2)}x with true labels; >= {STABLE_RATIO:g}x counts as stable).")
    return section("Stability across runs", takeaways, figs, t, GLOSSARY)


STABILITY = StudyKind(
    name="stability", run=run_stability, section=_stability_section,
    tables=("stability", "stability_points", "stability_runs"),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "seeds": [0, 1, 2], "layer": "blocks.1", "k": 25,
              "n_eval": 1000, "shuffled_labels": False},
    checks={"seeds": lambda v: each(integer(0))(v) or (None if len(set(v)) >= 2 else "at least two distinct seeds")},
    summary="seeds against each other: KS, per-sample Spearman, neighbour Jaccard vs shuffled")
