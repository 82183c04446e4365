"""Study kind ``ssl``: families of self-supervised models, their invariance per augmentation in the encoder and
the projector, their transfer, and how the two relate across models (research notes §9 R8b, §10 R9).

A *family* is one dataset with one encoder/projector architecture and a list of models (SimCLR or VICReg, each
with its own augmentation set, strength and seed).  For every model:

* ``ssl_training``: the loss per epoch (the weights are kept under ``ssl_models/`` in the run folder);
* ``ssl_invariance``: per head (encoder, projector), measured augmentation and strength, the statistics of each
  test sample's NNK polytope diameter among its augmented copies and of the copies' spread;
* ``ssl_semantic``: per head, semantic MGMs of the test embedding (mean NNK degree, diameter, local ID) and its
  effective rank;
* ``ssl_transfer``: per head, few-shot accuracy (NNK classifier and a logistic probe, 1/5/10 labels per class) and
  R^2 of a ridge probe (Gaussian-kernel ridge by default, ``transfer.probe``) predicting each measured
  augmentation's parameters from the features of a sample and of its transformed copy.

Then, per family, ``ssl_correlation``: Spearman rho across models (with a bootstrap interval and a permutation
p-value, ``p_value``) of every MGM (augmentation diameter and spread at ``correlation.strength``, semantic MGMs) of
both heads against every transfer task of the *encoder*, and ``ssl_predictors``: per task, the MGM that predicts it
best.  A family needs at least four models; everything (names, strengths, sizes) is checked before any training starts.
"""

from __future__ import annotations

import copy
import re

import numpy as np

from ...errors import InvalidParameterError
from ...store import RunStore
from ..base import StudyKind, choice, each, integer, number
from ..figures import Figure, Term, fmt_rho, lines, section

METHODS = {"simclr": "nt_xent", "vicreg": "vicreg"}
SSL_DATASETS = ("mnist1d", "mnist", "digits")
HEADS = ("encoder", "projector")
SEMANTIC_MGMS = ("nnk_degree", "diameter", "local_id")
TABLES = ("ssl_correlation", "ssl_training", "ssl_invariance", "ssl_semantic", "ssl_transfer", "ssl_predictors")
_UNIT_TABLES = ("ssl_training", "ssl_invariance", "ssl_semantic", "ssl_transfer")

MODEL_ENTRY = {"name": "", "method": "simclr", "augment": ["shift", "scale", "noise"], "strength": 0.5, "seed": 0}


def _entry(method: str, augment: list, strength: float, seed: int = 0) -> dict:
    return dict(MODEL_ENTRY, method=method, augment=augment, strength=strength, seed=seed)


_ALL_1D = ["shift", "scale", "noise"]
FAMILY = {
    "name": "mnist1d",
    "data": {"name": "mnist1d", "seed": 0, "n_train": 0, "n_test": 0, "test_size": 0.2},
    "encoder": {"kind": "mlp", "hidden": [256], "channels": 16, "out_dim": 128, "batchnorm": True},
    "projector": {"hidden": 128, "out_dim": 32, "batchnorm": True},
    "train": {"epochs": 30, "batch_size": 256, "lr": 0.001, "weight_decay": 0.0, "temperature": 0.2},
    "augmentations": list(_ALL_1D),
    "models": [_entry("simclr", _ALL_1D, s, seed) for s in (0.25, 0.5, 1.0) for seed in (0, 1)]
    + [_entry("simclr", ["scale", "noise"], 1.0), _entry("simclr", ["shift", "noise"], 1.0),
       _entry("vicreg", _ALL_1D, 0.5), _entry("vicreg", _ALL_1D, 1.0)],
}
_ALL_2D = ["translate", "rotate", "elastic"]
IMAGE_FAMILY = dict(
    copy.deepcopy(FAMILY), name="mnist", data=dict(FAMILY["data"], name="mnist", n_train=2000),
    encoder=dict(FAMILY["encoder"], kind="cnn2d", channels=8, out_dim=64),
    projector=dict(FAMILY["projector"], hidden=64), train=dict(FAMILY["train"], epochs=15),
    augmentations=list(_ALL_2D),
    models=[_entry("simclr", _ALL_2D, s) for s in (0.25, 0.5, 1.0)] + [_entry("simclr", _ALL_2D, 1.0, seed=1)]
    + [_entry("simclr", ["translate", "elastic"], 1.0), _entry("simclr", ["rotate", "elastic"], 1.0),
       _entry("vicreg", _ALL_2D, 0.5), _entry("vicreg", _ALL_2D, 1.0)])

