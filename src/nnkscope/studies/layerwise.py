"""Studies: the NNK and class-geometry metrics of every layer of a model, per epoch, into a run folder.

``layerwise`` measures one model state: activations of the selected layers on an evaluation set, then for each
layer the per-point NNK metrics (table ``points``), a per-layer summary with neural-collapse NC1 and separation
fuzziness D (table ``layers``), and the equi-separation fit over the layers (table ``fits``).  Every
(model, epoch, layer) unit is a separate part of the run folder and is skipped if already there, so an
interrupted study resumes where it stopped.  :class:`TrainingCallback` runs it during training
(``train_classifier(..., callback=cb)`` or any loop calling ``cb(epoch, model)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .._runtime import keep_freed_memory, thread_limit
from .._validate import as_points, check_choice, check_labels, trusted
from .._version import __version__
from ..engine.neighbors import Neighbors
from ..engine.pipeline import build_graph, run_tasks
from ..engine.settings import GraphSettings
from ..errors import InputShapeError, InvalidParameterError, NNKScopeError, NonFiniteError
from ..executor import as_executor, is_inline
from ..io import ArraySource, fingerprint, write_npy
from ..measures.collapse import equi_separation_fit, weighted_nc1_fuzziness
from ..measures.embedding import spectral_embedding, umap_embedding
from ..measures.intrinsic import dimension_from_weights, intrinsic_dimension, pca_from_spectrum
from ..measures.labels import cross_class_fraction, label_variation_graph
from ..measures.metrics import describe_graph
from ..measures.spectral import (
    CovarianceEigen,
    covariance_eigen,
    covariance_spectrum,
    first_order_spectra,
    summarize_spectrum,
)
from ..measures.uncertainty import bootstrap_weights, percentile_interval, weighted_mean, weighted_median
from ..nn.capture import capture
from ..store import RunStore

__all__ = ["layerwise", "measure_layers", "TrainingCallback"]


IDENTITY_COLUMNS = ("unit_id", "settings", "data_fingerprint", "labels_fingerprint", "model_fingerprint",
                    "nnkscope_version")
VIEWS = ("spectral", "umap")
N_BOOT = 200  # default bootstrap replicates of every layer-table interval (study config key ``bootstrap``)


def layerwise(model, X: np.ndarray, y, layers, store: RunStore, *, model_name: str = "model", epoch: int = 0,
              k: int = 20, kernel: str = "cosine", settings: GraphSettings | None = None, pooling: str = "flatten",
              include_input: bool = True, on_change: str = "error", progress: bool | None = False,
              samples=None, executor=None, n_boot: int = N_BOOT, view: str = "spectral") -> dict:
    """Measure every selected layer of ``model`` on ``(X, y)`` and write the parts; returns what it computed.

    A layer already in the run folder is skipped only when it was measured with the same settings, the same
    inputs and labels and the same model weights; otherwise ``on_change="error"`` (default) refuses with what
    differs and ``"replace"`` recomputes it.  ``samples``: each row's identifier in the user's data (the
    ``sample`` column of table ``points``; default: none).  ``n_boot`` and ``view``: as in :func:`measure_layers`.
    """
    from ..nn.models import weights_fingerprint

    keys = {"model": model_name, "epoch": int(epoch)}
    names = (["input"] if include_input else []) + _layer_names(model, layers)
    source = {"input": fingerprint(np.asarray(X).reshape(len(X), -1)), "model": weights_fingerprint(model),
              "pooling": pooling}
    source = _with_samples(source, samples, len(X))
    s = _settings(settings, k, kernel)
    labels_fp = fingerprint(check_labels(y, len(X))[1][:, None])
    options = _options(n_boot, view)
    todo = [n for n in _todo(store, keys, names, s, source, labels_fp, on_change, options) if n != "input"]
    device = next((p.device for p in model.parameters()), "cpu")  # a model trained on a GPU is measured there
    acts = capture(model, X, todo, pooling=pooling, device=device) if todo else {}
    acts["input"] = X
    return measure_layers({name: (lambda name=name: acts.get(name)) for name in names}, y, store,
                          model_name=model_name, epoch=epoch, settings=s, on_change=on_change, progress=progress,
                          samples=samples, executor=executor, n_boot=n_boot, view=view, _source=source)


def measure_layers(features: dict, y, store: RunStore, *, model_name: str = "model", epoch: int = 0,
                   k: int = 20, kernel: str = "cosine", settings: GraphSettings | None = None,
                   on_change: str = "error", progress: bool | None = False, samples=None, executor=None,
                   n_boot: int = N_BOOT, view: str = "spectral", _source: dict | None = None) -> dict:
    """Measure precomputed per-layer features ``{name: (N, ...) array or a callable returning one}`` (in depth
    order: the layer index is the position) and write tables ``points``, ``layers`` and ``fits``.

    This is what :func:`layerwise` runs on captured activations; use it directly for features from elsewhere, e.g.
    a transformer's hidden states (:func:`nnkscope.nn.capture.hidden_states`).  Labels may be of any hashable
    type.  Each layer's row in ``layers`` records what produced it (``unit_id``: a hash of the graph settings,
    the features' and labels' fingerprints and, from :func:`layerwise`, the model weights); a layer already there
    is skipped only when all of it matches, else ``on_change="error"`` refuses naming what differs and
    ``"replace"`` recomputes it.  Class-geometry quantities that a layer cannot define (fewer dimensions than
    K - 1 classes, coinciding class means) are NaN with the reason in ``undefined``.  ``samples`` (one
    identifier per row, e.g. its position in the user's data) becomes the ``sample`` column of ``points``, so
    results join back to the inputs.  Each layer is a task on ``executor`` (None: in this process; a
    ``concurrent.futures`` pool or a Dask client: the layers are saved once under the run folder, which every
    worker must reach, and each worker reads its own). Measured in this process, each layer reuses the memory the
    layers before it freed (:func:`~nnkscope._runtime.keep_freed_memory`, glibc only): the process keeps its peak
    heap until the call returns.

    Every estimate in ``layers`` gets a 95 % percentile-bootstrap interval ``<column>_ci_low`` /
    ``<column>_ci_high`` from ``n_boot`` seeded resamples of the points (0: none), all columns from the same
    resamples, given as multiplicities so that no statistic sees a repeated row.  The graph, its neighbour search
    and every point's own metrics are held fixed: the intervals are *conditional on the neighbourhoods* (they cover
    which points were sampled, not how each point's neighbourhood would change in a new sample).  A percentile
    interval need not contain the estimate when resampling biases the statistic (e.g. the stable rank when the top
    two eigenvalues nearly tie: the largest eigenvalue of a resample is biased upward).  Columns without one, and
    why: :data:`CI_EXEMPT`.  ``view``: the 2-D picture in ``points`` (``view_x``, ``view_y``):
    ``"spectral"`` (Laplacian eigenmaps of the NNK graph; PCA above :data:`SPECTRAL_VIEW_MAX` points) or
    ``"umap"`` (UMAP on the graph's own kNN candidates, seeded; needs ``umap-learn``).

    Examples
    --------
    >>> import tempfile
    >>> r = np.random.default_rng(0); y = np.repeat([0, 1, 2], 40)
    >>> feats = {"raw": r.normal(size=(120, 5)), "separated": np.eye(3)[y] * 5 + r.normal(size=(120, 3))}
    >>> store = RunStore(tempfile.mkdtemp() + "/run")
    >>> sorted(measure_layers(feats, y, store, k=8))
    ['raw', 'separated']
    >>> t = store.read("layers").set_index("layer")
    >>> bool(t.loc["separated", "loo_error_nnk"] < t.loc["raw", "loo_error_nnk"])
    True
    >>> measure_layers(feats, y, store, k=8)   # same settings and data: nothing to do
    {}
    """

    check_choice(on_change, "on_change", ("error", "replace"))
    options = _options(n_boot, view)
    keys = {"model": model_name, "epoch": int(epoch)}
    s = _settings(settings, k, kernel)
    classes, codes = check_labels(y)
    labels_fp = fingerprint(codes[:, None])
    if samples is not None:
        samples = np.asarray(samples)
        if samples.shape != (len(codes),):
            raise InputShapeError(f"samples must hold one identifier per label ({len(codes)}); got shape "
                                  f"{samples.shape}")
    known = _identities(store, keys)
    ex = as_executor(executor)
    spill = None if is_inline(executor) else Path(store.root) / ".features"  # workers read layers from disk
    # in this process the units run one after another: each gets every CPU; on workers, one thread per task (the
    # executor runs several at once)
    threads = None if spill is None else 1
    jobs = []
    for index, (name, feature) in enumerate(features.items()):
        load = feature if callable(feature) else lambda feature=feature: feature
        source, H = _source, None
        if source is None:  # precomputed features: their content is the identity
            H = load()
            source = _with_samples({"features": fingerprint(np.asarray(H).reshape(len(H), -1))}, samples,
                                   len(codes))
        unit = _unit(s, source, labels_fp, options)
        if store.has("points", layer=name, **keys) and not _changed(store, keys, name, known, unit, on_change):
            continue
        H = load() if H is None else H
        if len(H) != len(codes):
            raise InputShapeError(f"layer {name!r} has {len(H)} rows but there are {len(codes)} labels; features "
                                  "and labels must describe the same points")
        if spill is not None:
            H = str(write_npy(spill / f"{unit['unit_id']}-{index}.npy", np.asarray(H).reshape(len(H), -1)))
        elif callable(feature):  # loaded again when its unit runs: one layer in memory at a time, not all
            H = feature
        jobs.append((str(store.root), keys, name, index, H, classes, codes, s, unit, progress, samples, options,
                     threads))
        del H
    # layers measured here one after another reuse the memory of each other's big work arrays; not around a pool,
    # whose workers, forked inside the body, would keep their peak heap as long as they live
    with keep_freed_memory() if is_inline(executor) else contextlib.nullcontext():
        summaries = run_tasks(ex, _measure_unit, jobs, "layers", False)
    if spill is not None:
        shutil.rmtree(spill, ignore_errors=True)
    _write_fit(store, keys)
    return {job[2]: summary for job, summary in zip(jobs, summaries, strict=True)}


def _measure_unit(root: str, keys: dict, name: str, index: int, H, classes, codes, s: GraphSettings, unit: dict,
                  progress, samples=None, options: dict | None = None, threads: int | None = 1) -> dict:
    """One (model, epoch, layer) unit: every metric of the layer, written as its ``layers`` and ``points`` parts.

    A task of its own (module level, picklable): in this process by default, or on any executor's workers, which
    read the layer from disk when ``H`` is a path; a callable ``H`` (the user's loader) is called here, so that
    only the layer being measured is in memory.  ``threads``: faiss/numba/BLAS threads (None: every CPU)."""
    with thread_limit(threads):
        return _measure_one(root, keys, name, index, H, classes, codes, s, unit, progress, samples, options,
                            threads)


def _measure_one(root: str, keys: dict, name: str, index: int, H, classes, codes, s: GraphSettings, unit: dict,
                 progress, samples, options, threads) -> dict:
    options = options or _options(N_BOOT, "spectral")
    store = RunStore(root, create=False)
    H = np.load(H, mmap_mode="r") if isinstance(H, str) else H() if callable(H) else H
    H = np.asarray(H, dtype=np.float64).reshape(len(H), -1)
    try:
        H = as_points(H, f"layer {name!r}")  # the one NaN/range scan of the layer: every measure below trusts it
    except NonFiniteError:  # the generic "drop those rows" fix is wrong for a model's activations
        bad = int((~np.isfinite(H).all(axis=1)).sum())
        fix = ("the model's activations are not finite: training diverged or overflowed. Lower the learning rate "
               "(study config: train.lr) or normalise the inputs, in a new run folder"
               if unit.get("model_fingerprint") else "drop or impute those rows of the features first")
        raise NonFiniteError(f"layer {name!r} of model {keys['model']!r} at epoch {keys['epoch']}: {bad} of {len(H)} "
                             f"rows hold NaN/inf; {fix}") from None
    try:
        with trusted(H):
            return _measure_checked(store, keys, name, index, H, classes, codes, s, unit, progress, samples,
                                    options, threads)
    except NNKScopeError as exc:  # name the unit: a study measures many
        raise type(exc)(f"layer {name!r} of model {keys['model']!r} at epoch {keys['epoch']}: {exc}") from exc


def _measure_checked(store: RunStore, keys: dict, name: str, index: int, H: np.ndarray, classes, codes,
                     s: GraphSettings, unit: dict, progress, samples, options: dict, threads) -> dict:
    """:func:`_measure_one` on a layer already checked (finite, in range, float64, C-contiguous)."""
    import pandas as pd

    parts = build_graph(ArraySource(H), None, settings=s, progress=progress, threads_per_task=threads)
    df, summary = describe_graph(parts, classes[codes])
    eigen = covariance_eigen(H)  # one decomposition: spectra, PCA dimension, their bootstrap, the PCA picture
    by_class = _ByClass(H, codes)
    summary.update(_class_geometry(by_class, len(classes), eigen))
    k_lv = min(10, len(H) - 1)
    shared = None
    # the graph's candidates serve ("error": the graph found no duplicate, so they are the "keep" candidates)
    if s.kernel == "cosine" and s.duplicates != "drop" and s.k >= k_lv:
        g = parts.read(0, ["candidates", "distances"])
        shared = (g["candidates"], g["distances"])
    lv_graph = label_variation_graph(H, k=k_lv, neighbors=shared)
    summary["label_variation"] = cross_class_fraction(lv_graph, codes)
    summary.update(_peer_measures(H, parts, eigen))
    if options["n_boot"]:
        summary.update(_intervals(H, parts, df, summary, codes, len(classes), lv_graph, options["n_boot"],
                                  eigen=eigen, by_class=by_class))
    del by_class  # a copy of the layer: not held while the picture and the tables are made
    df["view_x"], df["view_y"], summary["view"] = _picture(H, parts, options["view"], eigen)
    if samples is not None:  # each point's row in the user's data, next to the graph's node index
        df.insert(1, "sample", samples)
    summary["layer_index"] = index
    summary.update(unit)
    store.write("neighbors", _neighbor_table(parts), layer=name, **keys)  # before points: points marks the unit done
    store.write("layers", pd.DataFrame([_scalars(summary)]), layer=name, **keys)
    store.write("points", df, layer=name, **keys)
    return summary


NEIGHBORS_KEPT = 8  # per point, the heaviest NNK neighbours the report shows: bounds the table at 8 rows a point


def _neighbor_table(parts):
    """Each node's NNK neighbours (nonzero weights), heaviest first, at most :data:`NEIGHBORS_KEPT`: columns
    ``node``, ``neighbor``, ``weight``, ``rank`` (0 = heaviest).  Read block by block, so memory stays bounded."""
    import pandas as pd

    frames = []
    for b in range(len(parts.plan.blocks)):
        g = parts.read(b, ["node", "candidates", "theta"])
        cand, theta = np.asarray(g["candidates"]), np.asarray(g["theta"], dtype=np.float64)
        theta = np.where((cand >= 0) & (theta > 0), theta, 0.0)
        order = np.argsort(-theta, axis=1, kind="stable")[:, :NEIGHBORS_KEPT]
        w = np.take_along_axis(theta, order, axis=1)
        c = np.take_along_axis(cand, order, axis=1)
        keep = w > 0
        rows, ranks = np.nonzero(keep)
        frames.append(pd.DataFrame({"node": np.asarray(g["node"])[rows].astype(np.int64),
                                    "neighbor": c[keep].astype(np.int64), "weight": w[keep],
                                    "rank": ranks.astype(np.int16)}))
    return pd.concat(frames, ignore_index=True)


def _with_samples(source: dict, samples, n: int) -> dict:
    """The rows' identifiers are part of what a measured layer is (a different selection of rows is another unit)."""
    if samples is None or "samples" in source:
        return source
    return {**source, "samples": fingerprint(np.asarray(samples).reshape(n, -1))}


def _settings(settings: GraphSettings | None, k: int, kernel: str) -> GraphSettings:
    """The study's graph settings: layers often map inputs together, so identical points are kept."""
    return settings if settings is not None else GraphSettings(k=k, kernel=kernel, duplicates="keep")


def _options(n_boot, view) -> dict:
    """The measuring options a layer's identity includes (besides the graph settings)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise InvalidParameterError(f"n_boot (study config: bootstrap) must be an integer >= 0 (0: no intervals); "
                                    f"got {n_boot!r}")
    check_choice(view, "view", VIEWS)
    return {"n_boot": int(n_boot), "view": view}


def _unit(settings: GraphSettings, source: dict, labels_fp: str, options: dict | None = None) -> dict:
    """What identifies a measured layer: every setting, the inputs' and labels' content, the model weights."""
    options = options or _options(N_BOOT, "spectral")
    record = {"settings": settings.to_dict(), "source": source, "labels": labels_fp, "nnkscope": __version__,
              "measures": {"energy": 0.9, "label_variation_k": 10, "bootstrap": options["n_boot"],
                           "bootstrap_seed": 0, "view": options["view"]}}
    text = json.dumps(record, sort_keys=True, default=str)
    return {"unit_id": hashlib.blake2b(text.encode(), digest_size=12).hexdigest(),
            "settings": json.dumps(record["settings"], sort_keys=True, default=str),
            "data_fingerprint": source.get("features") or source.get("input") or source.get("texts", ""),
            "labels_fingerprint": labels_fp, "model_fingerprint": source.get("model", ""),
            "nnkscope_version": __version__}


def _identities(store: RunStore, keys: dict) -> dict:
    """``{layer: identity row}`` of the layers already measured for these keys."""
    if "layers" not in store.tables():
        return {}
    t = store.read("layers")
    t = t[(t["model"] == keys["model"]) & (t["epoch"] == keys["epoch"])]
    cols = [c for c in IDENTITY_COLUMNS if c in t.columns]
    return {row["layer"]: {c: row[c] for c in cols} for _, row in t.iterrows()}


def _changed(store: RunStore, keys: dict, name: str, known: dict, unit: dict, on_change: str) -> bool:
    """Whether a stored layer must be recomputed; raises when it differs and ``on_change="error"``."""
    old = known.get(name)
    if old is not None and old.get("unit_id") == unit["unit_id"]:
        return False
    if on_change == "replace":
        return True
    if old is None or "unit_id" not in old:
        why = "no record of what produced it (an older run folder, or an interrupted write)"
    else:
        why = "; ".join(_differences(old, unit)) or "a different identity"
    raise InvalidParameterError(
        f"{store.root}: layer {name!r} of model {keys['model']!r} at epoch {keys['epoch']} is already stored but was "
        f"measured differently ({why}). Results are never mixed: use a new run folder, or on_change='replace' to "
        "recompute it")


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    if old.get("settings") != new["settings"]:
        a, b = json.loads(old["settings"]), json.loads(new["settings"])
        out += [f"{key} {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(set(a) | set(b))
                if a.get(key) != b.get(key)]
    for col, what in (("data_fingerprint", "the data"), ("labels_fingerprint", "the labels"),
                      ("model_fingerprint", "the model weights")):
        if old.get(col) != new[col]:
            out.append(f"{what} changed")
    if old.get("nnkscope_version") != new["nnkscope_version"]:
        out.append(f"nnkscope {old.get('nnkscope_version')} -> {new['nnkscope_version']}")
    return out


def _todo(store, keys, names, settings, source, labels_fp, on_change, options=None) -> list[str]:
    """Layers that need measuring (raising on a stored layer that was measured differently)."""
    known = _identities(store, keys)
    unit = _unit(settings, source, labels_fp, options)
    return [n for n in names if not store.has("points", layer=n, **keys)
            or _changed(store, keys, n, known, unit, on_change)]


# layer columns that are layer means of a per-point column: layer column -> point column
MEAN_OF = {"mean_nnk_degree": "nnk_degree", "mean_interpolation_error": "interpolation_error",
           "mean_error": "interpolation_error", "mean_diameter": "diameter", "mean_local_id": "local_id",
           "mean_curvature": "curvature", "mean_homogeneity": "homogeneity",
           **{f"loo_error_{w}": f"loo_error_{w}" for w in ("nnk", "nnk_uniform", "kernel", "uniform")}}
MEDIAN_OF = {"median_nnk_degree": "nnk_degree", "median_local_id": "local_id"}
# scalar columns of ``layers`` without an interval, and why
CI_EXEMPT = {
    **dict.fromkeys(("n", "n_nodes", "k", "kernel", "sigma", "solver", "rule", "knn_method", "layer_index", "view",
                     "undefined", "layer", "model", "epoch", *IDENTITY_COLUMNS),
                    "an identifier, a setting or a note, not an estimate"),
    "curvature_dim": "the tangent dimension the curvature proxy used (a setting chosen from the data)",
    "knn_recall": "a property of the approximate search, measured on its own seeded sample",
    **dict.fromkeys(("directed_edges", "undirected_edges", "isolated_nodes", "nodes_without_candidates",
                     "degenerate_solves", "solves_at_iteration_cap", "loo_fallback_nodes"),
                    "a count describing this graph's computation (a diagnostic), not an estimate"),
}
CI_LEVEL = 0.95


def _peer_measures(H: np.ndarray, parts, eigen: CovarianceEigen) -> dict:
    """Global intrinsic dimension (on the graph's own neighbour search) and spectral summaries."""
    nbrs = _search_neighbors(parts)
    out = {"id_twonn": intrinsic_dimension(H, "twonn", neighbors=nbrs),
           "id_mle": intrinsic_dimension(H, "mle", neighbors=nbrs), "id_pca": float(pca_from_spectrum(eigen.values))}
    spec = summarize_spectrum(eigen.values)
    out.update(rankme=spec["rankme"], participation_ratio=spec["participation_ratio"],
               stable_rank=spec["stable_rank"], spectral_alpha=spec["alpha"])
    return out


def _search_neighbors(parts) -> Neighbors:
    g = parts.read(0, ["candidates", "distances"])
    return Neighbors(g["candidates"], g["distances"], parts.settings.metric, parts.settings.knn.name,
                     parts.settings.duplicates, 0)


def _node_split(A, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node: its cross-class edge weight and its total edge weight in the symmetric adjacency ``A``."""
    A = A.tocoo()
    cross = np.bincount(A.row, A.data * (codes[A.row] != codes[A.col]), minlength=A.shape[0])
    return cross, np.bincount(A.row, A.data, minlength=A.shape[0])


# N min(N, d)^2 n_boot above which the spectra of the resamples are taken to first order: ~10 s of BLAS
# (5,000 x 128 with 200 resamples stays exact; 20,000 x 768 would take minutes exactly, a second to first order)
EXACT_SPECTRA_MAX = 2e10


class _ByClass:
    """The layer's rows grouped by class, copied once: the class geometry and its bootstrap then read slices
    (weighted_nc1_fuzziness would otherwise gather every class's rows in each of its passes)."""

    def __init__(self, H: np.ndarray, codes: np.ndarray):
        self.order = np.argsort(codes, kind="stable")
        self.H, self.codes = H[self.order], codes[self.order]

    def nc1_fuzziness(self, n_classes: int, W: np.ndarray):
        return weighted_nc1_fuzziness(self.H, self.codes, n_classes, W[:, self.order])


def _intervals(H: np.ndarray, parts, df, summary: dict, codes: np.ndarray, n_classes: int, lv_graph,
               n_boot: int, seed: int = 0, *, eigen: CovarianceEigen, by_class: _ByClass) -> dict:
    """``<column>_ci_low`` / ``_ci_high`` of every estimate in the layer's row: the percentile bootstrap over
    points, all columns from the same ``n_boot`` seeded multinomial resamples (multiplicities, never repeated rows).

    Per-point metrics, the graph, the neighbour search and the per-point ID terms are computed once and held fixed
    (the interval is conditional on the neighbourhoods); what is recomputed per resample is what the points'
    multiplicities enter: weighted means and medians of per-point columns; the node-decomposed edge sums
    (Dirichlet energy ``sum_i w_i c_i``, cross-class fractions ``sum_i w_i c_i / sum_i w_i a_i`` with ``c_i``, ``a_i``
    node i's cross-class and total edge weight); TwoNN / MLE from the per-point log ratios; the weighted covariance
    spectrum (PCA dimension and spectral summaries): exact, ``O(N min(N, d)^2)`` per resample, while
    ``N min(N, d)^2 n_boot`` stays under :data:`EXACT_SPECTRA_MAX`, above that to first order
    (:func:`~nnkscope.measures.spectral.first_order_spectra`, ``O(N min(N, d))`` per resample, error ``O(1/N)``
    relative); NC1 and D from the weighted class means (``O(N d K)`` per resample).
    """
    n = len(H)
    stats: dict = {}
    for table, fn in ((MEAN_OF, weighted_mean), (MEDIAN_OF, weighted_median)):
        for col, pcol in table.items():
            if col in summary and pcol in df:
                values = df[pcol].to_numpy(dtype=np.float64)
                stats[col] = (lambda W, v=values, fn=fn: fn(v, W))
    if "homogeneity" in df:
        hom = (df["homogeneity"].to_numpy() == 1).astype(np.float64)
        stats["homogeneous_fraction_H"] = lambda W: weighted_mean(hom, W)
        gap = (df["loo_error_nnk_uniform"].to_numpy(dtype=np.float64)
               - df["loo_error_nnk"].to_numpy(dtype=np.float64))
        stats["weighted_unweighted_gap"] = lambda W: weighted_mean(gap, W)
        cross, total = _node_split(parts.to_graph().adjacency(parts.settings.symmetrize), codes)
        stats["dirichlet_energy"] = lambda W: W @ cross
        stats["cross_class_edge_fraction"] = lambda W: (W @ cross) / (W @ total)
    lv_cross, lv_total = _node_split(lv_graph, codes)
    stats["label_variation"] = lambda W: (W @ lv_cross) / (W @ lv_total)
    nbrs = _search_neighbors(parts)
    stats["id_twonn"] = dimension_from_weights(H, "twonn", neighbors=nbrs)
    stats["id_mle"] = dimension_from_weights(H, "mle", neighbors=nbrs)

    exact_spectra = n * min(n, H.shape[1]) ** 2 * n_boot <= EXACT_SPECTRA_MAX

    def spectra(W):
        if exact_spectra:  # one small d x d product per resample: one BLAS thread (see below)
            with threadpool_limits(limits=1, user_api="blas"):
                return _summaries([_spectrum_or_none(w) for w in W])
        return _summaries(first_order_spectra(H, W, eigen=eigen))

    def _spectrum_or_none(w):
        try:
            return covariance_spectrum(H, weights=w)
        except InvalidParameterError:  # a resample of identical rows has no spectrum: no replicate
            return None

    def _summaries(spectra_):
        rows = []
        for lam in spectra_:
            if lam is None or not np.isfinite(lam).all():
                rows.append([np.nan] * 5)
                continue
            s = summarize_spectrum(lam)
            rows.append([pca_from_spectrum(lam), s["rankme"], s["participation_ratio"], s["stable_rank"],
                         s["alpha"]])
        return np.array(rows, dtype=np.float64)

    multi = {("id_pca", "rankme", "participation_ratio", "stable_rank", "spectral_alpha"): spectra}
    if np.isfinite(summary.get("nc1", np.nan)):
        multi["nc1", "separation_fuzziness"] = lambda W: np.column_stack(by_class.nc1_fuzziness(n_classes, W))
    columns = list(stats) + [c for group in multi for c in group]
    reps = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for W in bootstrap_weights(n, n_boot, seed):
            # the per-column statistics are small products per resample: BLAS threads cost more than they save
            # there (8x measured); the grouped ones batch the resamples into large products, which threads speed up
            with threadpool_limits(limits=1, user_api="blas"):
                block = [np.asarray(fn(W), dtype=np.float64).reshape(len(W), 1) for fn in stats.values()]
            block += [np.asarray(fn(W), dtype=np.float64).reshape(len(W), len(group)) for group, fn in multi.items()]
            reps.append(np.hstack(block))
    low, high = percentile_interval(np.concatenate(reps), CI_LEVEL)
    out = {}
    for col, lo, hi in zip(columns, low, high, strict=True):
        out[f"{col}_ci_low"], out[f"{col}_ci_high"] = float(lo), float(hi)
    for col in ("nc1", "separation_fuzziness"):  # undefined for the layer: no interval either
        if col in summary and f"{col}_ci_low" not in out:
            out[f"{col}_ci_low"] = out[f"{col}_ci_high"] = np.nan
    return out


SPECTRAL_VIEW_MAX = 5000  # above this the sparse eigensolver costs more than the rest of the layer: PCA instead


def _picture(H: np.ndarray, parts, view: str, eigen: CovarianceEigen) -> tuple[np.ndarray, np.ndarray, str]:
    """A 2-D picture of the layer for the report: ``"spectral"``, the spectral embedding of its NNK graph
    (Laplacian eigenmaps on the graph already built) up to :data:`SPECTRAL_VIEW_MAX` points, above that the
    coordinates on the layer's top-2 principal axes (``eigen``, the covariance already decomposed);
    ``"umap"``, UMAP (seed 0) on the graph's own kNN candidates at any size."""
    if view == "umap":
        nbrs = _search_neighbors(parts)
        # UMAP's fuzzy sets want a length: the chord of unit rows for cosine candidates (stored as 1 - cos)
        dist = np.sqrt(2.0 * nbrs.distances) if nbrs.metric == "cosine" else nbrs.distances
        E = umap_embedding(nbrs.indices, dist, 2, seed=0)
        return E[:, 0], E[:, 1], "umap"
    if len(H) <= SPECTRAL_VIEW_MAX:
        E = spectral_embedding(parts.to_graph(), 2)
        return E[:, 0], E[:, 1], "spectral"
    E = eigen.coordinates(H, axes=2)
    if E.shape[1] < 2:  # a one-dimensional layer: its line, drawn flat
        E = np.column_stack([E[:, 0], np.zeros(len(E))])
    return E[:, 0], E[:, 1], "pca"


def _class_geometry(by_class: _ByClass, n_classes: int, eigen: CovarianceEigen) -> dict:
    """NC1 and separation fuzziness, or NaN with the reason where the layer cannot define them.

    Both come from :func:`weighted_nc1_fuzziness` with unit weights (the bootstrap's own arithmetic, ``O(N d K)``,
    no ``d x d`` scatter); equal to :func:`~nnkscope.measures.collapse.neural_collapse`'s ``nc1`` and
    :func:`~nnkscope.measures.collapse.separation_fuzziness` to rounding."""
    H, codes = by_class.H, by_class.codes
    n = len(H)
    reason = ""
    if H.shape[1] < n_classes - 1:
        reason = f"{H.shape[1]} dimension(s) < K-1 = {n_classes - 1}: class means cannot span a simplex"
    else:
        counts = np.bincount(codes, minlength=n_classes)
        members = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_classes, n))
        means = np.asarray(members @ H) / counts[:, None]
        sv = np.linalg.svd(means - means.mean(axis=0), compute_uv=False)
        # relative to the data's own spread (the covariance trace): means that differ by rounding only coincide
        tol = 1e-8 * np.sqrt(n_classes * eigen.values.sum() * (n - 1) / n)
        if sv[n_classes - 2] <= tol:
            reason = (f"class means coincide (between-class scatter has rank {int((sv > tol).sum())} < "
                      f"K-1 = {n_classes - 1})")
    if reason:
        return {"nc1": np.nan, "separation_fuzziness": np.nan, "undefined": reason}
    nc1, fuzziness = by_class.nc1_fuzziness(n_classes, np.ones((1, n)))
    return {"nc1": float(nc1[0]), "separation_fuzziness": float(fuzziness[0]), "undefined": ""}


def _layer_names(model, layers) -> list[str]:
    from ..nn.capture import select_modules

    return list(select_modules(model, layers))


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, np.integer, np.floating))}


def _write_fit(store: RunStore, keys: dict) -> None:
    import pandas as pd

    t = store.read("layers")  # filtered here, not in SQL: names are data, any Unicode
    rows = t[(t["model"] == keys["model"]) & (t["epoch"] == keys["epoch"])].sort_values("layer_index")
    rows = rows[np.isfinite(rows.separation_fuzziness) & (rows.separation_fuzziness > 0)]  # defined layers only
    if len(rows) < 3:
        return
    f = equi_separation_fit(rows.separation_fuzziness.to_numpy(), rows.layer_index.to_numpy())
    store.write("fits", pd.DataFrame([{"rho": f.rho, "r": f.r, "r2": f.r2, "n_layers": len(rows)}]), **keys)


class TrainingCallback:
    """Run :func:`layerwise` every ``every`` epochs (and at ``epochs``) from any training loop: ``cb(epoch, model)``."""

    def __init__(self, store: RunStore, X, y, layers, *, every: int = 1, epochs: Sequence[int] = (),
                 model_name: str = "model", **kwargs):
        self.store, self.X, self.y, self.layers = store, X, y, layers
        self.every, self.epochs, self.model_name, self.kwargs = every, set(epochs), model_name, kwargs

    def __call__(self, epoch: int, model) -> None:
        if (self.every and epoch % self.every == 0) or epoch in self.epochs:
            layerwise(model, self.X, self.y, self.layers, self.store, model_name=self.model_name, epoch=epoch,
                      **self.kwargs)
