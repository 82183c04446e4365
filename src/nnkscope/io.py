"""Files in and out: embeddings, row sources read by block, column tables (Parquet), part stores, atomic writes.

Embeddings: ``.npy`` (memory-mapped), ``.npz`` (one array, or ``key``), ``.parquet`` (a fixed-size-list column,
or all numeric columns), zarr (a ``.zarr`` directory or store holding one array, or ``key``).
Every write goes to a temporary file in the target directory and is renamed into place, so a crash never leaves
a half-written file under the final name.

A *row source* is an (N, d) array read by row ranges -- in memory (:class:`ArraySource`) or on disk
(:class:`RowSource`) -- and a *part store* keeps the per-block results of a pipeline stage, in memory
(:class:`MemoryParts`) or as Parquet files (:class:`DiskParts`).  The graph and metric pipeline is written once
against these two interfaces, so the in-memory call is the blocked computation with one block.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import uuid
import zipfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._validate import as_points
from .errors import FileFormatError, InputShapeError, InvalidParameterError

__all__ = ["load_embeddings", "atomic_path", "check_output", "check_output_dir", "write_columns", "read_columns",
           "write_npy", "load_npz_arrays", "RowSource", "ArraySource", "as_source", "DiskParts", "MemoryParts",
           "fingerprint"]


STALE_PART_SECONDS = 3600  # a temporary file untouched this long belongs to a dead writer (see atomic_path)


@lru_cache(maxsize=1)
def _host_id() -> str:
    """8 hex digits naming this host *and* PID namespace: a PID in a temporary file's name is only meaningful to
    processes that see the same PIDs (same machine, same container)."""
    import socket

    parts = [socket.gethostname()]
    for p in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with suppress(OSError):
            parts.append(os.readlink(p) if p.endswith("/pid") else Path(p).read_text().strip())
    return hashlib.blake2b("|".join(parts).encode(), digest_size=4).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell): assume alive
    return True


_TEMP_NAME = re.compile(r"\.(.+)\.([0-9a-f]{8})([0-9a-f]{8})[0-9a-f]{16}\.part")  # target, PID, host, random
_LISTING_TTL = 60.0  # seconds a folder's listing of temporary files is reused by this process
_listings: dict[str, tuple[float, dict[str, list[str]]]] = {}
_listings_lock = threading.Lock()


def _temporaries_of(path: Path) -> list[str]:
    """Names of the temporary files of ``path`` in its folder, not yet looked at by this process.

    A folder is listed at most once a minute per process (then the names are handed out target by target): a
    part folder of 10,000 blocks would otherwise be listed at every write, quadratic in the number of blocks.
    """
    import time

    folder, now = str(path.parent), time.monotonic()
    with _listings_lock:
        entry = _listings.get(folder)
        if entry is None or now - entry[0] > _LISTING_TTL:
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            by_target: dict[str, list[str]] = {}
            for name in names:
                m = _TEMP_NAME.fullmatch(name) if name.endswith(".part") else None
                if m:
                    by_target.setdefault(m.group(1), []).append(name)
            if len(_listings) > 4096:  # a bound, not an LRU: re-listing costs one listdir
                _listings.clear()
            entry = _listings[folder] = (now, by_target)
        return entry[1].pop(path.name, [])


def _remove_stale_parts(path: Path) -> list[Path]:
    """Delete temporary files of ``path`` left by writers that died without cleaning up (SIGKILL, power loss).

    A ``.part`` file is stale when its writer ran on this host (same PID namespace) and that PID is gone, or when
    it has not been modified for :data:`STALE_PART_SECONDS` (any writer, also on another host of a shared file
    system, or a name from before PIDs were recorded): a live writer keeps writing, so its file stays fresh.  A
    live writer of the same target is never touched, so concurrent writers stay safe.  Orphans that appear after
    this process listed the folder are found at its next listing (a minute later) or by the next process.
    """
    import time

    removed, now = [], time.time()
    for name in _temporaries_of(path):
        tmp = path.parent / name
        m = _TEMP_NAME.fullmatch(name)
        try:
            stale = now - tmp.stat().st_mtime > STALE_PART_SECONDS or (
                m.group(3) == _host_id() and not _pid_alive(int(m.group(2), 16)))
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # vanished meanwhile (its writer finished) or not ours to delete: leave it
            continue
    return removed


def _make_parent(path: Path, flag: str | None = None) -> None:
    """Create ``path``'s folder, or raise a FileFormatError naming the obstacle."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(_unwritable_message(path, flag, exc)) from exc


