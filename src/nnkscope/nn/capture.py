"""Capture the activations of named modules of any ``torch.nn.Module`` (optional ``[torch]`` extra).

Forward hooks on the selected modules record each batch's output, pool it, and either keep it in memory or
stream it into a ``.npy`` file per layer (memory-mapped, written to a ``.part`` file and renamed only when every
batch is in, so a crash never leaves a file that looks complete).  Layers are chosen by exact name, by glob
(``"blocks.*"`` = direct children, ``"blocks.**"`` = every descendant), by module type (``torch.nn.ReLU``) or by
a predicate ``(name, module) -> bool``.

Pooling of a (N, C, *spatial) output: ``"flatten"`` -> (N, C * S), ``"mean"`` -> (N, C) global average,
``"channels"`` -> (N, C, S) (one S-long feature per channel, as in channel-wise NNK).  A module returning a tuple
(transformer blocks) contributes its first tensor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import InputShapeError, InvalidParameterError, NNKScopeError

__all__ = ["select_modules", "select_names", "capture", "hidden_states", "LayerNotFoundError", "CaptureError",
           "POOLINGS"]

POOLINGS = ("flatten", "mean", "channels")


class LayerNotFoundError(InvalidParameterError):
    """A requested layer name or pattern matches no module."""


class CaptureError(NNKScopeError, RuntimeError):
    """The model raised during a capture forward pass."""


def _glob(pattern: str) -> re.Pattern:
    """Module-name glob: ``*`` stays within one dotted level, ``**`` spans levels, ``?`` is one character."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append(r"[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append(r"[^.]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def select_modules(model, layers) -> dict:
    """``{name: module}`` for the layer selection (names, globs, a module type or a predicate), in model order.

    In a list of strings (as in a YAML config), an entry that names no module but names a module class (``Linear``,
    ``torch.nn.Conv1d``) selects every module of that class.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> list(select_modules(net, torch.nn.Linear)), list(select_modules(net, ["torch.nn.ReLU", "2"]))
    (['0', '2'], ['1', '2'])
    """
    named = [(n, m) for n, m in model.named_modules() if n]
    if isinstance(layers, type) or (isinstance(layers, tuple) and all(isinstance(t, type) for t in layers)):
        chosen = [(n, m) for n, m in named if isinstance(m, layers)]
    elif callable(layers) and not isinstance(layers, str):
        chosen = [(n, m) for n, m in named if layers(n, m)]
    else:
        raw = [layers] if isinstance(layers, str) else list(layers)
        names = [n for n, _ in named]
        by_type = [p for p in raw if isinstance(p, str) and not any(_glob(p).match(n) for n in names)
                   and any(_is_class(m, p) for _, m in named)]
        rest = [p for p in raw if p not in by_type]
        try:
            keep = set(select_names(names, rest, what="module")) if rest else set()
        except LayerNotFoundError as exc:
            classes = sorted({type(m).__name__ for _, m in named})
            raise LayerNotFoundError(f"{exc}; or a module class: {', '.join(classes)}") from None
        chosen = [(n, m) for n, m in named if n in keep or any(_is_class(m, p) for p in by_type)]
    if not chosen:
        raise LayerNotFoundError(f"the selection {layers!r} matches no module of {type(model).__name__}")
    return dict(chosen)


def _is_class(module, text: str) -> bool:
    """Whether ``text`` names the module's class: ``Linear``, ``nn.Linear`` or ``torch.nn.Linear``."""
    cls = type(module)
    parts = text.split(".")
    if parts[-1] != cls.__name__ or not parts[-1][:1].isupper():
        return False
    return len(parts) == 1 or cls.__module__.split(".")[0] == parts[0] or parts[0] == "nn"


def select_names(names, layers, *, what: str = "layer") -> list[str]:
    """The ``names`` (in their order) that the selection matches: a name or glob, or a list of them.

    Examples
    --------
    >>> select_names(["embeddings", "layer1", "layer2"], "layer*")
    ['layer1', 'layer2']
    >>> select_names(["a", "b"], ["c"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.nn.capture.LayerNotFoundError: no layer matches 'c'; available: a, b
    """
    raw = [layers] if isinstance(layers, str) else list(layers)
    if not raw or not all(isinstance(r, str) for r in raw):
        raise InvalidParameterError(f"layers must be a name, a glob or a list of them; got {layers!r}")
    names = list(names)
    patterns = [_glob(p) for p in raw]
    for text, p in zip(raw, patterns, strict=True):
        if not any(p.match(n) for n in names):
            shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
            raise LayerNotFoundError(f"no {what} matches {text!r}; available: {shown}")
    return [n for n in names if any(p.match(n) for p in patterns)]


def _pool(t, pooling: str):
    t = t[0] if isinstance(t, (tuple, list)) else t
    if t.ndim == 1:
        t = t[:, None]
    if pooling == "flatten" or t.ndim == 2:
        return t.reshape(t.shape[0], -1)
    if pooling == "mean":
        return t.reshape(t.shape[0], t.shape[1], -1).mean(-1)
    return t.reshape(t.shape[0], t.shape[1], -1)


def _batches(data, batch_size: int) -> tuple[Iterable, int | None]:
    import torch

    if isinstance(data, (np.ndarray, torch.Tensor)):
        tensor = torch.as_tensor(data)
        return (tensor[lo:lo + batch_size] for lo in range(0, len(tensor), batch_size)), len(tensor)
    n = len(data.dataset) if hasattr(data, "dataset") else None
    return data, n


def capture(model, data, layers, *, pooling: str = "flatten", batch_size: int = 256, out_dir=None,
            dtype=np.float32, device: str = "cpu", progress: bool | None = None,
            transform: Callable | None = None) -> dict:
    """Run ``model`` over ``data`` and return each selected layer's pooled activations.

    Parameters
    ----------
    model : torch.nn.Module (put in eval mode; no gradients are kept).
    data : array / tensor (batched here) or an iterable of batches, e.g. a DataLoader; a batch that is a tuple or
        list contributes its first element (inputs of ``(x, y)`` pairs).
    layers : names, globs, a module type or a predicate (see :func:`select_modules`).
    pooling : "flatten", "mean" or "channels".
    out_dir : stream each layer to ``out_dir/<name>.npy`` (memory-mapped) instead of keeping it in memory;
        needs the number of samples up front (arrays, tensors, DataLoaders over sized datasets).
    transform : optional ``batch -> model input``.

    Returns
    -------
    dict name -> array (in memory, or a read-only memmap of the finished file).
    """
    import torch

    from .._runtime import progress_bar
    from ..io import atomic_path

    if pooling not in POOLINGS:
        raise InvalidParameterError(f"pooling must be one of {list(POOLINGS)}; got {pooling!r}")
    modules = select_modules(model, layers)
    batches, n_total = _batches(data, batch_size)
    if out_dir is not None and n_total is None:
        raise InvalidParameterError("streaming to out_dir needs the number of samples: pass an array, a tensor or "
                                    "a DataLoader over a sized dataset")
    current: dict = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: current.__setitem__(name, out))
             for name, m in modules.items()]
    kept: dict = {name: [] for name in modules}
    files: dict = {}
    contexts: dict = {}
    pos = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), progress_bar(n_total or 0, "capture", progress) as bar:
            for b, batch in enumerate(batches):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                x = transform(x) if transform is not None else x
                x = x.to(device) if hasattr(x, "to") else x
                current.clear()
                try:
                    model(x)
                except Exception as exc:  # the user's model failed: say where, keep nothing half-written
                    raise CaptureError(f"the model raised on batch {b} ({type(exc).__name__}: {exc})") from exc
                n = None
                for name in modules:
                    if name not in current:
                        raise CaptureError(f"module {name!r} did not run in the forward pass of batch {b}")
                    arr = _pool(current[name], pooling).detach().cpu().numpy().astype(dtype, copy=False)
                    n = len(arr)
                    if out_dir is None:
                        kept[name].append(arr)
                        continue
                    if name not in files:
                        ctx = atomic_path(Path(out_dir) / f"{name}.npy")
                        tmp = ctx.__enter__()
                        contexts[name] = ctx
                        files[name] = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype,
                                                                shape=(n_total,) + arr.shape[1:])
                    if pos + n > n_total:
                        raise InputShapeError(f"data yielded more than the {n_total} samples announced")
                    files[name][pos:pos + n] = arr
                pos += n or 0
                bar.update(n or 0)
        if out_dir is not None and pos != n_total:
            raise InputShapeError(f"data yielded {pos} samples but announced {n_total}")
        if out_dir is None:
            return {name: np.concatenate(parts) for name, parts in kept.items()}
        out = {}
        for name, mm in files.items():
            mm.flush()
            del mm
            contexts[name].__exit__(None, None, None)  # rename .part -> final name
            out[name] = np.load(Path(out_dir) / f"{name}.npy", mmap_mode="r")
        files.clear()
        return out
    except BaseException as exc:
        for name, ctx in contexts.items():
            if name in files:
                ctx.__exit__(type(exc), exc, None)  # deletes the .part file
        raise
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)




