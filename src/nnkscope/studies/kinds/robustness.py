"""Study kind ``robustness``: how NNK neighbourhoods, diameters and LOO error of each layer move under input noise,
FGSM/PGD attacks and weight noise, and an NNK adversarial-input detector."""

from __future__ import annotations

import numpy as np

from ...store import RunStore
from ..base import DATA, MODEL, TRAIN, StudyKind, choice, each, integer, number
from ..common import build_model, layer_features, load_data, run_units, train
from ..figures import Figure, Term, fmt, lines, section

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


def run_robustness(cfg: dict, store: RunStore, progress=None, executor=None):
    """Train the model once (seeded); for every perturbation and strength, per layer: NNK geometry of the
    perturbed evaluation points against their clean versions (reference: training points), model accuracy; then
    the detector: clean vs attacked evaluation points scored by NNK label disagreement and interpolation error.
    Each (perturbation, strength) and the detector are units (:func:`~nnkscope.studies.common.run_units`), on
    ``executor``'s workers when one is given: every worker trains the same seeded model once."""
    todo = [{"perturbation": kind, "strength": float(strength)} for kind in cfg["perturb"]
            for strength in cfg["perturbations"][kind]]
    todo = [keys for keys in todo if not store.has("robustness", **keys)]
    det = cfg["detector"]
    if not store.has("adversarial_detector", attack=det["attack"], eps=float(det["eps"])):
        todo.append({"perturbation": "detector"})
    run_units(_robustness_unit, _trained, cfg, store, todo, executor=executor, progress=progress,
              desc="perturbations")
    return _table(store)


def _trained(cfg: dict) -> dict:
    """What every unit reads: the data's reference and evaluation points, the trained model, its clean features."""
    data = load_data(cfg["data"])
    model = build_model(cfg["model"], data, cfg["seed"])
    train(model, data.X_train, data.y_train, cfg["train"], cfg["seed"])
    Xr, yr = data.X_train[: cfg["n_reference"]], data.y_train[: cfg["n_reference"]]
    Xe, ye = data.X_test[: cfg["n_eval"]], data.y_test[: cfg["n_eval"]]
    return {"model": model, "Xr": Xr, "yr": yr, "Xe": Xe, "ye": ye,
            "ref0": {L: layer_features(model, Xr, L) for L in cfg["layers"]},
            "F0": {L: layer_features(model, Xe, L) for L in cfg["layers"]}}


def _robustness_unit(cfg: dict, store: RunStore, shared: dict, perturbation: str, strength: float = 0.0) -> None:
    import pandas as pd

    from ...nn.attacks import perturb_weights
    from ...nn.models import predict
    from ..robustness import layer_robustness

    name = cfg["name"] or cfg["model"]["kind"]
    model, Xr, yr, Xe, ye, ref0 = (shared[key] for key in ("model", "Xr", "yr", "Xe", "ye", "ref0"))
    if perturbation == "detector":
        _detector(cfg, store, model, name, Xr, yr, Xe, ye, ref0)
        return
    seed, k, layers = cfg["seed"], cfg["k"], cfg["layers"]
    if perturbation == "weights":
        m = perturb_weights(model, strength, seed)
        X1, ref1 = Xe, {L: layer_features(m, Xr, L) for L in layers}
    else:
        m = model
        X1, ref1 = _perturb_inputs(model, Xe, ye, perturbation, strength, cfg, seed), ref0
    acc = float((predict(m, X1) == ye).mean())
    rows = []
    for L in layers:
        F1 = layer_features(m, X1, L)
        rows.append({"model": name, "layer": L, **layer_robustness(ref0[L], ref1[L], yr, shared["F0"][L], F1, ye, k),
                     "accuracy": acc})
    store.write("robustness", pd.DataFrame(rows), perturbation=perturbation, strength=strength)


def _detector(cfg, store, model, name, Xr, yr, Xe, ye, ref0):
    import pandas as pd

    from ...measures.reliability import auroc
    from ...nn.models import predict
    from ..robustness import detector_scores

    det = cfg["detector"]
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


