"""Reading embeddings and reading/writing graphs.

Embeddings: ``.npy`` (memory-mapped), ``.npz`` (one array, or ``key``), ``.parquet`` (a fixed-size-list column,
or all numeric columns), zarr (a ``.zarr`` directory or store holding one array, or ``key``).
Graphs: ``.npz`` or ``.parquet``; both store the (N, k) candidate, weight and distance arrays and the per-node
errors and status verbatim, so a load reproduces the graph bit for bit.  Writes go to a temporary file in the
target directory and are renamed into place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._validate import as_points
from .errors import FileFormatError, InputShapeError

__all__ = ["load_embeddings", "save_graph", "load_graph", "atomic_path"]

_GRAPH_FORMAT = "nnkscope.graph/1"


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # created like any new file (0666 minus the umask; mkstemp would make it 0600, unreadable to others), with
    # O_EXCL and a random name so concurrent writers never share a temporary file
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileFormatError(f"{path}: no such file or directory; check the path")


@contextmanager
def _reading(path: Path, what: str, fix: str):
    """Turn any low-level read failure into a FileFormatError that names the file and the fix."""
    try:
        yield
    except FileFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FileFormatError(f"{path}: could not read {what} ({type(exc).__name__}: {exc}); the file may be "
                              f"truncated or corrupt. {fix}") from exc


def load_embeddings(path, key: str | None = None) -> np.ndarray:
    """Load an (N, d) embedding matrix from ``.npy``, ``.npz``, ``.parquet`` or zarr and validate it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"; np.save(p, np.eye(3, dtype=np.float32))
    >>> load_embeddings(p).shape
    (3, 3)
    """
    path = Path(path)
    _check_exists(path)
    suffix = path.suffix.lower()
    with _reading(path, "embeddings", "Re-export it (e.g. np.save(path, X))"):
        if suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            arr = _load_npz_array(path, key)
        elif suffix in (".parquet", ".pq"):
            arr = _load_parquet_array(path, key)
        elif suffix == ".zarr" or (path.is_dir() and (path / "zarr.json").exists() or (path / ".zarray").exists()):
            arr = _load_zarr_array(path, key)
        else:
            raise FileFormatError(f"{path}: unknown embedding format {suffix!r}; use .npy, .npz, .parquet or .zarr")
    return as_points(arr, f"embeddings in {path.name}")


def _load_npz_array(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        names = list(z.files)
        if key is None:
            if len(names) != 1:
                raise FileFormatError(f"{path} holds arrays {names}; choose one with key=... (CLI: --key)")
            key = names[0]
        if key not in names:
            raise FileFormatError(f"{path} has no array {key!r}; it holds {names}")
        return z[key]


def _load_parquet_array(path: Path, key: str | None) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if key is not None:
        if key not in table.column_names:
            raise FileFormatError(f"{path} has no column {key!r}; it has {table.column_names}")
        table = table.select([key])
    lists = [f.name for f in table.schema if pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type)]
    if lists:
        if len(lists) > 1:
            raise FileFormatError(f"{path} has several list columns {lists}; choose one with key=... (CLI: --key)")
        col = table.column(lists[0]).combine_chunks()
        values = col.flatten().to_numpy(zero_copy_only=False)
        if len(col) and values.size % len(col):
            raise FileFormatError(f"{path}: column {lists[0]!r} has rows of different lengths")
        return values.reshape(len(col), -1)
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    if not numeric:
        raise FileFormatError(f"{path} has no numeric or list column to read as embeddings")
    return np.column_stack([table.column(c).to_numpy() for c in numeric])


def _load_zarr_array(path: Path, key: str | None) -> np.ndarray:
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return node
    arrays = dict(node.arrays())
    if key is None:
        if len(arrays) != 1:
            raise FileFormatError(f"{path} holds arrays {sorted(arrays)}; choose one with key=... (CLI: --key)")
        key = next(iter(arrays))
    if key not in arrays:
        raise FileFormatError(f"{path} has no array {key!r}; it holds {sorted(arrays)}")
    return arrays[key][...]


# --------------------------------------------------------------------------------------------------------------
# graphs


def save_graph(graph, path) -> Path:
    """Write an :class:`~nnkscope.graph.NNKGraph` to ``.npz`` or ``.parquet`` atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    meta = json.dumps({"format": _GRAPH_FORMAT, "params": graph.params}, sort_keys=True, default=str)
    arrays = {"candidates": graph.candidates, "theta": graph.theta, "errors": graph.errors, "status": graph.status}
    if graph.distances is not None:
        arrays["distances"] = graph.distances
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.array(meta), **arrays)
        elif suffix in (".parquet", ".pq"):
            _write_graph_parquet(tmp, arrays, meta)
        else:
            raise FileFormatError(f"{path}: graphs are saved as .npz or .parquet; got {suffix!r}")
    return path


def _write_graph_parquet(tmp: Path, arrays: dict, meta: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, k = arrays["candidates"].shape
    cols = {"node": pa.array(np.arange(n, dtype=np.int64))}
    for name, arr in arrays.items():
        if arr.ndim == 2:
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), k)
        else:
            cols[name] = pa.array(arr)
    table = pa.table(cols).replace_schema_metadata({"nnkscope": meta})
    pq.write_table(table, tmp)


def load_graph(path):
    """Read a graph written by :func:`save_graph` (raises :class:`FileFormatError` on anything else)."""
    from .graph import NNKGraph

    path = Path(path)
    _check_exists(path)
    suffix = path.suffix.lower()
    with _reading(path, "the graph", "Rebuild it with nnkscope.nnk_graph(...).save(path) or `nnkscope graph`"):
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "meta" not in z.files:
                    raise FileFormatError(f"{path} is an .npz but not an nnkscope graph (no 'meta' entry)")
                meta = json.loads(str(z["meta"]))
                arrays = {name: z[name] for name in z.files if name != "meta"}
        elif suffix in (".parquet", ".pq"):
            meta, arrays = _read_graph_parquet(path)
        else:
            raise FileFormatError(f"{path}: graphs are read from .npz or .parquet; got {suffix!r}")
    if meta.get("format") != _GRAPH_FORMAT:
        raise FileFormatError(f"{path}: unknown graph format {meta.get('format')!r}; expected {_GRAPH_FORMAT!r}")
    missing = {"candidates", "theta", "errors", "status"} - set(arrays)
    if missing:
        raise FileFormatError(f"{path}: graph file lacks {sorted(missing)}; rebuild it")
    try:
        return NNKGraph(arrays["candidates"], arrays["theta"], arrays["errors"], arrays["status"],
                        arrays.get("distances"), meta["params"])
    except InputShapeError as exc:
        raise FileFormatError(f"{path}: inconsistent graph arrays ({exc}); rebuild it") from exc


def _read_graph_parquet(path: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"nnkscope")
    if raw is None:
        raise FileFormatError(f"{path} is a Parquet file but not an nnkscope graph (no 'nnkscope' metadata)")
    meta = json.loads(raw)
    arrays = {}
    for name in table.column_names:
        if name == "node":
            continue
        col = table.column(name).combine_chunks()
        if hasattr(col.type, "list_size"):
            arrays[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        else:
            arrays[name] = col.to_numpy(zero_copy_only=False)
    return meta, arrays
