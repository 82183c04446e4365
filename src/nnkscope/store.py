"""Results store of a run: Parquet parts per (table, keys), a manifest, read-only SQL over everything.

Layout of a run folder::

    RUN/manifest.json                                  parameters, versions, creation time
    RUN/<table>/<k1>=<v1>/<k2>=<v2>/part.parquet       one part per finished unit of work

Each part carries its key columns, and tables are read from those columns, never from folder names, so a name
comes back exactly as written.  A folder name is an injective encoding of the key's text: bytes outside
``[a-z0-9_.-]`` (UTF-8 of any other character, upper-case letters too, so case-insensitive file systems cannot merge
two names) are written as ``%XX``, and a component longer than the 255-byte file-name limit keeps a prefix plus the
SHA-256 of the text after a ``~``.  Parts are written to a hidden temporary file and renamed, so a part either
exists complete or not at all; a study resumes by skipping the units whose part exists (:meth:`RunStore.has`).
Temporary files left by a killed writer are removed the next time the folder is opened (a live writer holds a lock
on its file, so it is never touched).  The manifest is created without replacing, so of two processes creating the
same folder at once exactly one creates it and the other resumes it, or fails if its parameters differ.

Folders written by nnkscope before this layout (format ``nnkscope.run/1``, names rewritten to ``_``) can still be
read, queried and reported, since every part holds its true key values; they cannot be resumed or extended.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import FileFormatError, InvalidParameterError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; stale temporaries are recognised by age
    fcntl = None

__all__ = ["RunStore"]

_FORMAT = "nnkscope.run/2"
_OLD_FORMATS = ("nnkscope.run/1",)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEEP = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_NAME_MAX = 255  # bytes in one file name on every common file system
_TEMP = re.compile(r"\..+\.[0-9a-f]{32}\.part")  # what _staged (and io.atomic_path) name their temporary files
_OURS = (".part.parquet.", ".manifest.json.")  # temporaries of _staged, locked while their writer lives
_STALE_AGE_S = 3600.0  # an unlocked temporary file (io.atomic_path's, e.g. report.html) this old is abandoned
_ALLOWED_SQL = ("one read-only SELECT statement over the run's tables (WITH ... SELECT, FROM-first, VALUES, "
                "DESCRIBE and SUMMARIZE included); no other statements and no file or network access")


def _versions() -> dict:
    import pyarrow

    from ._version import __version__

    return {"nnkscope": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "pyarrow": pyarrow.__version__}


def _escape(text: str) -> str:
    """Injective, case-insensitively injective, file-name-safe escape of ``text`` (upper-case hex, and a final
    ``.`` escaped because Windows drops it)."""
    out = "".join(chr(b) if b in _KEEP else f"%{b:02X}" for b in text.encode("utf-8"))
    return out[:-1] + "%2E" if out.endswith(".") else out


def _key_text(key: str, value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (str, int, float)):  # bool is an int
        raise InvalidParameterError(f"key {key}={value!r}: key values must be str, int, float or bool, got "
                                    f"{type(value).__name__}; convert it, e.g. str(value)")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParameterError(f"key {key}={value!r} is not valid Unicode text ({exc}); remove the lone "
                                    "surrogates") from exc
    return text


def _component(key: str, text: str) -> str:
    """The folder name of one key: ``key=escaped`` or, beyond 255 bytes, ``key=prefix~sha256``."""
    head = _escape(key) + "="
    body = _escape(text)
    if len(head) + len(body) <= _NAME_MAX:
        return head + body
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    room = _NAME_MAX - len(head) - 1 - len(digest)
    if room < 0:
        raise InvalidParameterError(f"key name {key[:40]!r}... is too long for a folder name; use a shorter name")
    prefix = body[:room]
    cut = prefix.rfind("%")
    if cut > room - 3:  # never end inside a %XX escape: the prefix stays readable
        prefix = prefix[:cut]
    return f"{head}{prefix}~{digest}"  # "~" is always escaped above, so this never equals an unhashed name


def _lock(fd: int, wait: bool) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


@contextmanager
def _staged(path: Path):
    """Yield a new hidden temporary path beside ``path``, locked by this process until the block ends.

    The caller moves it into place inside the block (``os.replace`` or ``os.link``); whatever is left is deleted
    on the way out.  The lock tells :meth:`RunStore._sweep` in another process that the writer is alive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
        _lock(fd, wait=True)
        if _same_file(tmp, fd):
            break
        os.close(fd)  # a sweep took it between creation and lock (it looked abandoned): take a new name
    try:
        if fcntl is None:  # pragma: no cover - Windows cannot rename an open file
            os.close(fd)
            fd = None
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)