BROKEN = 0.5  # NNK-neighbour overlap with the clean points below this counts as the layer's geometry broken
MARGIN = 0.01  # detector AUROC above the best baseline's by at least this counts as NNK detecting better
ACCURACY = "accuracy of the model"  # drawn with the layers' overlap curves, in black: not a layer
METRICS = {"overlap": "NNK-neighbour overlap with clean", "loo_error": "NNK LOO error",
           "diameter": "polytope diameter"}
DETECTORS = {  # column -> (method, colour): methods, not models, so the colours are fixed here
    "score": ("NNK score", "#4477AA"), "disagreement": ("NNK disagreement", "#66CCEE"),
    "interpolation_error": ("NNK interpolation error", "#228833"), "baseline_auroc": ("kNN disagreement", "#BBBBBB"),
    "knn_distance_auroc": ("kNN distance", "#777777")}
GLOSSARY = {
    "perturbation": Term("what is perturbed: gaussian input noise, FGSM / PGD attacks (L-inf or L2) or relative "
                         "Gaussian noise on every weight (weights)"),
    "strength": Term("the perturbation's size: noise std, attack eps, or relative weight-noise std", ">= 0",
                     "0 = clean"),
    "overlap": Term("mean Jaccard overlap of each evaluation point's NNK neighbours (among the reference points) "
                    "before and after the perturbation", "[0, 1]",
                    f"1 = unchanged; below {BROKEN:g} counted as broken", "nnkscope"),
    "diameter": Term("mean NNK polytope diameter of the perturbed points", "[0, 2]",
                     "higher = looser neighbourhoods", "Shekkizhar & Ortega"),
    "diameter_change": Term("mean change of each point's diameter from clean", "[-2, 2]", "0 = unchanged"),
    "nnk_degree": Term("mean number of NNK neighbours of the perturbed points", "[0, K]", ""),
    "degree_change": Term("mean change of each point's NNK degree from clean", "", "0 = unchanged"),
    "nnk_error": Term("error of the NNK classifier on the perturbed points", "[0, 1]", "lower = better"),
    "loo_error": Term("NNK leave-one-out error of the reference points under the perturbation", "[0, 1]",
                      "lower = labels still smooth", "Shekkizhar & Ortega, DeepNNK"),
    "interpolation_error": Term("mean NNK interpolation error of the perturbed points", ">= 0",
                                "higher = off the data manifold", "Shekkizhar & Ortega"),
    "dead_rows": Term("points whose features are all zero", "integer", "0 = none"),
    "attack": Term("the attack the detector is tested on"), "eps": Term("the attack's eps", "> 0"),
    "score": Term("the NNK detector score: score (disagreement and interpolation error combined), disagreement "
                  "(NNK label vote vs prediction) or interpolation_error"),
    "knn_distance_auroc": Term("AUROC of the mean distance to the K nearest neighbours", "[0, 1]",
                               "0.5 = chance, 1 = perfect"),
    "auroc_successful": Term("AUROC with only the attacks that changed the prediction as positives", "[0, 1]",
                             "0.5 = chance"),
    "baseline_auroc_successful": Term("the same for the kNN disagreement", "[0, 1]", "0.5 = chance"),
    "knn_distance_auroc_successful": Term("the same for the kNN distance", "[0, 1]", "0.5 = chance"),
    "attack_success": Term("fraction of attacked points whose prediction changed", "[0, 1]", ""),
    "clean_accuracy": Term("accuracy on the clean evaluation points", "[0, 1]", "higher = better"),
    "attacked_accuracy": Term("accuracy on the attacked evaluation points", "[0, 1]", "higher = better"),
}