DEFAULTS = {
    "families": [FAMILY, IMAGE_FAMILY],
    "invariance": {"strengths": [0.25, 0.5, 1.0], "n_views": 16, "n_eval": 200},
    "semantic": {"k": 25, "n_eval": 1000},
    "transfer": {"shots": [1, 5, 10], "episodes": 5, "k": 25, "strength": 1.0, "n_fit": 1000, "n_eval": 1000,
                 "probe": "rbf", "ridge_alpha": 0.1, "rbf_gamma": 1.0},
    "correlation": {"strength": 1.0, "bootstrap": 2000, "confidence": 0.95, "seed": 0},
    "threads": 1,
}


# --------------------------------------------------------------------------------------------------------------
# config checks (run by resolve, before anything is written or trained)


def model_name(entry: dict) -> str:
    """The entry's name, or one made from its settings.

    Examples
    --------
    >>> model_name(dict(MODEL_ENTRY, augment=["shift", "noise"], strength=0.5))
    'simclr-shift+noise-s0.5-seed0'
    """
    if entry["name"]:
        return entry["name"]
    augs = "+".join(entry["augment"]) or "none"
    return f"{entry['method']}-{augs}-s{entry['strength']:g}-seed{entry['seed']}"


def _shape_of(dataset: str) -> tuple:
    return {"mnist1d": (40,), "mnist": (28, 28), "digits": (8, 8)}[dataset]


def _check_families(families) -> str | None:
    """Cross-field checks of the family list; raises with the exact place of the problem."""
    from ...nn.augment import check_strength, valid_augmentations
    from ..ssl import MIN_MODELS

    if not isinstance(families, list) or not families:
        return "a non-empty list of families"
    seen = set()
    for i, fam in enumerate(families):
        where = f"ssl.families[{i}]"
        name = fam["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise InvalidParameterError(f"{where}.name must be a non-empty name of letters, digits, '_', '.', '-'; "
                                        f"got {name!r}")
        if name in seen:
            raise InvalidParameterError(f"{where}.name {name!r} repeats; give every family its own name")
        seen.add(name)
        data, enc = fam["data"], fam["encoder"]
        if data["name"] not in SSL_DATASETS:
            raise InvalidParameterError(f"{where}.data.name must be one of {list(SSL_DATASETS)}; got "
                                        f"{data['name']!r}")
        shape = _shape_of(data["name"])
        valid = valid_augmentations(shape)
        if enc["kind"] not in ("mlp", "cnn1d", "cnn2d"):
            raise InvalidParameterError(f"{where}.encoder.kind must be one of ['mlp', 'cnn1d', 'cnn2d']; got "
                                        f"{enc['kind']!r}")
        if (enc["kind"] == "cnn1d") != (len(shape) == 1) and enc["kind"] != "mlp":
            raise InvalidParameterError(f"{where}.encoder.kind {enc['kind']!r} does not fit {data['name']} samples "
                                        f"of shape {shape}; use {'cnn1d' if len(shape) == 1 else 'cnn2d'} or mlp")
        for key, check in (("encoder.hidden", each(integer(1), non_empty=False)),
                           ("encoder.channels", integer(1)), ("encoder.out_dim", integer(1)),
                           ("projector.hidden", integer(0)), ("projector.out_dim", integer(1)),
                           ("train.epochs", integer(0)), ("train.batch_size", integer(2)),
                           ("train.lr", number(0, open_lo=True)), ("train.weight_decay", number(0)),
                           ("train.temperature", number(0, open_lo=True)), ("data.seed", integer(0)),
                           ("data.n_train", integer(0)), ("data.n_test", integer(0))):
            section, field = key.split(".")
            problem = check(fam[section][field])
            if problem:
                raise InvalidParameterError(f"{where}.{key} must be {problem}; got {fam[section][field]!r}")
        _check_names(fam["augmentations"], valid, f"{where}.augmentations", data["name"], allow_empty=False)
        models = fam["models"]
        if len(models) < MIN_MODELS:
            raise InvalidParameterError(f"{where}.models has {len(models)} model(s); correlating invariance with "
                                        f"transfer across models needs at least {MIN_MODELS}: add models")
        names = set()
        for j, m in enumerate(models):
            mw = f"{where}.models[{j}]"
            if m["method"] not in METHODS:
                raise InvalidParameterError(f"{mw}.method must be one of {list(METHODS)}; got {m['method']!r}")
            _check_names(m["augment"], valid, f"{mw}.augment", data["name"], allow_empty=True)
            check_strength(m["strength"], f"{mw}.strength")
            problem = integer(0)(m["seed"])
            if problem:
                raise InvalidParameterError(f"{mw}.seed must be {problem}; got {m['seed']!r}")
            mname = model_name(m)
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", mname) or mname in names:
                raise InvalidParameterError(f"{mw}: model name {mname!r} is empty, has odd characters or repeats "
                                            "another model of the family; set a unique name")
            names.add(mname)
    return None


