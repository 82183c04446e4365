"""Run the study reproductions of the research notes (§16.2: R3, R4, R8a, R10, R11, R14) from their configs in
``examples/studies/``, print each table and check each claim with the catalogue's tolerance.

    python examples/study_reproductions.py                 # all (about 30-40 min on 2 cores)
    python examples/study_reproductions.py r10 r14         # some
    python examples/study_reproductions.py --out runs      # run folders (resumable) and reports go there

Each run is the same as ``nnkscope study KIND --config examples/studies/<file>.yaml --out runs/<id>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnkscope.report import write_report
from nnkscope.studies.registry import load_config, run_study

HERE = Path(__file__).resolve().parent / "studies"
CONFIGS = {"r3": ("early-stopping", "r3_deepnnk.yaml"), "r4": ("early-stopping", "r4_cw_deepnnk.yaml"),
           "r8a": ("invariance", "r8a_invariance.yaml"), "r10": ("width-sweep", "r10_width_sweep.yaml"),
           "r11": ("training", "r11_label_variation.yaml"), "r14": ("stability", "r14_stability.yaml")}


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    return bool(ok)


def checks_r3(t: pd.DataFrame) -> list[bool]:
    final = t.sort_values("epoch").groupby("arm").tail(1).set_index("arm")
    out = []
    for arm, r in final.iterrows():
        out.append(check(f"{arm}: NNK LOO - train error >= 0.1", r.loo_error_nnk - r.train_error >= 0.1,
                         f"{r.loo_error_nnk:.3f} - {r.train_error:.3f}"))
        out.append(check(f"{arm}: NNK test error <= model test error", r.nnk_test_error <= r.test_error,
                         f"{r.nnk_test_error:.3f} vs {r.test_error:.3f}"))
        sub = t[t.arm == arm]
        out.append(check(f"{arm}: NNK LOO <= weighted-kNN LOO at every checkpoint",
                         (sub.loo_error_nnk <= sub.loo_error_wknn).all(),
                         f"max(NNK - wkNN) = {(sub.loo_error_nnk - sub.loo_error_wknn).max():+.3f}"))
    by_loo = list(final.loo_error_nnk.sort_values().index)
    by_test = list(final.test_error.sort_values().index)
    out.append(check("ranking by NNK LOO = ranking by test error", by_loo == by_test, f"{by_loo} vs {by_test}"))
    return out


def checks_r4(t: pd.DataFrame) -> list[bool]:
    acc = t.groupby("arm").test_accuracy.mean()
    out = [check("mean acc(CW) >= mean acc(validation) - 0.02", acc["cw"] >= acc["validation"] - 0.02,
                 f"{acc['cw']:.3f} vs {acc['validation']:.3f} (fixed {acc.get('fixed', np.nan):.3f})")]
    for _, r in t[t.arm == "cw"].iterrows():
        # a channel that never froze keeps training to the cap: its "freeze" is the end of training
        epochs = {int(e) if e != "-" else int(r.epochs_trained) for e in r.freeze_epochs.split(",")}
        out.append(check(f"seed {r.seed}: >= 3 distinct freeze epochs", len(epochs) >= 3,
                         f"freeze epochs {r.freeze_epochs} (trained {r.epochs_trained})"))
    return out


def checks_r8a(t: pd.DataFrame, store) -> list[bool]:
    out = []
    for seed, sub in t.groupby("seed"):
        w, wo = sub[sub.augment].iloc[0], sub[~sub.augment].iloc[0]
        out.append(check(f"seed {seed}: diameter(with) < 0.7 x diameter(without)",
                         w.mean_diameter < 0.7 * wo.mean_diameter, f"{w.mean_diameter:.3f} vs {wo.mean_diameter:.3f}"))
        out.append(check(f"seed {seed}: rot-90 accuracy(with) > (without) + 0.5",
                         w.accuracy_rot90 > wo.accuracy_rot90 + 0.5,
                         f"{w.accuracy_rot90:.3f} vs {wo.accuracy_rot90:.3f}"))
    d = store.read("invariance").diameter
    out.append(check("all diameters in [0, 2]", bool(((d >= 0) & (d <= 2)).all()), f"[{d.min():.3f}, {d.max():.3f}]"))
    return out


def checks_r10(t: pd.DataFrame) -> list[bool]:
    from scipy.stats import spearmanr

    t = t.sort_values("width")
    rho = spearmanr(t.width, t.homogeneous_fraction_H).statistic
    g8, g1024 = t.gap.iloc[0], t.gap.iloc[-1]
    return [check("Spearman(width, H) >= 0.8", rho >= 0.8, f"{rho:.3f}; H = {list(t.homogeneous_fraction_H.round(3))}"),
            check("gap(1024) < 0.5 x gap(8)", g1024 < 0.5 * g8, f"{g1024:.4f} vs {g8:.4f}"),
            check("weighted <= unweighted at every width", (t.loo_error_weighted <= t.loo_error_unweighted).all(),
                  f"gaps {list(t.gap.round(4))}")]


def checks_r11(t: pd.DataFrame) -> list[bool]:
    hidden = t[t.layer != "input"].sort_values("layer_index")
    trained = hidden[hidden.epoch == hidden.epoch.max()].label_variation.to_numpy()
    init = hidden[hidden.epoch == 0].label_variation.to_numpy()
    return [check("trained: last hidden layer < 0.1 and < first hidden layer",
                  trained[-1] < 0.1 and trained[-1] < trained[0], f"{np.round(trained, 3).tolist()}"),
            check("init: non-decreasing with depth within 0.02", bool((np.diff(init) >= -0.02).all()),
                  f"{np.round(init, 3).tolist()}")]


def checks_r14(t: pd.DataFrame) -> list[bool]:
    real, shuf = t[t.labels == "true"], t[t.labels == "shuffled"]
    out = [check("KS < 0.1 (NNK degree, diameter)", (real.ks_nnk_degree < 0.1).all() and (real.ks_diameter < 0.1).all(),
                 f"max {real.ks_nnk_degree.max():.3f}, {real.ks_diameter.max():.3f}"),
           check("Spearman NNK degree > 0.25, diameter > 0.5",
                 (real.spearman_nnk_degree > 0.25).all() and (real.spearman_diameter > 0.5).all(),
                 f"min {real.spearman_nnk_degree.min():.3f}, {real.spearman_diameter.min():.3f}"),
           check("shuffled |rho| < 0.1", (real[["spearman_nnk_degree_shuffled", "spearman_diameter_shuffled"]].abs()
                                           < 0.1).all().all(),
                 f"max {real[['spearman_nnk_degree_shuffled', 'spearman_diameter_shuffled']].abs().max().max():.3f}"),
           check("Jaccard > 10 x shuffled", (real.jaccard > 10 * real.jaccard_shuffled).all(),
                 f"min ratio {real.jaccard_ratio.min():.1f}")]
    if len(shuf):
        out.append(check("shuffled-label runs less stable than real-label runs",
                         shuf.jaccard.mean() < real.jaccard.mean(),
                         f"Jaccard {shuf.jaccard.mean():.3f} vs {real.jaccard.mean():.3f}"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ids", nargs="*", help=f"which reproductions ({', '.join(CONFIGS)}; default all)")
    ap.add_argument("--out", default="runs")
    args = ap.parse_args()
    unknown = sorted(set(args.ids) - set(CONFIGS))
    if unknown:
        ap.error(f"unknown reproduction(s) {unknown}; choose from {list(CONFIGS)}")
    results = {}
    for rid in args.ids or list(CONFIGS):
        kind, file = CONFIGS[rid]
        t0 = time.perf_counter()
        store, table = run_study(kind, load_config(kind, HERE / file), Path(args.out) / rid)
        write_report(Path(args.out) / rid)
        print(f"\n=== {rid.upper()} ({kind}, {file}; {time.perf_counter() - t0:.0f} s; report {args.out}/{rid}/"
              "report.html)")
        with pd.option_context("display.width", 200, "display.max_columns", 40):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        fn = globals()[f"checks_{rid}"]
        results[rid] = fn(table, store) if rid == "r8a" else fn(table)
    print("\n" + ", ".join(f"{rid}: {sum(r)}/{len(r)} checks pass" for rid, r in results.items()))
    return 0 if all(all(r) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