def _read_json(path: Path) -> dict:
    """The manifest; a file still being written by the no-link fallback is given a moment to complete."""
    for attempt in range(10):
        try:
            text = path.read_text(encoding="utf-8")
            manifest = json.loads(text)
            if not isinstance(manifest, dict):
                raise ValueError(f"expected a JSON object, got {type(manifest).__name__}")
            return manifest
        except (OSError, ValueError) as exc:
            young = path.exists() and time.time() - path.stat().st_mtime < 2.0
            if attempt == 9 or not young or isinstance(exc, (PermissionError, IsADirectoryError)):
                raise FileFormatError(f"{path} is unreadable or not an nnkscope manifest ({exc}); the run folder "
                                      "is corrupt. Move the folder aside and start the run again") from exc
            time.sleep(0.05)
    raise AssertionError("unreachable")  # pragma: no cover


class RunStore:
    """A run folder (created with ``params`` if new; validated if it exists).

    Parameters
    ----------
    root : path
        The run folder.
    params : dict, optional
        The run's parameters.  A new folder records them; an existing one must have been created with the same
        ones (resume), else :class:`~nnkscope.errors.InvalidParameterError`.
    create : bool
        Create the folder if it has no manifest (default); ``False`` only opens an existing run.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> s = RunStore(tempfile.mkdtemp() + "/run", params={"k": 10})
    >>> _ = s.write("points", pd.DataFrame({"x": [1.0, 2.0]}), layer="blocks/0 attn", epoch=3)
    >>> s.has("points", layer="blocks/0 attn", epoch=3), s.has("points", layer="blocks_0_attn", epoch=3)
    (True, False)
    >>> s.query("SELECT layer, epoch, sum(x) AS s FROM points GROUP BY ALL").to_dict("records")
    [{'layer': 'blocks/0 attn', 'epoch': 3, 's': 3.0}]
    """

    def __init__(self, root, params: dict | None = None, create: bool = True):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.exists():
            if not create:
                raise FileFormatError(f"{self.root} has no manifest.json: not an nnkscope run folder")
            if self._create(manifest, params):
                self._sweep()  # a creator killed before this one may have left its temporary manifest
                return
        self.manifest = _read_json(manifest)
        fmt = self.manifest.get("format")
        if fmt != _FORMAT and fmt not in _OLD_FORMATS:
            raise FileFormatError(f"{self.root} is not an nnkscope run folder (format {fmt!r}, expected "
                                  f"{_FORMAT!r})")
        if params is not None:
            self._check_writable()
            self._check_version()
            if self.manifest.get("params") != json.loads(json.dumps(params, default=str)):
                raise InvalidParameterError(
                    f"{self.root} was created with other parameters {self.manifest.get('params')}; resume with "
                    "the same parameters or choose a new run folder")
        self._sweep()

    def _create(self, manifest: Path, params: dict | None) -> bool:
        """Create the manifest unless another process does first; True if this call created it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileFormatError(f"cannot create the run folder {self.root} ({exc}); choose a writable path "
                                  "that is not a file") from exc
        foreign = [p.name for p in self.root.iterdir() if p.name != "manifest.json" and not _TEMP.fullmatch(p.name)]
        if foreign and not manifest.exists():  # a concurrent creator's own tables appear only after its manifest
            raise FileFormatError(f"{self.root} exists, is not empty and has no manifest.json: not an nnkscope "
                                  "run folder. Choose an empty or new folder")
        record = {"format": _FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": _versions(),
                  "params": params or {}}
        text = json.dumps(record, indent=1, default=str)
        try:
            with _staged(manifest) as tmp:
                tmp.write_text(text, encoding="utf-8")
                try:
                    os.link(tmp, manifest)  # atomic and never replaces: of concurrent creators exactly one wins
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
                        raise
                    try:  # a file system without hard links: exclusive creation, then the content
                        fd = os.open(manifest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
                    except FileExistsError:
                        return False
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(text)
        except OSError as exc:
            raise FileFormatError(f"cannot create {manifest} ({exc}); choose a writable run folder") from exc
        self.manifest = json.loads(text)
        return True

    @property
    def writable(self) -> bool:
        """Whether parts can be added (False for folders of the old ``nnkscope.run/1`` layout)."""
        return self.manifest.get("format") == _FORMAT

    def _check_writable(self) -> None:
        if not self.writable:
            raise FileFormatError(
                f"{self.root} was written by an older nnkscope (layout {self.manifest.get('format')!r}, whose folder "
                "names could merge different model or layer names); it can still be read, queried and reported, "
                "but not resumed or extended. Start the run again in a new folder")

    def _check_version(self) -> None:
        """Resume only with the nnkscope that wrote the run: another version may compute other numbers."""
        from ._version import __version__

        wrote = (self.manifest.get("versions") or {}).get("nnkscope")
        if wrote != __version__:
            raise InvalidParameterError(
                f"{self.root} was written by nnkscope {wrote}; this is {__version__}, whose results may differ, so "
                "the run is not resumed. Start it again in a new folder (the old one can still be read, queried "
                "and reported)")

    def _sweep(self) -> None:
        """Delete temporary files of writers that died (killed mid-save).

        A live part or manifest writer holds a lock on its file, so only abandoned ones go; other temporaries
        (``io.atomic_path``'s, e.g. a report being written into the folder) hold none and go once an hour old.
        """
        for tmp in self.root.rglob(".*.part"):
            if not _TEMP.fullmatch(tmp.name) or not tmp.is_file():
                continue
            try:
                if fcntl is None or not tmp.name.startswith(_OURS):
                    if time.time() - tmp.stat().st_mtime > _STALE_AGE_S:
                        tmp.unlink()
                    continue
                fd = os.open(tmp, os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile, or not ours to delete (read-only access to someone else's run)
            try:
                if _lock(fd, wait=False) and _same_file(tmp, fd):
                    tmp.unlink()
            except OSError:
                pass
            finally:
                os.close(fd)

    def _part(self, table: str, keys: dict) -> Path:
        if not isinstance(table, str) or not _IDENT.fullmatch(table):
            raise InvalidParameterError(f"table names must be identifiers ([A-Za-z_][A-Za-z0-9_]*); got {table!r}")
        path = self.root / table
        for key, value in keys.items():
            if not _IDENT.fullmatch(key):
                raise InvalidParameterError(f"key names must be identifiers (they become columns); got {key!r}")
            path = path / _component(key, _key_text(key, value))
        return path / "part.parquet"

    def has(self, table: str, **keys) -> bool:
        """Whether the part for these keys was written completely (resume check)."""
        self._check_writable()
        return self._part(table, keys).exists()

    def write(self, table: str, df, **keys) -> Path:
        """Write one part atomically; the key columns are added to the rows.

        Keys are compared by their text: ``epoch=1`` and ``epoch="1"`` name the same part (keep one type per key).
        """
        self._check_writable()
        path = self._part(table, keys)
        clash = [p.name for p in self.root.iterdir() if p.name.lower() == table.lower() and p.name != table]
        if clash:  # SQL names are case-insensitive, and so are some file systems
            raise InvalidParameterError(f"table {table!r} differs from the existing table {clash[0]!r} only in "
                                        "letter case; use the same name or a different one")
        df = df.copy()
        for key, value in keys.items():
            if key in df.columns:
                raise InvalidParameterError(f"column {key!r} clashes with a key of the same name")
            df[key] = value
        with _staged(path) as tmp:
            df.to_parquet(str(tmp), index=False)
            os.replace(tmp, path)
        return path

    def _folders(self) -> tuple[list[str], list[str]]:
        """(tables, skipped): folders holding parts whose names are identifiers, and the other such folders."""
        tables, skipped, seen = [], [], set()
        for p in sorted(self.root.iterdir()):
            if not p.is_dir() or p.name.startswith(".") or not next(p.rglob("part.parquet"), None):
                continue
            if _IDENT.fullmatch(p.name) and p.name.lower() not in seen:
                tables.append(p.name)
                seen.add(p.name.lower())
            else:
                skipped.append(p.name)
        return tables, skipped

    def tables(self) -> list[str]:
        """The tables (folders named as identifiers that hold at least one part), sorted."""
        return self._folders()[0]

    def _parts(self, table: str) -> list[Path]:
        if not isinstance(table, str) or not _IDENT.fullmatch(table):
            raise InvalidParameterError(f"table names must be identifiers; got {table!r}. Tables: {self.tables()}")
        parts = sorted((self.root / table).rglob("part.parquet"))
        if not parts:
            raise InvalidParameterError(f"{self.root} has no table {table!r}; it has {self.tables()}")
        return parts

    def read(self, table: str):
        """All parts of a table as one DataFrame (parts sorted by path, so the order is reproducible)."""
        import pandas as pd

        frames = []
        for p in self._parts(table):
            try:
                with open(p, "rb") as f:  # a file object: no partition columns are ever inferred from the path
                    frames.append(pd.read_parquet(f))
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"{p} is corrupt ({exc}); delete it and resume the run to recompute it") \
                    from exc
        return pd.concat(frames, ignore_index=True)

    def _dataset(self, table: str):
        """A lazy dataset over a table's parts (columns missing from some parts are null; numbers are widened)."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        parts = self._parts(table)
        schemas = []
        for p in parts:
            try:
                schemas.append(pq.read_schema(p))
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"{p} is corrupt ({exc}); delete it and resume the run to recompute it") \
                    from exc
        try:
            try:
                schema = pa.unify_schemas(schemas, promote_options="permissive")
            except TypeError:  # pyarrow < 14: no type promotion, parts must agree exactly
                schema = pa.unify_schemas(schemas)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise FileFormatError(f"the parts of table {table!r} in {self.root} disagree on column types ({exc}); "
                                  "delete the odd parts and resume the run") from exc
        return ds.dataset([str(p) for p in parts], schema=schema, format="parquet")

    def query(self, sql: str, params: list | None = None):
        """Run one read-only SQL ``SELECT`` over the run's tables and return a DataFrame.

        Every table is a view of the union of its parts.  Only a single SELECT statement is accepted (``WITH``
        and DuckDB's FROM-first form included), with ``?`` placeholders filled from ``params``; the database
        cannot read or write files, reach the network, load extensions or change its settings, so a query can
        neither see anything but the run nor modify it.  Anything else raises
        :class:`~nnkscope.errors.InvalidParameterError`.
        """
        import duckdb

        tables, skipped = self._folders()
        listing = f"Tables: {tables}" + (f"; folders skipped because their names are not table names: {skipped}"
                                         if skipped else "")
        if skipped:
            warnings.warn(f"{self.root}: folders {skipped} are not valid table names and are not queryable",
                          stacklevel=2)
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidParameterError(f"the SQL query is empty. Allowed: {_ALLOWED_SQL}, e.g. "
                                        f"'SELECT * FROM {tables[0] if tables else 'points'} LIMIT 5'. {listing}")
        spill = tempfile.mkdtemp(prefix="nnkscope-query-")  # DuckDB's own spill space, outside the run
        con = duckdb.connect(":memory:")
        try:
            statements = con.extract_statements(sql)
            if not statements:
                raise InvalidParameterError(f"the SQL query has no statement. Allowed: {_ALLOWED_SQL}. {listing}")
            kinds = [s.type.name if hasattr(s.type, "name") else str(s.type) for s in statements]
            if len(statements) != 1 or kinds[0] != "SELECT":
                raise InvalidParameterError(f"query refused: got {len(statements)} statement(s) of type "
                                            f"{', '.join(kinds)}. Allowed: {_ALLOWED_SQL}. {listing}")
            for table in tables:
                con.register(table, self._dataset(table))
            quoted = spill.replace("'", "''")
            for setting in (f"temp_directory = '{quoted}'", "python_enable_replacements = false",
                            "autoinstall_known_extensions = false", "autoload_known_extensions = false",
                            "allow_community_extensions = false", "enable_external_access = false",
                            "lock_configuration = true"):
                con.execute(f"SET {setting}")
            return con.execute(sql, params).df()
        except (duckdb.PermissionException, duckdb.ParserException) as exc:
            raise InvalidParameterError(f"query refused: {exc}. Allowed: {_ALLOWED_SQL}. {listing}") from exc
        except duckdb.Error as exc:
            raise InvalidParameterError(f"query failed: {exc}. {listing}") from exc
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