def _check_names(names, valid, where: str, dataset: str, *, allow_empty: bool) -> None:
    if not isinstance(names, list) or (not names and not allow_empty):
        raise InvalidParameterError(f"{where} must be a {'' if allow_empty else 'non-empty '}list of augmentation "
                                    f"names; valid ones for {dataset}: {list(valid)}")
    for n in names:
        if n not in valid:
            raise InvalidParameterError(f"{where}: unknown augmentation {n!r} for {dataset}; valid ones: "
                                        f"{list(valid)}")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"{where} names an augmentation twice: {names}")


def _strength_list(v):
    return each(number(0, 1))(v)


CHECKS = {
    "families": _check_families,
    "invariance.strengths": _strength_list, "invariance.n_views": integer(2), "invariance.n_eval": integer(2),
    "semantic.k": integer(1), "semantic.n_eval": integer(3),
    "transfer.shots": each(integer(1)), "transfer.episodes": integer(1), "transfer.k": integer(1),
    "transfer.strength": number(0, 1, open_lo=True), "transfer.n_fit": integer(10), "transfer.n_eval": integer(10),
    "transfer.ridge_alpha": number(0, open_lo=True), "transfer.probe": choice("rbf", "linear"),
    "transfer.rbf_gamma": number(0, open_lo=True),
    "correlation.strength": number(0, 1, open_lo=True), "correlation.bootstrap": integer(100),
    "correlation.confidence": number(0, 1, open_lo=True, open_hi=True), "correlation.seed": integer(0),
    "threads": integer(1),
}


# --------------------------------------------------------------------------------------------------------------
# running


def _check_data(cfg: dict, fam: dict, data) -> None:
    """Sizes that depend on the loaded data, checked for every family before the first model trains."""
    where = f"ssl.families[{fam['name']}]"
    counts = np.bincount(data.y_train)
    shots = max(cfg["transfer"]["shots"])
    if counts.min() < shots:
        raise InvalidParameterError(f"{where}: {shots}-shot transfer needs {shots} training samples of every class; "
                                    f"the smallest class has {counts.min()}. Lower transfer.shots or raise "
                                    "data.n_train")
    need = {"transfer.n_eval": (cfg["transfer"]["n_eval"], len(data.X_test), "test"),
            "semantic.n_eval": (cfg["semantic"]["n_eval"], len(data.X_test), "test"),
            "invariance.n_eval": (cfg["invariance"]["n_eval"], len(data.X_test), "test")}
    for key, (n, have, split) in need.items():
        if n > have:
            raise InvalidParameterError(f"{where}: {key}={n} but the {split} split has {have} samples; lower it or "
                                        "raise data.n_test")
    if cfg["semantic"]["k"] + 1 > min(cfg["semantic"]["n_eval"], len(data.X_test)):
        raise InvalidParameterError(f"{where}: semantic.k={cfg['semantic']['k']} needs more than k evaluation "
                                    "points; lower semantic.k or raise semantic.n_eval")
    if cfg["transfer"]["n_fit"] > len(data.X_train):
        raise InvalidParameterError(f"{where}: transfer.n_fit={cfg['transfer']['n_fit']} but the training split has "
                                    f"{len(data.X_train)} samples; lower transfer.n_fit")


def _modules(fam: dict, entry: dict, shape):
    from ...nn.ssl import build_encoder, projector_head

    e, p = fam["encoder"], fam["projector"]
    encoder = build_encoder(e["kind"], shape, hidden=e["hidden"], channels=e["channels"], out_dim=e["out_dim"],
                            batchnorm=e["batchnorm"], seed=entry["seed"])
    projector = projector_head(e["out_dim"], p["hidden"], p["out_dim"], batchnorm=p["batchnorm"])
    return encoder, projector


def _weights_path(store: RunStore, fam: str, model: str):
    return store.root / "ssl_models" / fam / f"{model}.pt"


def _features(encoder, projector):
    from ...nn.models import require_torch
    from ...nn.ssl import embed

    torch = require_torch()

    def features(rows) -> dict:
        enc = embed(encoder, rows)
        return {"encoder": enc, "projector": embed(projector, torch.as_tensor(enc, dtype=torch.float32))}

    return features