def _breaks(t) -> list[str]:
    """Per perturbation: the smallest strength at which each layer's overlap falls below BROKEN."""
    out = []
    for kind, sub in t.groupby("perturbation", sort=False):
        first = {layer: s[s.overlap < BROKEN].strength.min() for layer, s in sub.groupby("layer", sort=False)}
        broke = {layer: v for layer, v in first.items() if np.isfinite(v)}
        top = sub[sub.strength == sub.strength.max()]
        if not broke:
            out.append(f"{kind}: no layer breaks up to strength {sub.strength.max():g} (overlap < {BROKEN:g} counts "
                       f"as broken); lowest overlap {fmt(top.overlap.min())}, model accuracy "
                       f"{fmt(top.accuracy.iloc[0])}.")
            continue
        s0 = min(broke.values())
        layers = [layer for layer, v in broke.items() if v == s0]
        at = sub[sub.strength == s0]
        low = at.loc[at.overlap.idxmin()]
        out.append(f"{kind}: {', '.join(layers)} break{'s' if len(layers) == 1 else ''} first, at strength {s0:g} "
                   f"(overlap < {BROKEN:g} counts as broken; {len(broke)} of {len(first)} layers break by "
                   f"{sub.strength.max():g}); lowest overlap there {low.layer} {fmt(low.overlap)}, model accuracy "
                   f"{fmt(at.accuracy.iloc[0])}.")
    return out


def _detector_figure(d):
    import pandas as pd

    bars = []
    for which, suffix in (("all attacks", ""), ("successful attacks only", "_successful")):
        for r in d.itertuples():
            bars.append({"which": which, "method": DETECTORS[r.score][0], "auroc": getattr(r, "auroc" + suffix)})
        r = d.iloc[0]
        for col in ("baseline_auroc", "knn_distance_auroc"):
            bars.append({"which": which, "method": DETECTORS[col][0], "auroc": r[col + suffix]})
    fig = lines(pd.DataFrame(bars), "which", "auroc", by="method", mode="bar", ref={"chance": 0.5},
                colour={m: c for m, c in DETECTORS.values()}, x_title="positives", y_title="AUROC")
    fig.update_yaxes(range=[0.0, 1.0])
    return fig


def _robustness_section(store: RunStore) -> dict:
    import pandas as pd

    t = _table(store)
    figures = []
    for metric, label in METRICS.items():
        data = t.assign(series=t.layer)
        if metric == "overlap":  # the model's accuracy next to the geometry: which one gives way first
            acc = t.groupby(["perturbation", "strength"], as_index=False, sort=False).accuracy.first()
            data = pd.concat([data, acc.assign(series=ACCURACY, overlap=acc.accuracy)], ignore_index=True)
        fig = lines(data, "strength", metric, by="series", key=lambda v: v if v == ACCURACY else f"layer {v}",
                    panel="perturbation", x_title="strength (eps, noise std or relative weight noise)",
                    y_title=label, hover=("accuracy",), colour={ACCURACY: "black"},
                    ref={f"broken (< {BROKEN:g})": BROKEN} if metric == "overlap" else None)
        figures.append(Figure(f"{label} vs strength", fig, "One panel per perturbation, one curve per layer: the "
                              "layer whose curve drops first is the first whose geometry gives way.",
                              (metric, "strength", "accuracy")))
    takeaways = _breaks(t)
    table = {"per layer": t}
    if "adversarial_detector" in store.tables():
        d = store.read("adversarial_detector")
        table["detector"] = d
        for (attack, eps), sub in d.groupby(["attack", "eps"], sort=False):
            best = sub.loc[sub.auroc.idxmax()]
            base = max(best.baseline_auroc, best.knn_distance_auroc)
            verdict = ("NNK detects better" if best.auroc - base >= MARGIN else
                       "a kNN baseline detects better" if base - best.auroc >= MARGIN else "no difference")
            takeaways.append(f"Detector ({attack}, eps {eps:g}, layer {best.layer}): best NNK score "
                             f"{best.score} AUROC {fmt(best.auroc)} vs best kNN baseline {fmt(base)}: {verdict} "
                             f"(a margin of {MARGIN:g} counts; 0.5 is chance); attack success "
                             f"{fmt(best.attack_success, 2)}.")
            figures.append(Figure(f"Adversarial detector ({attack}, eps {eps:g})", _detector_figure(sub),
                                  "AUROC of telling attacked from clean points, over all attacks and over the "
                                  "successful ones only; the dotted line is chance.",
                                  ("auroc", "baseline_auroc", "knn_distance_auroc", "auroc_successful")))
    return section("Robustness of NNK geometry", takeaways, figures, table, GLOSSARY)


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
