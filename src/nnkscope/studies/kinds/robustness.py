"""Study kind ``robustness``: how NNK neighbourhoods, diameters and LOO error of each layer move under input noise,
FGSM/PGD attacks and weight noise, and an NNK adversarial-input detector."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer, number
from ..common import build_model, layer_features, load_data, train
from ..figures import grid, html_table, png

PERTURBATIONS = ("gaussian", "fgsm_linf", "fgsm_l2", "pgd_linf", "pgd_l2", "weights")


def _perturb_inputs(model, X, y, kind: str, strength: float, cfg: dict, seed: int):
    from ...nn.attacks import fgsm, gaussian_noise, pgd

    clip = tuple(cfg["clip"]) if cfg["clip"] else None
    if kind == "gaussian":
        return gaussian_noise(X, strength, seed, clip=clip)
    attack, norm = kind.split("_")
    if attack == "fgsm":
        return fgsm(model, X, y, strength, norm=norm, clip=clip)
    return pgd(model, X, y, strength, norm=norm, steps=cfg["pgd_steps"], clip=clip)


def run_robustness(cfg: dict, store: RunStore, progress=None):
    """Train the model once (seeded); for every perturbation and strength, per layer: NNK geometry of the
    perturbed evaluation points against their clean versions (reference: training points), model accuracy; then
    the detector: clean vs attacked evaluation points scored by NNK label disagreement and interpolation error."""
    import pandas as pd

    from ...nn.attacks import perturb_weights
    from ...nn.models import predict
    from ..robustness import layer_robustness

    data = load_data(cfg["data"])
    seed, k, layers = cfg["seed"], cfg["k"], cfg["layers"]
    name = cfg["name"] or cfg["model"]["kind"]
    model = build_model(cfg["model"], data, seed)
    train(model, data.X_train, data.y_train, cfg["train"], seed)
    Xr, yr = data.X_train[: cfg["n_reference"]], data.y_train[: cfg["n_reference"]]
    Xe, ye = data.X_test[: cfg["n_eval"]], data.y_test[: cfg["n_eval"]]
    ref0 = {L: layer_features(model, Xr, L) for L in layers}
    F0 = {L: layer_features(model, Xe, L) for L in layers}
    for kind in cfg["perturb"]:
        for strength in cfg["perturbations"][kind]:
            keys = {"perturbation": kind, "strength": float(strength)}
            if store.has("robustness", **keys):
                continue
            if kind == "weights":
                m = perturb_weights(model, strength, seed)
                X1, ref1 = Xe, {L: layer_features(m, Xr, L) for L in layers}
            else:
                m = model
                X1, ref1 = _perturb_inputs(model, Xe, ye, kind, strength, cfg, seed), ref0
            acc = float((predict(m, X1) == ye).mean())
            rows = []
            for L in layers:
                F1 = layer_features(m, X1, L)
                rows.append({"model": name, "layer": L, **layer_robustness(ref0[L], ref1[L], yr, F0[L], F1, ye, k),
                             "accuracy": acc})
            store.write("robustness", pd.DataFrame(rows), **keys)
    _detector(cfg, store, model, name, Xr, yr, Xe, ye, ref0)
    return _table(store)


def _detector(cfg, store, model, name, Xr, yr, Xe, ye, ref0):
    import pandas as pd

    from ...measures.reliability import auroc
    from ...nn.models import predict
    from ..robustness import detector_scores

    det = cfg["detector"]
    if store.has("adversarial_detector", attack=det["attack"], eps=float(det["eps"])):
        return
    L = det["layer"] or cfg["layers"][-1]
    Xa = _perturb_inputs(model, Xe, ye, det["attack"], det["eps"], cfg, cfg["seed"])
    p0, p1 = predict(model, Xe), predict(model, Xa)
    ref = ref0[L] if L in ref0 else layer_features(model, Xr, L)
    s0 = detector_scores(ref, yr, layer_features(model, Xe, L), p0, cfg["k"])
    s1 = detector_scores(ref, yr, layer_features(model, Xa, L), p1, cfg["k"])
    adv = np.r_[np.zeros(len(Xe), bool), np.ones(len(Xe), bool)]
    flipped = p1 != p0
    rows = []
    for score in ("score", "disagreement", "interpolation_error"):
        both = np.r_[s0[score], s1[score]]
        base = np.r_[s0["knn_disagreement"], s1["knn_disagreement"]]
        dist = np.r_[s0["knn_distance"], s1["knn_distance"]]
        # only the attacks that changed the prediction as positives (clean points stay the negatives)
        keep = np.r_[np.ones(len(Xe), bool), flipped]
        rows.append({"model": name, "layer": L, "score": score, "auroc": auroc(both, adv),
                     "baseline_auroc": auroc(base, adv), "knn_distance_auroc": auroc(dist, adv),
                     "auroc_successful": auroc(both[keep], adv[keep]) if flipped.any() else np.nan,
                     "baseline_auroc_successful": auroc(base[keep], adv[keep]) if flipped.any() else np.nan,
                     "knn_distance_auroc_successful": auroc(dist[keep], adv[keep]) if flipped.any() else np.nan,
                     "attack_success": float(flipped.mean()), "clean_accuracy": float((p0 == ye).mean()),
                     "attacked_accuracy": float((p1 == ye).mean())})
    store.write("adversarial_detector", pd.DataFrame(rows), attack=det["attack"], eps=float(det["eps"]))


def _table(store: RunStore):
    t = store.read("robustness")
    cols = ["model", "layer", "perturbation", "strength", "overlap", "diameter", "loo_error", "accuracy"]
    rest = [c for c in t.columns if c not in cols]
    return t[cols + rest].sort_values(["perturbation", "layer", "strength"], ignore_index=True)


def _robustness_section(store: RunStore) -> dict:
    t = _table(store)
    kinds = list(dict.fromkeys(t.perturbation))
    figures = []
    for metric, label in (("overlap", "NNK-neighbour overlap with clean"), ("loo_error", "NNK LOO error"),
                          ("diameter", "polytope diameter")):
        fig, axes = grid(len(kinds))
        for ax, kind in zip(axes, kinds, strict=False):
            sub = t[t.perturbation == kind]
            for layer, s in sub.groupby("layer", sort=False):
                ax.plot(s.strength, s[metric], "o-", label=layer)
            if metric == "overlap":
                acc = sub.groupby("strength").accuracy.first()
                ax.plot(acc.index, acc.values, "k--", label="model accuracy")
            ax.set(title=kind, xlabel="strength (eps, std or relative weight noise)", ylabel=label)
        axes[0].legend(fontsize=7)
        figures.append((label, png(fig)))
    summary = []
    for kind in kinds:
        sub = t[t.perturbation == kind]
        top = sub[sub.strength == sub.strength.max()]
        summary.append(f"{kind} at strength {top.strength.iloc[0]:g}: model accuracy {top.accuracy.iloc[0]:.3f}; "
                       "overlap " + ", ".join(f"{r.layer} {r.overlap:.2f}" for r in top.itertuples()) + ".")
    if "adversarial_detector" in store.tables():
        d = store.read("adversarial_detector")
        for r in d.itertuples():
            summary.append(f"Detector ({r.attack}, eps {r.eps:g}, layer {r.layer}, {r.score}): AUROC {r.auroc:.3f} "
                           f"vs kNN disagreement {r.baseline_auroc:.3f} and kNN distance {r.knn_distance_auroc:.3f} "
                           f"(successful attacks only: "
                           f"{r.auroc_successful:.3f} vs {r.baseline_auroc_successful:.3f} and "
                           f"{r.knn_distance_auroc_successful:.3f}; attack success "
                           f"{r.attack_success:.2f}).")
    return {"title": "Robustness of NNK geometry", "figures": figures, "summary": summary, "table": html_table(t)}


def _perturbation_lists(v):
    if not isinstance(v, dict):
        return None  # merge already refused it
    for kind, strengths in v.items():
        if not isinstance(strengths, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in strengths):
            return f"a mapping of perturbation -> list of strengths >= 0 (bad entry {kind}: {strengths!r})"
    return None


def _clip(v):
    ok = v == [] or (isinstance(v, list) and len(v) == 2 and all(isinstance(c, (int, float)) for c in v)
                     and v[0] < v[1])
    return None if ok else "[] (no clipping) or [low, high] with low < high"


ROBUSTNESS = StudyKind(
    name="robustness", run=run_robustness, section=_robustness_section,
    tables=("robustness", "adversarial_detector"),
    defaults={"data": DATA, "model": MODEL, "train": TRAIN, "name": "", "seed": 0, "layers": ["blocks.0", "blocks.1"],
              "perturb": list(PERTURBATIONS), "k": 25, "n_eval": 300, "n_reference": 1000, "clip": [0.0, 1.0],
              "pgd_steps": 10,
              "perturbations": {"gaussian": [0.0, 0.1, 0.2, 0.4], "fgsm_linf": [0.0, 0.02, 0.05, 0.1],
                                "fgsm_l2": [0.0, 0.25, 0.5, 1.0], "pgd_linf": [0.0, 0.02, 0.05, 0.1],
                                "pgd_l2": [0.0, 0.25, 0.5, 1.0], "weights": [0.0, 0.05, 0.1, 0.2, 0.5]},
              "detector": {"attack": "pgd_linf", "eps": 0.05, "layer": ""}},
    checks={"layers": each(lambda v: None if isinstance(v, str) and v else "a layer name"),
            "perturb": each(choice(*PERTURBATIONS)), "n_eval": integer(10), "n_reference": integer(10),
            "pgd_steps": integer(1), "clip": _clip,
            "perturbations": _perturbation_lists, "detector.attack": choice(*PERTURBATIONS[1:5]),
            "detector.eps": number(0, open_lo=True)},
    summary="NNK overlap, diameter and LOO per layer under noise, FGSM/PGD and weight noise; NNK adversarial detector")