def _invariance_rows(cfg, fam, entry, data, encoder, projector, shape):
    import pandas as pd

    from ...nn.augment import augmentation
    from ...nn.ssl import augmentation_invariance

    inv = cfg["invariance"]
    strengths = sorted(set(inv["strengths"]) | {cfg["correlation"]["strength"]})
    X = data.X_test[:inv["n_eval"]]
    rows = []
    for aug in fam["augmentations"]:
        for s in strengths:
            # seed 0 for every model: all models are measured on the very same augmented copies
            t = augmentation_invariance(encoder, projector, X, augmentation(aug, s, shape), inv["n_views"], seed=0)
            for head, sub in t.groupby("head", sort=False):
                d = sub.diameter.dropna()
                rows.append({"method": entry["method"], "head": head, "augmentation": aug, "strength": float(s),
                             "train_strength": float(entry["strength"]), "trained_with": aug in entry["augment"],
                             "diameter_mean": float(d.mean()), "diameter_median": float(d.median()),
                             "diameter_std": float(d.std()), "diameter_q10": float(d.quantile(0.1)),
                             "diameter_q90": float(d.quantile(0.9)), "nnk_degree_mean": float(sub.nnk_degree.mean()),
                             "spread_mean": float(sub.spread.mean()),
                             "typical_distance_mean": float(sub.typical_distance.mean()),
                             "diameter_relative": float(d.mean() / sub.typical_distance.mean()),
                             "spread_relative": float(sub.spread.mean() / sub.typical_distance.mean()),
                             "n_samples": int(len(d)),
                             "zero_rows": int(sub.zero_rows.iloc[0])})
    return pd.DataFrame(rows)


def _semantic_rows(cfg, data, features):
    import pandas as pd

    from ...measures.metrics import point_metrics
    from ...nn.ssl import effective_rank

    sem = cfg["semantic"]
    F = features(data.X_test[:sem["n_eval"]])
    rows = []
    for head, H in F.items():
        keep = np.linalg.norm(H, axis=1) > 0  # all-zero rows have no direction for the cosine kernel
        df, _ = point_metrics(H[keep], k=sem["k"], kernel="cosine", n_jobs=cfg["threads"], progress=False)
        rows.append({"head": head, "nnk_degree": float(df.nnk_degree.mean()), "diameter": float(df.diameter.mean()),
                     "local_id": float(df.local_id.mean()), "local_id_median": float(df.local_id.median()),
                     "effective_rank": effective_rank(H), "dim": int(H.shape[1]), "zero_rows": int((~keep).sum())})
    return pd.DataFrame(rows)


def _transfer_rows(cfg, fam, entry, data, features, shape):
    import pandas as pd

    from ...nn.augment import augmentation
    from ..ssl import few_shot_scores, transformation_r2

    tr = cfg["transfer"]
    Ftr = features(data.X_train)
    Fte = features(data.X_test[:tr["n_eval"]])
    yte = data.y_test[:tr["n_eval"]]
    rows = []
    for head in HEADS:
        for r in few_shot_scores(Ftr[head], data.y_train, Fte[head], yte, tr["shots"], episodes=tr["episodes"],
                                 k=tr["k"], seed=0):  # the same labelled episodes for every model
            rows.append({"head": head, **r, "episodes": tr["episodes"]})
    rng = np.random.default_rng(0)  # the same fitting rows for every model
    fit = np.sort(rng.choice(len(data.X_train), tr["n_fit"], replace=False))
    for aug in fam["augmentations"]:
        r2 = transformation_r2(features, data.X_train[fit], data.X_test[:tr["n_eval"]],
                               augmentation(aug, tr["strength"], shape), probe=tr["probe"],
                               alpha=tr["ridge_alpha"], gamma=tr["rbf_gamma"], seed=0)
        for head in HEADS:
            rows.append({"head": head, "task": f"regress_{aug}", "shots": 0, "score": r2[head], "score_std": 0.0,
                         "episodes": 1})
    return pd.DataFrame(rows)


def _run_model(cfg, fam, entry, data, store: RunStore) -> None:
    import pandas as pd

    from ...io import atomic_path
    from ...nn.augment import compose
    from ...nn.models import require_torch
    from ...nn.ssl import train_ssl

    torch = require_torch()
    name = model_name(entry)
    keys = {"family": fam["name"], "model": name}
    if all(store.has(t, **keys) for t in _UNIT_TABLES):
        return
    shape = _shape_of(fam["data"]["name"])
    encoder, projector = _modules(fam, entry, shape)
    weights = _weights_path(store, fam["name"], name)
    if store.has("ssl_training", **keys) and weights.exists():
        state = torch.load(weights, weights_only=True)
        encoder.load_state_dict(state["encoder"])
        projector.load_state_dict(state["projector"])
    else:
        t = fam["train"]
        hist = train_ssl(encoder, projector, data.X_train, compose(entry["augment"], entry["strength"], shape),
                         loss=METHODS[entry["method"]], epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"],
                         weight_decay=t["weight_decay"], temperature=t["temperature"], seed=entry["seed"],
                         threads=cfg["threads"], progress=False)
        with atomic_path(weights) as tmp:
            torch.save({"encoder": encoder.state_dict(), "projector": projector.state_dict()}, tmp)
        store.write("ssl_training", pd.DataFrame(hist or [{"epoch": 0, "loss": np.nan}]).assign(
            method=entry["method"], strength=float(entry["strength"])), **keys)
    encoder.eval()
    projector.eval()
    features = _features(encoder, projector)
    if not store.has("ssl_invariance", **keys):
        store.write("ssl_invariance", _invariance_rows(cfg, fam, entry, data, encoder, projector, shape), **keys)
    if not store.has("ssl_semantic", **keys):
        store.write("ssl_semantic", _semantic_rows(cfg, data, features), **keys)
    if not store.has("ssl_transfer", **keys):
        store.write("ssl_transfer", _transfer_rows(cfg, fam, entry, data, features, shape), **keys)


