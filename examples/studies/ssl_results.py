"""The result tables of an ``ssl`` run folder as Markdown (the tables of docs/ssl_results.md).

    nnkscope study ssl --config examples/studies/ssl.yaml --out runs/ssl
    python examples/studies/ssl_results.py runs/ssl > ssl_results.md

* R9: per family and measured strength, in how many (model, augmentation) pairs the projector is more invariant
  than the encoder (smaller mean NNK polytope diameter of a test sample among its augmented copies), in absolute
  diameter and relative to each head's typical distance between test samples; once over the augmentations each
  model was trained with, at its own training strength (the report's R9 table), and once over every measured pair;
* R8b: the ``ssl_correlation`` rows whose bootstrap interval excludes 0 (with their permutation p-value), and
  ``ssl_predictors`` (the MGM with the largest |rho| per transfer task, chosen after the fact: exploratory).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from nnkscope.store import RunStore


def _md(df: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
        return str(v)

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in df.itertuples(index=False))


def r9_counts(inv: pd.DataFrame, own_strength: bool) -> pd.DataFrame:
    """Per family and strength: pairs where the projector's diameter (absolute, relative) is below the encoder's."""
    if own_strength:
        inv = inv[inv.trained_with & np.isclose(inv.strength, inv.train_strength)]
    wide = inv.pivot_table(index=["family", "model", "augmentation", "strength"], columns="head",
                           values=["diameter_mean", "diameter_relative"]).reset_index()
    wide.columns = ["_".join(c).strip("_") for c in wide.columns.to_flat_index()]
    wide["abs"] = wide.diameter_mean_projector < wide.diameter_mean_encoder
    wide["rel"] = wide.diameter_relative_projector < wide.diameter_relative_encoder
    wide["ratio"] = wide.diameter_relative_projector / wide.diameter_relative_encoder
    g = wide.groupby(["family", "strength"], sort=False)
    out = pd.DataFrame({"pairs": g.size(), "projector_smaller_diameter": g["abs"].sum(),
                        "projector_smaller_relative_diameter": g["rel"].sum(),
                        "median_relative_ratio_proj_over_enc": g["ratio"].median()}).reset_index()
    return out.sort_values(["family", "strength"], kind="stable")


def main(run_dir: str) -> str:
    store = RunStore(run_dir, create=False)
    inv = store.read("ssl_invariance")
    corr = store.read("ssl_correlation")
    pred = store.read("ssl_predictors")
    n_models = store.read("ssl_training").groupby("family").model.nunique()
    parts = [f"Models per family: {', '.join(f'{f} {n}' for f, n in n_models.items())}.\n"]
    parts.append("### R9, trained augmentations at the model's own training strength\n")
    parts.append(_md(r9_counts(inv, own_strength=True)))
    parts.append("\n### R9, every measured (model, augmentation) pair at each measured strength\n")
    parts.append(_md(r9_counts(inv, own_strength=False)))
    sig = corr[(corr.ci_low > 0) | (corr.ci_high < 0)]
    cols = ["family", "head", "augmentation", "mgm", "task", "shots", "spearman", "ci_low", "ci_high", "p_value",
            "n_models"]
    cols = [c for c in cols if c in corr.columns]
    total = corr.groupby("family").size()
    counts = sig.groupby("family").size().reindex(total.index, fill_value=0)
    p05 = (corr.p_value < 0.05).groupby(corr.family).sum() if "p_value" in corr else None
    parts.append("\n### R8b, correlations whose bootstrap interval excludes 0\n")
    parts.append("; ".join(f"{f}: {counts[f]} of {total[f]} rows" + (f" ({p05[f]} with permutation p < 0.05)"
                                                                     if p05 is not None else "")
                           for f in total.index) + ".\n")
    order = ["family", "p_value" if "p_value" in sig else "spearman"]
    inv_sig = sig[(sig.mgm == "diameter") & (sig.augmentation != "semantic")]
    parts.append(f"\nInvariance (mean augmentation diameter) against transfer: {len(inv_sig)} rows. For a diameter, "
                 "rho < 0 means: the more invariant models transfer better.\n")
    parts.append(_md(inv_sig.sort_values(order)[cols]))
    parts.append(f"\n<details><summary>All {len(sig)} rows (every MGM: diameter, spread, relative diameter, "
                 "semantic MGMs)</summary>\n")
    parts.append(_md(sig.sort_values(order)[cols]))
    parts.append("\n</details>\n")
    parts.append("\n### R8b, best predictor (largest |rho|) per transfer task\n")
    parts.append(_md(pred[[c for c in [*cols, "ci_excludes_zero"] if c in pred.columns]]))
    return "\n".join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/studies/ssl_results.py RUN_DIR")
    print(main(sys.argv[1]))