def hidden_states(model, tokenizer, texts, *, pooling: str = "mean", batch_size: int = 64,
                  max_length: int = 128) -> dict:
    """Per-layer sentence features of a Hugging Face encoder: ``{"embeddings": (N, h), "layer1": ..., ...}``.

    Runs ``model(**tokenizer(batch), output_hidden_states=True)`` and pools each hidden state over the tokens:
    ``"mean"`` (average of the non-padding tokens, the sentence-transformers pooling) or ``"cls"`` (first token).
    For the packaged MiniLM, :func:`nnkscope.nn.models.load_minilm` gives ``model`` and ``tokenizer``.
    """
    import torch

    if pooling not in ("mean", "cls"):
        raise InvalidParameterError(f"pooling must be 'mean' or 'cls'; got {pooling!r}")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidParameterError("texts must be a non-empty list of strings")
    out: list[list[np.ndarray]] = []
    device = next((p.device for p in model.parameters()), "cpu")
    was_training = model.training
    model.eval()  # dropout off; the caller's mode is restored after
    try:
        with torch.no_grad():
            for lo in range(0, len(texts), batch_size):
                batch = tokenizer(texts[lo:lo + batch_size], padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt")
                batch = {key: value.to(device) for key, value in batch.items()}
                try:
                    states = model(**batch, output_hidden_states=True).hidden_states
                except Exception as exc:
                    raise CaptureError(f"the model raised on texts {lo}..{lo + batch_size - 1} ({exc})") from exc
                mask = batch["attention_mask"].unsqueeze(-1).to(states[0].dtype)
                pooled = [(h * mask).sum(1) / mask.sum(1).clamp(min=1) if pooling == "mean" else h[:, 0]
                          for h in states]
                out.append([p.double().cpu().numpy() for p in pooled])
    finally:
        model.train(was_training)
    names = ["embeddings"] + [f"layer{i}" for i in range(1, len(out[0]))]
    return {name: np.concatenate([o[i] for o in out]) for i, name in enumerate(names)}