def mgm_table(store: RunStore, family: str, strength: float):
    """One value per (model, head, augmentation, mgm) of a family: augmentation diameter, spread and diameter
    relative to the head's typical distance between samples at ``strength``, and the semantic MGMs (augmentation
    ``"semantic"``)."""
    import pandas as pd

    inv = store.read("ssl_invariance")
    inv = inv[(inv.family == family) & np.isclose(inv.strength, strength)]
    parts = [inv.assign(mgm="diameter", value=inv.diameter_mean), inv.assign(mgm="spread", value=inv.spread_mean),
             inv.assign(mgm="diameter_relative", value=inv.diameter_relative)]
    sem = store.read("ssl_semantic")
    sem = sem[sem.family == family]
    for m in SEMANTIC_MGMS:
        parts.append(sem.assign(augmentation="semantic", mgm=m, value=sem[m]))
    cols = ["model", "head", "augmentation", "mgm", "value"]
    return pd.concat([p[cols] for p in parts], ignore_index=True)


def _correlate_family(cfg, fam, store: RunStore) -> None:
    from ..ssl import best_predictors, correlate

    keys = {"family": fam["name"]}
    if store.has("ssl_correlation", **keys) and store.has("ssl_predictors", **keys):
        return
    c = cfg["correlation"]
    transfer = store.read("ssl_transfer")
    transfer = transfer[(transfer.family == fam["name"]) & (transfer["head"] == "encoder")]
    corr = correlate(mgm_table(store, fam["name"], c["strength"]), transfer, n_boot=c["bootstrap"],
                     confidence=c["confidence"], seed=c["seed"])
    store.write("ssl_correlation", corr, **keys)
    store.write("ssl_predictors", best_predictors(corr), **keys)


def run_ssl(cfg: dict, store: RunStore, progress=None, executor=None):
    """Train every model of every family, measure it, correlate its MGMs with its transfer across the family.
    Each (family, model) is a unit (:func:`~nnkscope.studies.common.run_units`), on ``executor``'s workers when
    one is given; a family's correlation is computed here once its models are in."""
    from ...nn.models import require_torch
    from ..common import run_units

    if all(store.has(t, family=f["name"], model=model_name(m)) for f in cfg["families"] for m in f["models"]
           for t in _UNIT_TABLES) and all(store.has(t, family=f["name"]) for f in cfg["families"]
                                          for t in ("ssl_correlation", "ssl_predictors")):
        return store.read("ssl_correlation")  # a finished run: nothing to load
    data = _families(cfg)
    for fam in cfg["families"]:  # every family's data loaded and checked before the first model trains
        _check_data(cfg, fam, data[fam["name"]])
    torch = require_torch()
    old_threads = torch.get_num_threads()  # the units set the config's threads (process-wide); restored after
    try:
        for fam in cfg["families"]:  # a family's correlation as soon as its models are in: a stop keeps it
            todo = [{"family": fam["name"], "model": model_name(m)} for m in fam["models"]
                    if not all(store.has(t, family=fam["name"], model=model_name(m)) for t in _UNIT_TABLES)]
            run_units(_ssl_unit, _families, cfg, store, todo, executor=executor, progress=progress,
                      desc=f"SSL models of {fam['name']}", shared=data)
            _correlate_family(cfg, fam, store)
    finally:
        torch.set_num_threads(old_threads)
    return store.read("ssl_correlation")


def _families(cfg: dict) -> dict:
    """What every unit reads: each family's data, by family name."""
    from ..common import load_data

    return {fam["name"]: load_data(fam["data"]) for fam in cfg["families"]}


def _ssl_unit(cfg: dict, store: RunStore, data: dict, family: str, model: str) -> None:
    """The model named ``model`` of the family named ``family``: train or reload it, measure it."""
    from ...nn.models import require_torch

    # small models: more threads than cores only adds waiting.  Process-wide, so not restored per unit (units
    # running side by side in one process would undo each other's); run_ssl restores the caller's
    require_torch().set_num_threads(cfg["threads"])
    fam = next(f for f in cfg["families"] if f["name"] == family)
    entry = next(m for m in fam["models"] if model_name(m) == model)
    _run_model(cfg, fam, entry, data[family], store)


# --------------------------------------------------------------------------------------------------------------
# report


def _fmt_rho(r) -> str:
    return fmt_rho(r.spearman, r.ci_low, r.ci_high)