def _unwritable_message(path: Path, flag: str | None, exc: OSError | None = None) -> str:
    """Why ``path`` cannot be written (a file where a folder should be, no permission), with the fix."""
    where = f"{flag} {path}" if flag else str(path)
    anc = path.parent
    while not (anc.exists() or anc.is_symlink()) and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        return (f"{where}: cannot create it because {anc} is a file, not a folder; choose an output path whose "
                "folders are folders")
    why = exc.strerror if exc is not None and exc.strerror else "permission denied or read-only file system"
    return f"{where}: cannot write into {anc} ({why}); choose a folder you can write to"


def _temp_name(path: Path) -> Path:
    """A new hidden temporary path beside ``path`` naming its writer (PID, host) for :func:`_remove_stale_parts`."""
    return path.parent / f".{path.name}.{os.getpid() & 0xFFFFFFFF:08x}{_host_id()}{uuid.uuid4().hex[:16]}.part"


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on failure delete it.

    The temporary file is ``.<name>.<32 hex digits>.part``: the writer's PID (8), its host (8, see
    :func:`_host_id`) and 16 random digits -- the same shape as before PIDs were recorded, which RunStore's sweep
    recognises.  Stale ones of the same target left by killed writers are deleted first (see
    :func:`_remove_stale_parts` for when a file counts as stale).
    """
    path = Path(path)
    _make_parent(path)
    _remove_stale_parts(path)
    # created like any new file (0666 minus the umask; mkstemp would make it 0600, unreadable to others), with
    # O_EXCL and a random name so concurrent writers never share a temporary file
    tmp = _temp_name(path)
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as exc:
        raise FileFormatError(_unwritable_message(path, None, exc)) from exc
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(path, suffixes=(), *, inputs=(), flag: str | None = "-o", what: str = "the output") -> Path:
    """Check an output file before any work is done: refuse what would fail or destroy data only at the end.

    Refused, each with the fix: an existing folder, a suffix not in ``suffixes`` (case-insensitive; empty: any),
    the same file as one of ``inputs`` (also through symbolic or hard links), and a location that cannot be
    written (a file in place of a folder, no permission, read-only).  Nothing is created: a missing folder is
    only checked to be creatable (it is made when the output is written).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); np.save(d / "x.npy", np.eye(2))
    >>> check_output(d / "new" / "g.npz", (".npz", ".parquet"), inputs=[d / "x.npy"]).name
    'g.npz'
    >>> check_output(d / "x.npy", (".npy",), inputs=[d / "x.npy"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: -o .../x.npy is the input .../x.npy: writing it would destroy ...
    """
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        example = path / f"out{suffixes[0] if suffixes else ''}"
        raise InvalidParameterError(f"{where} is a folder; give a file name, e.g. {example}")
    if suffixes and path.suffix.lower() not in {s.lower() for s in suffixes}:
        got = repr(path.suffix) if path.suffix else "no extension"
        raise InvalidParameterError(f"{where}: {what} is written as {' or '.join(suffixes)}; got {got}. Name the "
                                    f"file e.g. {path.with_suffix(suffixes[0]).name}")
    for inp in inputs:
        if inp is not None and _same_file(path, Path(inp)):
            raise InvalidParameterError(f"{where} is the input {inp}: writing it would destroy the input. Choose "
                                        "another output name")
    _check_writable(path, flag)
    return path


def check_output_dir(path, *, flag: str = "--out", what: str = "run folder") -> Path:
    """Check a folder that a command will create or fill (a run folder): it may exist as a folder or be
    creatable, never a file; it must be writable.  Nothing is created.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "f.txt"; _ = f.write_text("x")
    >>> check_output_dir(f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nnkscope.errors.InvalidParameterError: --out .../f.txt is a file; give a folder for the run folder ...
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidParameterError(f"{flag} {path} is a file; give a folder for the {what} (it is created if new)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise FileFormatError(f"{flag} {path}: the folder is not writable; choose a folder you can write to")
        return path
    _check_writable(path, flag)
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether writing ``a`` would replace ``b``: same resolved path (symbolic links) or same inode (hard links)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare inodes below
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): not the same file
        return False


def _check_writable(path: Path, flag: str | None) -> None:
    """Raise if no file can be created at ``path`` (probe the existing folder; else the nearest existing
    ancestor must be a writable folder, in which the missing folders will be created)."""
    parent = path.parent
    if parent.is_dir():
        probe = _temp_name(path)
        try:
            os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except OSError as exc:
            raise FileFormatError(_unwritable_message(path, flag, exc)) from exc
        probe.unlink(missing_ok=True)
        return
    anc = parent
    while not (anc.exists() or anc.is_symlink()) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir() or not os.access(anc, os.W_OK | os.X_OK):
        raise FileFormatError(_unwritable_message(path, flag))


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
    if suffix == ".npy" and key is not None:
        raise InvalidParameterError(f"{path} is a .npy file, which holds one array: drop key={key!r} (CLI: --key); "
                                    "keys choose an array inside .npz, .parquet or zarr inputs")
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


def load_npz_arrays(path) -> list[tuple[str, np.ndarray]]:
    """Every array of an ``.npz`` file in stored order as ``(name, (N, d) array)``, each validated as embeddings
    (one array per layer, as ``nnkscope separation`` reads them).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "h.npz"; np.savez(p, a=np.eye(2), b=np.ones((2, 3)))
    >>> [(name, a.shape) for name, a in load_npz_arrays(p)]
    [('a', (2, 2)), ('b', (2, 3))]
    """
    path = Path(path)
    _check_exists(path)
    with _reading(path, "arrays", "Re-export it (e.g. np.savez(path, layer0=H0, layer1=H1, ...))"):
        with np.load(path, allow_pickle=False) as z:
            named = [(name, z[name]) for name in z.files]
    if not named:
        raise FileFormatError(f"{path} holds no arrays; save one per layer, e.g. np.savez(path, layer0=H0, ...)")
    return [(name, as_points(arr, f"array {name!r} in {path.name}")) for name, arr in named]


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


def __getattr__(name: str):
    """Names that moved up a layer stay importable from here (``nnkscope.io.save_graph``)."""
    from ._compat import moved_name

    return moved_name(__name__, name)


# --------------------------------------------------------------------------------------------------------------
# column tables: one row per node, (k,)-lists for per-candidate arrays (graph files and pipeline parts alike)


def write_npy(path, arr: np.ndarray) -> Path:
    """Save one array as a ``.npy`` file atomically (readers never see a partial file; see :func:`atomic_path`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_npy(pathlib.Path(tempfile.mkdtemp()) / "a.npy", np.arange(3))
    >>> np.load(p).tolist()
    [0, 1, 2]
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)
    return path


def write_columns(path, columns: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Write 1-D and 2-D arrays as one Parquet table atomically (2-D arrays become fixed-size-list columns).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
    >>> _ = write_columns(p, {"node": np.arange(2), "theta": np.eye(2)})
    >>> read_columns(p)["theta"].tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, a in columns.items():
        a = np.ascontiguousarray(a)
        arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1]) if a.ndim == 2 else a
    table = pa.table(arrays)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:  # dictionary encoding of float lists costs 4x the time for no size gain
        pq.write_table(table, tmp, compression="zstd", use_dictionary=False)
    return Path(path)


def read_columns(path, columns: list[str] | None = None, *, with_metadata: bool = False,
                 fix: str = "delete it and run again to recompute it"):
    """Read a table written by :func:`write_columns` back into arrays (``(arrays, metadata)`` on request)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FileFormatError(f"{path}: unreadable table ({exc}); the file may be truncated or corrupt: {fix}") \
            from exc
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    if with_metadata:
        return out, {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return out


# --------------------------------------------------------------------------------------------------------------
# row sources


@lru_cache(maxsize=8)
def _open(path: str, key: str | None):
    """The array behind a source, opened lazily once per process (memory-mapped .npy or a zarr array)."""
    p = Path(path)
    _check_exists(p)
    try:
        if p.suffix.lower() == ".npy":
            return np.load(p, mmap_mode="r", allow_pickle=False)
        import zarr

        node = zarr.open(str(p), mode="r")
        if isinstance(node, zarr.Array):
            if key is not None:
                raise FileFormatError(f"{p} holds a single array; drop key={key!r} (CLI: --key)")
            return node
        arrays = dict(node.arrays())
        if key is None and len(arrays) == 1:
            return next(iter(arrays.values()))
        if key not in arrays:
            raise FileFormatError(f"{p} holds arrays {sorted(arrays)}; choose one with key=... (CLI: --key)")
        return arrays[key]
    except FileFormatError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{p}: could not open it as .npy or zarr ({type(exc).__name__}: {exc}); the file may "
                              "be truncated or corrupt. Re-export it (np.save or zarr)") from exc


class _Rows:
    """What the pipeline needs of a source: shape, row ranges, gathered rows, a content fingerprint."""

    def _array(self):
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        arr = self._array()
        if len(arr.shape) != 2:
            raise InputShapeError(f"{self.name} holds an array of shape {tuple(arr.shape)}; embeddings must be 2-D")
        return int(arr.shape[0]), int(arr.shape[1])

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi``, validated (finite, real, in range) like any in-memory input."""
        return as_points(np.asarray(self._array()[lo:hi]), f"rows {lo}..{hi - 1} of {self.name}")

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given (sorted, unique) rows."""
        arr = self._array()
        block = arr[rows] if isinstance(arr, np.ndarray) else arr.get_orthogonal_selection((rows, slice(None)))
        return as_points(np.asarray(block), f"gathered rows of {self.name}")

    def gather(self, lo: int, hi: int, candidates: np.ndarray):
        """``(Q, Z, local)``: the block's rows, an array holding them and every candidate row, and the candidates
        re-indexed into ``Z``.  Rows ``lo:hi`` come first in ``Z``, so block-local positions are valid in ``Z``."""
        Q = self.read(lo, hi)
        uniq = np.unique(candidates)
        return Q, np.concatenate([Q, self.take(uniq)]), (hi - lo) + np.searchsorted(uniq, candidates)

    def fingerprint(self, block_rows: int = 65536) -> str:
        """BLAKE2 hash of the shape, dtype and every row's bytes (read by blocks): the identity of the content."""
        n, d = self.shape
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{n}x{d}".encode())
        for lo in range(0, n, block_rows):
            block = np.ascontiguousarray(self._array()[lo:min(n, lo + block_rows)])
            h.update(str(block.dtype).encode())
            h.update(memoryview(block).cast("B"))  # the same bytes as tobytes(), without copying the block
        return h.hexdigest()


@dataclass(frozen=True)
class RowSource(_Rows):
    """An (N, d) array on disk read by row ranges: a ``.npy`` file (memory-mapped) or a zarr array (row chunks).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"; np.save(p, np.arange(12.0).reshape(4, 3))
    >>> src = RowSource(str(p)); src.shape, src.read(1, 3)[:, 0].tolist()
    ((4, 3), [3.0, 6.0])
    """

    path: str
    key: str | None = None

    def __post_init__(self):
        if self.key is not None and Path(self.path).suffix.lower() == ".npy":
            raise InvalidParameterError(f"{self.path} is a .npy file, which holds one array: drop key={self.key!r} "
                                        "(CLI: --key); keys choose an array inside .npz or zarr inputs")

    @property
    def name(self) -> str:
        return str(self.path)

    def _array(self):
        return _open(self.path, self.key)


@dataclass(frozen=True, eq=False)
class ArraySource(_Rows):
    """An (N, d) array in memory seen as a row source; gathering needs no copy (candidates index ``X`` itself)."""

    X: np.ndarray
    name: str = "X"

    def _array(self):
        return self.X

    def read(self, lo: int, hi: int) -> np.ndarray:
        return self.X[lo:hi]  # validated once, when the source was made

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.X[rows]

    def gather(self, lo: int, hi: int, candidates: np.ndarray):
        Q = self.X if (lo, hi) == (0, len(self.X)) else self.X[lo:hi]
        return Q, self.X, candidates


def as_source(data, key: str | None = None) -> _Rows:
    """A row source from an array (validated), a path (``.npy`` or zarr) or an existing source."""
    if isinstance(data, _Rows):
        return data
    if isinstance(data, (str, os.PathLike)):
        return RowSource(str(data), key)
    return ArraySource(as_points(data))


def fingerprint(X: np.ndarray) -> str:
    """Content fingerprint of an in-memory array (see :meth:`RowSource.fingerprint`).

    Examples
    --------
    >>> a, b = fingerprint(np.zeros((2, 3))), fingerprint(np.ones((2, 3)))
    >>> a == fingerprint(np.zeros((2, 3))), a == b
    (True, False)
    """
    return ArraySource(np.asarray(X)).fingerprint()


# --------------------------------------------------------------------------------------------------------------
# part stores: per-block results of pipeline stages


@dataclass(frozen=True)
class DiskParts:
    """Parts as files under ``root``: ``<stage>/part-<block>.parquet`` (columns) or ``.npy`` (arrays)."""

    root: str

    def _path(self, stage: str, b: int, suffix: str = ".parquet") -> Path:
        return Path(self.root) / stage / f"part-{b:06d}{suffix}"

    def has(self, stage: str, b: int) -> bool:
        return self._path(stage, b).exists() or self._path(stage, b, ".npy").exists()

    def write(self, stage: str, b: int, columns: dict[str, np.ndarray]) -> None:
        write_columns(self._path(stage, b), columns)

    def read(self, stage: str, b: int, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        return read_columns(self._path(stage, b), columns)

    def write_array(self, stage: str, b: int, arr: np.ndarray) -> None:
        write_npy(self._path(stage, b, ".npy"), arr)

    def read_array(self, stage: str, b: int) -> np.ndarray:
        return np.load(self._path(stage, b, ".npy"), mmap_mode="r")

    def memo(self, key, make):
        """``make()``: parts on disk may be read by tasks in other processes, so nothing is kept in memory."""
        return make()

    def write_index(self, s: int, index) -> None:
        import faiss

        with atomic_path(self._path("index", s, ".faiss")) as tmp:
            faiss.write_index(index, str(tmp))

    def has_index(self, s: int) -> bool:
        return self._path("index", s, ".faiss").exists()

    def read_index(self, s: int):
        return _read_index(str(self._path("index", s, ".faiss")))

    def remove(self, stage: str) -> None:
        shutil.rmtree(Path(self.root) / stage, ignore_errors=True)

    def describe(self, stage: str) -> str:
        return str(Path(self.root) / stage)


@lru_cache(maxsize=2)
def _read_index(path: str):
    import faiss

    return faiss.read_index(path)


@dataclass(frozen=True, eq=False)
class MemoryParts:
    """Parts held in this process (the in-memory pipeline: one block, inline executor)."""

    store: dict = field(default_factory=dict)

    def has(self, stage: str, b: int) -> bool:
        return (stage, b) in self.store

    def write(self, stage: str, b: int, columns: dict[str, np.ndarray]) -> None:
        self.store[(stage, b)] = dict(columns)

    def read(self, stage: str, b: int, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        part = self.store[(stage, b)]
        return dict(part) if columns is None else {c: part[c] for c in columns}

    def write_array(self, stage: str, b: int, arr: np.ndarray) -> None:
        self.store[(stage, b)] = arr

    def read_array(self, stage: str, b: int) -> np.ndarray:
        return self.store[(stage, b)]

    def memo(self, key, make):
        """``make()`` once per ``key`` for this run (kept under the stage ``"memo"`` until removed)."""
        if ("memo", key) not in self.store:
            self.store[("memo", key)] = make()
        return self.store[("memo", key)]

    def write_index(self, s: int, index) -> None:
        self.store[("index", s)] = index

    def has_index(self, s: int) -> bool:
        return ("index", s) in self.store

    def read_index(self, s: int):
        return self.store[("index", s)]

    def remove(self, stage: str) -> None:
        for key in [key for key in self.store if key[0] == stage]:
            del self.store[key]

    def describe(self, stage: str) -> str:
        return f"(in memory) {stage}"
