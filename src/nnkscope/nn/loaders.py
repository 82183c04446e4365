"""The user's own model and data: a factory callable, a checkpoint, arrays on disk, a local Hugging Face folder,
saved per-layer features.

Every loader validates what it reads and fails with an nnkscope error that names the file, what was wrong and the
fix, so a study can load and check everything before it writes anything.

* A **factory** is ``"path/to/net.py:TinyCNN"`` (a Python file, run as a module of its own with its folder on
  ``sys.path`` while it loads) or ``"package.module:callable"`` (imported).  It is called with the ``kwargs``.
* A **checkpoint** is read with ``torch.load(..., weights_only=True)``: tensors and plain containers only, so a
  file can never run code.  A file that needs full unpickling (a whole model saved with ``torch.save(model)``) is
  refused unless the caller passes ``trusted=True`` (``model.checkpoint_trusted: true`` in YAML).
* **Arrays** are ``.npy`` (``allow_pickle=False``), ``.npz`` (its only array, or ``file.npz:name``), ``.pt`` /
  ``.pth`` (a tensor, ``weights_only=True``), ``.txt`` (one label or sentence per line), or a factory
  ``"file.py:fn"`` returning an array or an ``(X, y)`` pair.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, InputShapeError, InvalidParameterError

__all__ = ["is_factory", "load_callable", "build_user_model", "load_checkpoint", "load_array", "load_source",
           "load_texts", "model_input", "probe_forward", "load_huggingface", "file_digest", "texts_fingerprint",
           "feature_files", "ARRAY_SUFFIXES"]

ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".txt")
_STATE_KEYS = ("state_dict", "model_state_dict", "model")  # where training frameworks nest the weights


def _resolve(path, base) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p


def is_factory(spec) -> bool:
    """Whether ``spec`` names a callable (``"file.py:fn"`` or ``"package.module:fn"``) rather than a data file.

    Examples
    --------
    >>> is_factory("net.py:TinyCNN"), is_factory("torchvision.models:resnet18"), is_factory("x.npy")
    (True, True, False)
    >>> is_factory("feats.npz:layer1"), is_factory("C:/data/x.npy")
    (False, False)
    """
    if not isinstance(spec, str) or ":" not in spec:
        return False
    target, attr = spec.rsplit(":", 1)
    if not attr.isidentifier() or target.lower().endswith(ARRAY_SUFFIXES):
        return False
    return target.endswith(".py") or all(part.isidentifier() for part in target.split("."))


def _file_module(path: Path, what: str):
    """Run a Python file as a module of its own (a unique name per path, registered so pickling finds it)."""
    if not path.is_file():
        raise FileFormatError(f"{what}: no such file {path}; relative paths resolve from the config file's folder")
    name = f"nnkscope_user_{path.stem}_{hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InvalidParameterError(f"{what}: running {path} raised {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def load_callable(spec: str, *, base=None, what: str = "factory") -> Callable:
    """The callable that ``spec`` names: ``"path/to/file.py:name"`` (relative to ``base``) or ``"pkg.mod:name"``.

    Examples
    --------
    >>> load_callable("math:sqrt")(9.0)
    3.0
    >>> load_callable("math:nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: factory: module math has no callable 'nope'; it has ...
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise InvalidParameterError(f"{what} must be 'path/to/file.py:name' or 'package.module:name'; got {spec!r}")
    target, attr = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = _resolve(target, base).resolve()
        module, shown = _file_module(path, what), str(path)
    else:
        try:
            module, shown = importlib.import_module(target), target
        except ImportError as exc:
            raise InvalidParameterError(f"{what}: cannot import module {target!r} ({exc}); give an importable "
                                        "module or a file path ending in .py") from exc
        except Exception as exc:
            raise InvalidParameterError(f"{what}: importing {target!r} raised {type(exc).__name__}: {exc}") \
                from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        shown_names = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
        raise InvalidParameterError(f"{what}: module {shown} has no callable {attr!r}; it has {shown_names}")
    return fn


def build_user_model(factory: str = "", kwargs: Mapping | None = None, *, checkpoint: str = "",
                     trusted: bool = False, base=None, seed: int = 0, what: str = "model"):
    """A model from ``factory(**kwargs)`` (seeded initialisation), with ``checkpoint``'s weights if given.

    Without a factory, ``checkpoint`` must hold a whole model (``torch.save(model)``), which needs
    ``trusted=True``.  The model is returned in eval mode.
    """
    from .models import require_torch

    torch = require_torch()
    if not factory and not checkpoint:
        raise InvalidParameterError(f"{what}: give a factory ('net.py:TinyCNN'), a checkpoint, or both")
    model = None
    if factory:
        fn = load_callable(factory, base=base, what=f"{what}.factory")
        torch.manual_seed(seed)
        try:
            model = fn(**dict(kwargs or {}))
        except Exception as exc:
            raise InvalidParameterError(f"{what}.factory {factory} raised {type(exc).__name__}: {exc} (called "
                                        f"with kwargs {dict(kwargs or {})}); check {what}.kwargs") from exc
        if not isinstance(model, torch.nn.Module):
            raise InvalidParameterError(f"{what}.factory {factory} returned {type(model).__name__}, not a "
                                        "torch.nn.Module; it must build and return the model")
    if checkpoint:
        model = load_checkpoint(model, _resolve(checkpoint, base), trusted=trusted, what=f"{what}.checkpoint")
    model.eval()
    return model


def _is_state(obj) -> bool:
    import torch

    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_checkpoint(model, path, *, trusted: bool = False, what: str = "checkpoint"):
    """Load the weights in ``path`` into ``model`` (or return the whole model the file holds); returns the model.

    The file may be a state_dict, a mapping that nests one under ``state_dict`` / ``model_state_dict`` /
    ``model`` (training frameworks' checkpoints), or, with ``trusted=True``, a whole pickled model.  Keys must
    match the model's exactly (a prefix shared by every key, such as ``module.`` from DataParallel, is dropped when
    that makes them match); otherwise the error lists the missing and unexpected keys and the shape mismatches.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{what}: no such file {path}; relative paths resolve from the config file's folder")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if trusted:
            raise FileFormatError(f"{what}: {path} could not be unpickled ({exc})") from exc
        raise FileFormatError(
            f"{what}: {path} holds pickled Python objects, not only tensors (a whole model saved with "
            "torch.save(model)?). nnkscope reads checkpoints with torch.load(weights_only=True) so that a file cannot "
            "run code: save model.state_dict() instead, or set checkpoint_trusted: true (trusted=True) if you "
            f"trust the file. torch said: {str(exc).splitlines()[0]}") from exc
    except ModuleNotFoundError as exc:
        raise FileFormatError(f"{what}: {path} needs the module {exc.name!r} to unpickle its model class; put its "
                              "folder on PYTHONPATH, or save a state_dict and give the factory") from exc
    except Exception as exc:
        raise FileFormatError(f"{what}: torch.load could not read {path} ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, torch.nn.Module):
        if model is None:
            return obj
        obj = obj.state_dict()
    if model is None:
        raise InvalidParameterError(f"{what}: {path} holds weights, not a model; give model.factory to build the "
                                    "model they belong to")
    if not _is_state(obj) and isinstance(obj, Mapping):
        nested = [obj[k] for k in _STATE_KEYS if k in obj and _is_state(obj[k])]
        obj = nested[0] if nested else obj
    if not _is_state(obj):
        shown = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise FileFormatError(f"{what}: {path} is not a state_dict (name -> tensor); found {shown}. Save it with "
                              "torch.save(model.state_dict(), path)")
    state = _match_keys(dict(obj), model.state_dict(), path, what)
    model.load_state_dict(state, strict=True)
    return model


def _match_keys(state: dict, expected: Mapping, path: Path, what: str) -> dict:
    if set(state) != set(expected):
        prefixes = {k.split(".", 1)[0] + "." for k in state}
        if len(prefixes) == 1:
            (prefix,) = prefixes
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == set(expected):
                state = stripped
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in sorted(state)
              if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        def show(items):
            return ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")

        parts = [f"missing keys (in the model, not in the file): {show(missing)}" if missing else "",
                 f"unexpected keys (in the file, not in the model): {show(unexpected)}" if unexpected else "",
                 f"shape mismatches: {show(shapes)}" if shapes else ""]
        raise FileFormatError(f"{what}: {path} does not fit the model; " + "; ".join(p for p in parts if p)
                              + ". Check the factory's kwargs, or that the file belongs to this model")
    return state


def _npz_member(path: Path, key: str | None, what: str) -> np.ndarray:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{what}: cannot read {path} as .npz ({exc})") from exc
    with z:
        names = list(z.files)
        if key is None:
            if len(names) != 1:
                raise FileFormatError(f"{what}: {path} holds {len(names)} arrays {names}; name one as "
                                      f"'{path.name}:NAME'")
            key = names[0]
        if key not in names:
            raise FileFormatError(f"{what}: {path} has no array {key!r}; it has {names}")
        return _read(lambda: z[key], path, what)


def _read(fn, path, what):
    try:
        return fn()
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise FileFormatError(f"{what}: {path} holds Python objects (an object array); nnkscope does not unpickle "
                                  "data files. Save plain arrays, e.g. np.save(path, np.asarray(y, dtype=str))") \
                from exc
        raise FileFormatError(f"{what}: cannot read {path} ({exc})") from exc
    except OSError as exc:
        raise FileFormatError(f"{what}: cannot read {path} ({exc})") from exc


def load_source(spec, *, base=None, what: str = "data.X"):
    """``(array, labels or None)`` from a file, an inline list, or a factory ``"file.py:fn"`` (which may return
    ``(X, y)``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); np.save(d / "x.npy", np.ones((3, 2)))
    >>> X, y = load_source("x.npy", base=d); X.shape, y
    ((3, 2), None)
    >>> load_source(["a", "b"])[0].tolist()
    ['a', 'b']
    """
    if isinstance(spec, (list, tuple)):
        return np.asarray(spec), None
    if not isinstance(spec, str) or not spec:
        raise InvalidParameterError(f"{what} must be a file path, a list or a factory 'file.py:fn'; got {spec!r}")
    if is_factory(spec):
        fn = load_callable(spec, base=base, what=what)
        try:
            out = fn()
        except Exception as exc:
            raise InvalidParameterError(f"{what}: {spec} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(out, tuple) and len(out) == 2:
            return _to_numpy(out[0], what), _to_numpy(out[1], what)
        return _to_numpy(out, what), None
    return load_array(spec, base=base, what=what), None


def _to_numpy(obj, what: str) -> np.ndarray:
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(t, str) for t in obj):
        return np.asarray(obj, dtype=str)
    arr = np.asarray(obj)
    if arr.dtype == object:
        raise InvalidParameterError(f"{what}: got an object array; return a numeric array, a tensor or strings")
    return arr


def load_array(spec: str, *, base=None, what: str = "data.X") -> np.ndarray:
    """One array from ``.npy``, ``.npz`` (``file.npz:name`` picks one), ``.pt``/``.pth`` or ``.txt`` (lines)."""
    key = None
    text = str(spec)
    if ":" in text and text.rsplit(":", 1)[0].lower().endswith(".npz"):
        text, key = text.rsplit(":", 1)
    path = _resolve(text, base)
    if not path.is_file():
        raise FileFormatError(f"{what}: no such file {path}; relative paths resolve from the config file's folder")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read(lambda: np.load(path, allow_pickle=False), path, what)
    if suffix == ".npz":
        return _npz_member(path, key, what)
    if suffix in (".pt", ".pth"):
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FileFormatError(f"{what}: torch.load(weights_only=True) could not read {path} "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0]}); save a tensor") from exc
        if isinstance(obj, Mapping) and len(obj) == 1:
            obj = next(iter(obj.values()))
        if not isinstance(obj, torch.Tensor):
            raise FileFormatError(f"{what}: {path} holds {type(obj).__name__}, not a tensor")
        return obj.numpy()
    if suffix == ".txt":
        return np.asarray(load_texts(str(path), what=what), dtype=str)
    raise FileFormatError(f"{what}: {path} has an unknown suffix {suffix!r}; use one of {list(ARRAY_SUFFIXES)} "
                          "or a factory 'file.py:fn'")


def load_texts(spec, *, base=None, what: str = "data.text") -> list[str]:
    """Sentences from a text file (one per line; line breaks only are stripped) or a list of strings."""
    if isinstance(spec, (list, tuple)):
        texts = list(spec)
    else:
        path = _resolve(spec, base)
        if not path.is_file():
            raise FileFormatError(f"{what}: no such file {path}; relative paths resolve from the config file's "
                                  "folder")
        try:
            texts = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{what}: cannot read {path} as UTF-8 text ({exc})") from exc
        if texts and texts[-1] == "":
            texts.pop()  # the final newline ends the last line; it does not start an empty one
        texts = [t.rstrip("\r") for t in texts]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidParameterError(f"{what} must hold at least one sentence (strings only)")
    return texts


def model_input(model, X: np.ndarray) -> np.ndarray:
    """``X`` as the model takes it: floating arrays in the dtype of the model's first floating parameter (float32
    for most models; numpy saves float64 by default), integer arrays (token ids) unchanged."""
    X = np.asarray(X)
    if X.dtype.kind == "f":
        import torch

        dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
        target = dtypes[0] if dtypes else torch.float32
        return X.astype(torch.empty((), dtype=target).numpy().dtype, copy=False)
    if X.dtype.kind == "b":
        return X.astype(np.float32)
    return X


def probe_forward(model, X: np.ndarray, n: int = 2) -> None:
    """Run the model on the first ``n`` rows (eval mode, no gradients) and raise :class:`InputShapeError` with the
    model's own error and the input's shape when it cannot take them."""
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.ascontiguousarray(X[:n])))
    except Exception as exc:
        raise InputShapeError(
            f"the model cannot take the inputs: X has shape {tuple(np.shape(X))} and dtype {np.asarray(X).dtype} "
            f"(probed on the first {min(n, len(X))} rows, shape {tuple(np.shape(X[:n]))}); the model raised "
            f"{type(exc).__name__}: {exc}. Reshape or convert X to what the model's forward expects") from exc
    finally:
        model.train(was)


def load_huggingface(path, *, base=None, what: str = "model.huggingface"):
    """``(model, tokenizer)`` of a local Hugging Face folder (``config.json``, weights, tokenizer files); never
    downloads (``local_files_only=True``)."""
    import os

    from .._runtime import require

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", "Hugging Face models")
    folder = _resolve(path, base)
    if not (folder / "config.json").is_file():
        raise FileFormatError(f"{what}: {folder} is not a Hugging Face model folder (no config.json); save one with "
                              "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)")
    try:
        model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise FileFormatError(f"{what}: cannot load the model in {folder} ({type(exc).__name__}: {exc})") from exc
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise FileFormatError(f"{what}: cannot load the tokenizer in {folder} ({type(exc).__name__}: {exc}); save "
                              "it there with tokenizer.save_pretrained(folder)") from exc
    model.eval()
    return model, tokenizer


def file_digest(path) -> str:
    """BLAKE2 hash of a file's bytes, or of every file in a folder (relative names and bytes, sorted).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"; _ = p.write_bytes(b"x")
    >>> a = file_digest(p); _ = p.write_bytes(b"y"); a == file_digest(p)
    False
    """
    path = Path(path)
    h = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f"{f.relative_to(path) if path.is_dir() else ''}|".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def texts_fingerprint(texts) -> str:
    """BLAKE2 hash of a list of sentences (their count and UTF-8 bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{len(texts)}|".encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def _npz_shapes(path: Path) -> list[tuple[str, tuple, np.dtype]]:
    """``[(name, shape, dtype)]`` of every array in an ``.npz``, in file order, read from the headers only."""
    out = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(fh)
                out.append((info.filename[:-4], shape, dtype))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{path}: cannot read it as .npz ({exc}); save features with np.savez(path, "
                              "layer1=H1, layer2=H2, ...)") from exc
    return out


def feature_files(paths, *, base=None, what: str = "features") -> tuple[dict, int]:
    """Saved per-layer features: ``({name: loader}, N)`` where each loader returns that layer's (N, d) float64
    array.

    One ``.npz`` gives one layer per array, in file order; several ``.npy`` files give one layer each (named by
    the file stem), in the order given.  Only the headers are read here: every array must be 2-D (N, d) with the
    same N, else a :class:`FileFormatError` / :class:`InputShapeError` names it.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise InvalidParameterError(f"{what}: give one .npz or one or more .npy files")
    entries: list[tuple[str, tuple, Callable]] = []
    for raw in paths:
        path = _resolve(raw, base)
        if not path.is_file():
            raise FileFormatError(f"{what}: no such file {path}")
        if path.suffix.lower() == ".npz":
            for name, shape, _ in _npz_shapes(path):
                entries.append((name, shape, lambda p=path, n=name: _npz_member(p, n, what)))
        elif path.suffix.lower() == ".npy":
            arr = _read(lambda p=path: np.load(p, mmap_mode="r", allow_pickle=False), path, what)
            entries.append((path.stem, arr.shape, lambda p=path: np.load(p, allow_pickle=False)))
        else:
            raise FileFormatError(f"{what}: {path} must be .npz (one array per layer) or .npy (one layer)")
    if not entries:
        raise FileFormatError(f"{what}: {paths} hold no arrays")
    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"{what}: layer names repeat ({names}); give each layer a distinct name")
    for name, shape, _ in entries:
        if len(shape) != 2:
            raise InputShapeError(f"{what}: layer {name!r} has shape {shape}; features must be 2-D (N points, d "
                                  "dimensions): save H.reshape(len(H), -1) (or pool it) instead")
    n = entries[0][1][0]
    for name, shape, _ in entries:
        if shape[0] != n:
            raise InputShapeError(f"{what}: layer {name!r} has {shape[0]} rows but layer {names[0]!r} has {n}; "
                                  "every layer must describe the same points in the same order")
    return {name: (lambda fn=fn: np.asarray(fn(), np.float64)) for name, _, fn in entries}, int(n)