GLOSSARY = {
    "family": Term("a dataset with one encoder/projector architecture and its list of SSL models"),
    "method": Term("the self-supervised objective: simclr (NT-Xent) or vicreg"),
    "head": Term("where the features are taken: encoder (used downstream) or projector (where the SSL loss acts)"),
    "augmentation": Term("the augmentation measured (or 'semantic': an MGM of the plain test embedding)"),
    "mgm": Term("the manifold-geometry measure: diameter / spread (/ diameter_relative) of a sample's augmented "
                "copies, or a semantic MGM (nnk_degree, diameter, local_id)", "", "", "nnkscope (R8b)"),
    "task": Term("the transfer task: nnk / linear (few-shot NNK classifier / logistic probe accuracy) or "
                 "regress_<augmentation> (R^2 of predicting that augmentation's parameters)"),
    "shots": Term("labelled examples per class of the few-shot task (0 for regression)", "integer"),
    "n_models": Term("models the correlation is over", "integer", ">= 4"),
    "p_value": Term("two-sided permutation p-value of the Spearman correlation (the models' pairing of the two "
                    "quantities shuffled; exact over all permutations when few models)", "(0, 1]",
                    "small = unlikely by chance; not corrected for the many correlations tested"),
    "ci_excludes_zero": Term("whether the bootstrap interval excludes 0 (a reliable sign)", "true / false"),
    "train_strength": Term("strength of the augmentations the model was trained with", "[0, 1]"),
    "diameter_mean_encoder": Term("mean diameter of a sample's augmented copies in the encoder", "[0, 2]",
                                  "lower = more invariant", "nnkscope (R9)"),
    "diameter_mean_projector": Term("the same in the projector", "[0, 2]", "lower = more invariant",
                                    "nnkscope (R9)"),
    "diameter_relative_encoder": Term("encoder diameter / its typical distance between different samples",
                                      ">= 0", "lower = more invariant relative to the embedding's scale"),
    "diameter_relative_projector": Term("the same in the projector", ">= 0", "lower = more invariant"),
    "spread_mean_encoder": Term("mean spread (A) of a sample's augmented copies in the encoder", ">= 0",
                                "lower = more invariant", "nnkscope (R9)"),
    "spread_mean_projector": Term("the same in the projector", ">= 0", "lower = more invariant"),
    "spread_relative_encoder": Term("encoder spread / its typical distance between samples", ">= 0", ""),
    "spread_relative_projector": Term("projector spread / its typical distance between samples", ">= 0", ""),
    "projector_more_invariant": Term("projector diameter < encoder diameter", "true / false", "", "R9"),
    "projector_more_invariant_relative": Term("the same, relative to each head's typical distance", "true / false"),
    "spread_ratio": Term("A_proj / A_enc: projector spread over encoder spread", ">= 0",
                         "< 1 = the projector gathers the copies more", "nnkscope (R9)"),
    "spread_ratio_relative": Term("the same with relative spreads", ">= 0", "< 1 = projector more invariant"),
    "score": Term("transfer score: accuracy (few-shot) or R^2 (regression)", "[0, 1] / (-inf, 1]",
                  "higher = better transfer"),
    "effective_rank": Term("effective rank (exp of the entropy of the normalised singular values) of the test "
                           "embedding", "[1, dim]", "higher = more dimensions used", "Roy & Vetterli 2007"),
    "diameter": Term("mean NNK polytope diameter of a test sample's augmented copies (at the correlation "
                     "strength)", "[0, 2]", "lower = more invariant", "nnkscope (R8b)"),
    "loss": Term("the SSL training loss per epoch", "", "lower = objective better met"),
    "spearman": Term("Spearman rank correlation across the family's models of the MGM with the transfer task",
                     "[-1, 1]", "for diameters, negative = more invariant, better transfer", "nnkscope (R8b)"),
}


