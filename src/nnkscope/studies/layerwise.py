"""Studies: the NNK and class-geometry metrics of every layer of a model, per epoch, into a run folder.

``layerwise`` measures one model state: activations of the selected layers on an evaluation set, then for each
layer the per-point NNK metrics (table ``points``), a per-layer summary with neural-collapse NC1 and separation
fuzziness D (table ``layers``), and the equi-separation fit over the layers (table ``fits``).  Every
(model, epoch, layer) unit is a separate part of the run folder and is skipped if already there, so an
interrupted study resumes where it stopped.  :class:`TrainingCallback` runs it during training
(``train_classifier(..., callback=cb)`` or any loop calling ``cb(epoch, model)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..measures.collapse import equi_separation_fit, neural_collapse, scatter_in_blocks, separation_fuzziness
from ..measures.labels import label_variation
from ..measures.metrics import point_metrics
from ..nn.capture import capture
from ..store import RunStore

__all__ = ["layerwise", "measure_layers", "TrainingCallback"]


def layerwise(model, X: np.ndarray, y: np.ndarray, layers, store: RunStore, *, model_name: str = "model",
              epoch: int = 0, k: int = 20, kernel: str = "cosine", pooling: str = "flatten",
              include_input: bool = True, progress: bool | None = False) -> dict:
    """Measure every selected layer of ``model`` on ``(X, y)`` and write the parts; returns what it computed."""
    keys = {"model": model_name, "epoch": int(epoch)}
    names = (["input"] if include_input else []) + _layer_names(model, layers)
    todo = [name for name in names if name != "input" and not store.has("points", layer=name, **keys)]
    acts = capture(model, X, todo, pooling=pooling) if todo else {}
    acts["input"] = X
    return measure_layers({name: (lambda name=name: acts.get(name)) for name in names}, y, store,
                          model_name=model_name, epoch=epoch, k=k, kernel=kernel, progress=progress)


def measure_layers(features: dict, y: np.ndarray, store: RunStore, *, model_name: str = "model", epoch: int = 0,
                   k: int = 20, kernel: str = "cosine", progress: bool | None = False) -> dict:
    """Measure precomputed per-layer features ``{name: (N, ...) array or a callable returning one}`` (in depth
    order: the layer index is the position) and write tables ``points``, ``layers`` and ``fits``.

    This is what :func:`layerwise` runs on captured activations; use it directly for features from elsewhere, e.g.
    a transformer's hidden states (:func:`nnkscope.nn.capture.hidden_states`).  Finished layers are skipped.

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
    """
    import pandas as pd

    keys = {"model": model_name, "epoch": int(epoch)}
    computed = {}
    for index, (name, H) in enumerate(features.items()):
        if store.has("points", layer=name, **keys):
            continue
        H = H() if callable(H) else H
        H = np.asarray(H, dtype=np.float64).reshape(len(H), -1)
        df, summary = point_metrics(H, y, k, kernel=kernel, duplicates="keep", check_class_sizes=False,
                                    progress=progress)
        stats = scatter_in_blocks(H, y, int(np.max(y)) + 1)  # serves NC1 and D (balanced: a second pass)
        summary["nc1"] = neural_collapse(stats)["nc1"] if H.shape[1] >= stats.n_classes - 1 else np.nan
        summary["separation_fuzziness"] = separation_fuzziness(stats)
        summary["label_variation"] = label_variation(H, y, k=min(10, len(H) - 1))
        summary["layer_index"] = index
        store.write("layers", pd.DataFrame([_scalars(summary)]), layer=name, **keys)
        store.write("points", df, layer=name, **keys)
        computed[name] = summary
    _write_fit(store, keys)
    return computed


def _layer_names(model, layers) -> list[str]:
    from ..nn.capture import select_modules

    return list(select_modules(model, layers))


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, np.integer, np.floating))}


def _write_fit(store: RunStore, keys: dict) -> None:
    import pandas as pd

    model = str(keys["model"]).replace("'", "''")  # SQL string literal
    rows = store.query(f"SELECT layer_index, separation_fuzziness FROM layers WHERE model = '{model}' "
                       f"AND epoch = {keys['epoch']} ORDER BY layer_index")
    if len(rows) < 3 or not (rows.separation_fuzziness > 0).all():
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
