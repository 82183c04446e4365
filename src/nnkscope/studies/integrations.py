"""Measure chosen layers while a model trains, from PyTorch Lightning or the Hugging Face ``Trainer``.

Both callbacks write the tables of the ``training`` study (``layers``, ``points`` with a ``sample`` column,
``fits``) into a run folder, one unit per (layer, epoch), every ``every`` epochs and, with ``at_start``, before
the first epoch (epoch 0).  Write the report afterwards with ``nnkscope report RUN`` (or
``nnkscope.report.write_report``).

* :func:`LightningCallback` -- a ``lightning.pytorch.Callback`` (optional extra ``[lightning]``); the
  ``LightningModule`` is the model whose layers are captured on ``X``.
* :func:`TrainerCallback` -- a ``transformers.TrainerCallback``; either ``X`` + ``layers`` (modules captured
  with forward hooks, as for any torch model) or ``texts`` + ``tokenizer`` (the encoder's hidden states, mean
  pooled: layers ``embeddings``, ``layer1`` ...).

Only the main process measures (rank 0); the model is measured on its own device and put back in the mode it was in.
"""

from __future__ import annotations

import numpy as np

from .._runtime import require
from .._validate import check_labels
from ..errors import InvalidParameterError
from ..store import RunStore

__all__ = ["LayerMonitor", "LightningCallback", "TrainerCallback"]


class LayerMonitor:
    """The framework-independent part: which inputs, which layers, how often, into which run folder.

    ``monitor(model, epoch)`` measures when ``epoch`` is due (0 with ``at_start``, then every ``every``-th).
    """

    def __init__(self, out, X=None, y=None, layers=None, *, texts=None, tokenizer=None, every: int = 1,
                 at_start: bool = True, model_name: str = "model", k: int = 20, kernel: str = "cosine",
                 pooling: str = "flatten", on_change: str = "error", progress: bool | None = False,
                 source: str = "callback"):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise InvalidParameterError(f"every must be a positive number of epochs; got {every!r}")
        if y is None:
            raise InvalidParameterError("the callback needs labels y (one per row of X, or per sentence)")
        if texts is not None:
            if tokenizer is None:
                raise InvalidParameterError("texts need the model's tokenizer: tokenizer=...")
            from ..nn.loaders import load_texts

            texts = load_texts(list(texts), what="texts")
            n = len(texts)
        else:
            if X is None or layers is None:
                raise InvalidParameterError("give X and layers (modules to capture), or texts and tokenizer "
                                            "(an encoder's hidden states)")
            if hasattr(X, "detach"):
                X = X.detach().cpu().numpy()
            X = np.asarray(X)
            n = len(X)
        check_labels(y, n)
        self.X, self.y, self.layers, self.texts, self.tokenizer = X, y, layers, texts, tokenizer
        self.every, self.at_start, self.model_name = every, at_start, model_name
        self.settings = {"k": k, "kernel": kernel, "on_change": on_change, "progress": progress}
        self.pooling = pooling
        self.store = RunStore(out, params={"study": "training", "source": source, "model": model_name,
                                           "layers": layers if isinstance(layers, (str, list)) else repr(layers),
                                           "texts": texts is not None, "k": k, "kernel": kernel,
                                           "pooling": pooling, "every": every})

    def due(self, epoch: int) -> bool:
        return (epoch == 0 and self.at_start) or (epoch > 0 and epoch % self.every == 0)

    def __call__(self, model, epoch: int) -> None:
        if not self.due(epoch):
            return
        if self.texts is not None:
            self._hidden_states(model, epoch)
            return
        from ..nn.loaders import model_input
        from .layerwise import layerwise

        layerwise(model, model_input(model, self.X), self.y, self.layers, self.store, model_name=self.model_name,
                  epoch=epoch, pooling=self.pooling, samples=np.arange(len(self.X)), **self.settings)

    def _hidden_states(self, model, epoch: int) -> None:
        from ..nn.capture import hidden_states
        from ..nn.loaders import texts_fingerprint
        from ..nn.models import weights_fingerprint
        from .layerwise import measure_layers

        pooling = "cls" if self.pooling == "cls" else "mean"
        states = hidden_states(model, self.tokenizer, self.texts, pooling=pooling)
        source = {"texts": texts_fingerprint(self.texts), "model": weights_fingerprint(model), "pooling": pooling}
        measure_layers(states, self.y, self.store, model_name=self.model_name, epoch=epoch,
                       samples=np.arange(len(self.texts)), _source=source, **self.settings)


_CLASSES: dict = {}


def LightningCallback(out, X, y, layers, **kwargs):
    """A ``lightning.pytorch.Callback`` measuring ``layers`` of the ``LightningModule`` on ``(X, y)`` every
    ``every`` epochs (and at epoch 0 with ``at_start``) into the run folder ``out``.  Keyword arguments: those of
    :class:`LayerMonitor`.

    ``trainer = lightning.Trainer(max_epochs=10, callbacks=[LightningCallback("run", X, y, ["encoder.*"])])``
    """
    if "lightning" not in _CLASSES:
        try:
            pl = require("lightning.pytorch", "LightningCallback")
        except ImportError:
            pl = require("pytorch_lightning", "LightningCallback")

        class _LightningCallback(pl.Callback):
            def __init__(self, monitor: LayerMonitor):
                super().__init__()
                self.monitor = monitor

            def on_train_start(self, trainer, pl_module):
                if trainer.is_global_zero:
                    self.monitor(pl_module, 0)

            def on_train_epoch_end(self, trainer, pl_module):
                if trainer.is_global_zero:
                    self.monitor(pl_module, trainer.current_epoch + 1)  # Lightning counts epochs from 0

        _CLASSES["lightning"] = _LightningCallback
    return _CLASSES["lightning"](LayerMonitor(out, X, y, layers, source="lightning", **kwargs))


def TrainerCallback(out, X=None, y=None, layers=None, **kwargs):
    """A ``transformers.TrainerCallback`` measuring the model every ``every`` epochs (and at epoch 0 with
    ``at_start``) into the run folder ``out``: ``X`` + ``layers`` (captured modules) or ``texts=`` +
    ``tokenizer=`` (hidden states).  Keyword arguments: those of :class:`LayerMonitor`.

    ``Trainer(model, args, train_dataset=ds, callbacks=[TrainerCallback("run", y=y, texts=texts,
    tokenizer=tok)])``
    """
    if "hf" not in _CLASSES:
        transformers = require("transformers", "TrainerCallback")

        class _TrainerCallback(transformers.TrainerCallback):
            def __init__(self, monitor: LayerMonitor):
                self.monitor = monitor

            def on_train_begin(self, args, state, control, model=None, **kw):
                if state.is_world_process_zero and model is not None:
                    self.monitor(model, 0)

            def on_epoch_end(self, args, state, control, model=None, **kw):
                if state.is_world_process_zero and model is not None:
                    self.monitor(model, int(round(state.epoch)))  # state.epoch is a float: 1.0 after the first

        _CLASSES["hf"] = _TrainerCallback
    return _CLASSES["hf"](LayerMonitor(out, X, y, layers, source="huggingface-trainer", **kwargs))