def _scatter_figure(store: RunStore, family: str, strength: float, shots: int):
    """Fig. 2 of the proposal: per augmentation and task, invariance (diameter) against transfer, encoder and
    projector side by side, rho and its interval in each panel's title."""
    import pandas as pd

    mg = mgm_table(store, family, strength)
    mg = mg[mg.mgm == "diameter"]
    tr = store.read("ssl_transfer")
    tr = tr[(tr.family == family) & (tr["head"] == "encoder")]
    corr = store.read("ssl_correlation")
    corr = corr[corr.family == family]
    meta = store.read("ssl_training")
    meta = meta[meta.family == family].groupby("model", as_index=False).first()[["model", "method", "strength"]]
    augs = [a for a in dict.fromkeys(mg.augmentation) if a != "semantic"]
    rows = [("nnk", shots, f"NNK {shots}-shot"), ("linear", shots, f"logistic {shots}-shot"),
            (None, 0, "R^2, same augmentation")]
    parts, titles = [], {}
    for task, sh, label in rows:
        for aug in augs:
            t = task or f"regress_{aug}"
            y = tr[(tr.task == t) & (tr.shots == sh)][["model", "score"]]
            for head in HEADS:
                x = mg[(mg.augmentation == aug) & (mg["head"] == head)][["model", "value"]]
                panel = f"{label} | {aug}, {head}"
                hit = corr[(corr["head"] == head) & (corr.augmentation == aug) & (corr.mgm == "diameter")
                           & (corr.task == t) & (corr.shots == sh)]
                r = hit.iloc[0] if len(hit) else None
                note = f"rho {r.spearman:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if r is not None and np.isfinite(
                    r.spearman) else "rho n/a"
                titles[panel] = f"{aug}, {head}<br>{note}"  # short: six panels share a row
                parts.append(x.merge(y, on="model").merge(meta, on="model", how="left").assign(panel=panel))
    data = pd.concat(parts, ignore_index=True)
    fig = lines(data, "value", "score", by="model", key="model {}", panel="panel", mode="markers", titles=titles,
                cols=2 * len(augs), hover=("method", "strength"), x_title=f"mean diameter of the augmented copies "
                f"(strength {strength:g}; lower = more invariant)")
    for i, (_, _, label) in enumerate(rows):  # the task of each row of panels, on its first y axis
        fig.update_yaxes(title_text=label, title_font_size=10, row=i + 1, col=1)
    return fig


def _r9_table(store: RunStore, family: str):
    """Per model and trained augmentation, encoder vs projector at the model's own training strength."""
    inv = store.read("ssl_invariance")
    inv = inv[(inv.family == family) & inv.trained_with & np.isclose(inv.strength, inv.train_strength)]
    if inv.empty:
        return inv
    wide = inv.pivot_table(index=["model", "method", "augmentation", "train_strength"], columns="head",
                           values=["diameter_mean", "diameter_relative", "spread_mean", "spread_relative"])
    wide = wide.reset_index()
    wide.columns = ["_".join(c).strip("_") for c in wide.columns.to_flat_index()]
    wide["projector_more_invariant"] = wide.diameter_mean_projector < wide.diameter_mean_encoder
    wide["projector_more_invariant_relative"] = wide.diameter_relative_projector < wide.diameter_relative_encoder
    wide["spread_ratio"] = wide.spread_mean_projector / wide.spread_mean_encoder
    wide["spread_ratio_relative"] = wide.spread_relative_projector / wide.spread_relative_encoder
    return wide


def _r9_figures(r9, sem, family: str) -> list:
    import pandas as pd

    pair = lines(r9, "diameter_mean_encoder", "diameter_mean_projector", by="model", key="model {}",
                 panel="augmentation", mode="markers", diagonal=True, hover=("train_strength",),
                 x_title="encoder mean diameter", y_title="projector mean diameter")
    g = r9.groupby("train_strength", as_index=False).spread_ratio.agg(["mean", "std"])
    ranks = sem.groupby(["head", "strength"], as_index=False).effective_rank.agg(["mean", "std"])
    both = pd.concat([g.rename(columns={"train_strength": "strength"}).assign(
        series="projector / encoder", panel="spread ratio A_proj / A_enc (< 1: projector more invariant)"),
        ranks.rename(columns={"head": "series"}).assign(panel="effective rank of the test embedding")],
        ignore_index=True)
    trend = lines(both, "strength", "mean", by="series", panel="panel", band="std", cols=2,
                  colour={"projector / encoder": "#4477AA", "encoder": "#228833", "projector": "#EE6677"},
                  x_title="training strength", y_title="mean over models (band: std)")
    return [Figure(f"{family}: encoder vs projector (R9), per model", pair,
                   "Trained augmentations at the model's own strength: points below the dashed diagonal are models "
                   "whose projector is more invariant than their encoder.",
                   ("diameter_mean_encoder", "diameter_mean_projector", "train_strength")),
            Figure(f"{family}: encoder vs projector (R9), across strength", trend,
                   "How the projector/encoder spread ratio and each head's effective rank change with the training "
                   "strength.", ("spread_ratio", "effective_rank"))]


def _loss_figure(store: RunStore):
    t = store.read("ssl_training").dropna(subset=["loss"])
    return lines(t, "epoch", "loss", by="model", key="model {}", panel="family", mode="lines", x_title="epoch",
                 y_title="SSL loss", hover=("method", "strength"))


def _r9_takeaways(r9, sem, family: str) -> list:
    out = []
    for col, ratio_col, what in (
            ("projector_more_invariant", "spread_ratio", "mean diameter"),
            ("projector_more_invariant_relative", "spread_ratio_relative",
             "mean diameter relative to the head's typical distance between samples")):
        per_s = r9.groupby("train_strength")[col].agg(["sum", "count"])
        every = bool((per_s["sum"] == per_s["count"]).all())
        by_s = ", ".join(f"s={s:g}: {int(r['sum'])}/{int(r['count'])}" for s, r in per_s.iterrows())
        ratio = ", ".join(f"s={s:g}: {v:.2f}" for s, v in r9.groupby("train_strength")[ratio_col].median().items())
        out.append(f"{family} (R9): the projector is more invariant than the encoder ({what} under the model's own "
                   f"augmentations at its training strength) in {int(r9[col].sum())} of {len(r9)} cases ({by_s}): "
                   f"{'at every strength' if every else 'not at every strength'} (all cases at a strength count as "
                   f"'at' it); median spread ratio projector/encoder {ratio} (< 1 = projector more invariant).")
    ranks = sem.groupby(["head", "strength"]).effective_rank.mean()
    out.append(f"{family} (R9): effective rank of the test embedding by training strength: " + "; ".join(
        f"{head} " + ", ".join(f"{s:g}: {v:.1f}" for s, v in ranks[head].items()) for head in HEADS
        if head in ranks.index.get_level_values(0)) + ".")
    return out


def _ssl_section(store: RunStore) -> dict:
    params = store.manifest.get("params", {})
    strength = float(params.get("correlation", {}).get("strength", 1.0))
    shots_all = params.get("transfer", {}).get("shots", [5])
    shots = sorted(shots_all)[len(shots_all) // 2]
    level = 100 * float(params.get("correlation", {}).get("confidence", 0.95))
    corr = store.read("ssl_correlation")
    pred = store.read("ssl_predictors")
    sem = store.read("ssl_semantic").merge(store.read("ssl_training").groupby(["family", "model"], as_index=False)
                                           .first()[["family", "model", "strength"]], on=["family", "model"])
    figures, takeaways, tables = [], [], {}
    for family in dict.fromkeys(corr.family):
        figures.append(Figure(f"{family}: invariance vs transfer", _scatter_figure(store, family, strength, shots),
                              "One point per model. Rows: few-shot NNK, few-shot logistic, R^2 predicting the same "
                              "augmentation; columns: augmentation, encoder | projector invariance against the "
                              f"encoder's transfer. Titles: Spearman rho and its {level:.0f}% bootstrap interval.",
                              ("diameter", "score", "spearman", "ci_low", "ci_high")))
        r9 = _r9_table(store, family)
        if len(r9):
            figures += _r9_figures(r9, sem[sem.family == family], family)
            takeaways += _r9_takeaways(r9, sem[sem.family == family], family)
            tables[f"{family}: encoder vs projector (R9)"] = r9
        c = corr[corr.family == family]
        sig = c[(c.ci_low > 0) | (c.ci_high < 0)]
        n_mgms = len(c.groupby(["head", "augmentation", "mgm"]))
        takeaways.append(f"{family} (R8b): {len(sig)} of {len(c)} MGM-transfer correlations over "
                         f"{int(c.n_models.max())} models have a {level:.0f}% bootstrap interval that excludes 0 "
                         "(excluding 0 counts as a reliable sign; for diameters, a negative rho means: more "
                         "invariant, better transfer). The best predictor of each task below is the largest |rho| "
                         f"among {n_mgms} candidate MGMs: selected after the fact, so its |rho| is biased upwards; "
                         "read it as exploratory.")
        p = pred[pred.family == family]
        for _, r in p.iterrows():
            takeaways.append(f"{family}: {r.task}{f' {r.shots}-shot' if r.shots else ''} is best predicted by the "
                             f"{r['head']} {r.mgm}"
                             f"{' (semantic)' if r.augmentation == 'semantic' else ' under ' + r.augmentation}: "
                             f"{_fmt_rho(r)}{'' if r.ci_excludes_zero else ' (interval includes 0)'}.")
        tables[f"{family}: best predictor per task"] = p.drop(columns="family").reset_index(drop=True)
        diag = c[(c.mgm == "diameter") & (c.task.isin(["nnk", "linear"]) & (c.shots == shots)
                                          | (c.task == "regress_" + c.augmentation))]
        tables[f"{family}: diameter vs transfer"] = diag.drop(columns="family").reset_index(drop=True)
    figures.append(Figure("Training loss", _loss_figure(store), "The SSL loss of every model per epoch, one panel "
                          "per family.", ("loss",)))
    return section("Self-supervised models: invariance, transfer, encoder vs projector", takeaways, figures, tables,
                   GLOSSARY)


SSL = StudyKind(
    name="ssl", run=run_ssl, section=_ssl_section, tables=TABLES, defaults=DEFAULTS, checks=CHECKS,
    open_lists={"families": FAMILY, "models": MODEL_ENTRY},
    summary="SSL model families: augmentation invariance per head vs few-shot / transformation-regression transfer")
