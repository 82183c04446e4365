"""Results store of a run: Parquet parts per (table, keys), a manifest, DuckDB SQL over everything.

Layout of a run folder::

    RUN/manifest.json                                  parameters, versions, creation time
    RUN/<table>/<k1>=<v1>/<k2>=<v2>/part.parquet       one part per finished unit of work

Each part carries its key columns, so a table is the union of its parts and SQL needs no path parsing.  Parts
are written to a temporary file and renamed, so a part either exists complete or not at all; a study resumes by
skipping the units whose part exists (:meth:`RunStore.has`).
"""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path

from .errors import FileFormatError, InvalidParameterError
from .io import atomic_path

__all__ = ["RunStore"]

_FORMAT = "nnkscope.run/1"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _versions() -> dict:
    import numpy
    import pyarrow

    from ._version import __version__

    return {"nnkscope": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}


class RunStore:
    """A run folder (created with ``params`` if new; validated if it exists).

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> s = RunStore(tempfile.mkdtemp() + "/run", params={"k": 10})
    >>> _ = s.write("points", pd.DataFrame({"x": [1.0, 2.0]}), layer="fc1", epoch=3)
    >>> s.has("points", layer="fc1", epoch=3), s.has("points", layer="fc2", epoch=3)
    (True, False)
    >>> s.query("SELECT layer, epoch, sum(x) AS s FROM points GROUP BY ALL").to_dict("records")
    [{'layer': 'fc1', 'epoch': 3, 's': 3.0}]
    """

    def __init__(self, root, params: dict | None = None, create: bool = True):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if manifest.exists():
            try:
                self.manifest = json.loads(manifest.read_text())
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"{manifest} is unreadable or not JSON ({exc}); the run folder is corrupt. "
                                      "Move it aside and start the run again") from exc
            if self.manifest.get("format") != _FORMAT:
                raise FileFormatError(f"{self.root} is not an nnkscope run folder (format "
                                      f"{self.manifest.get('format')!r}, expected {_FORMAT!r})")
            if params is not None and self.manifest.get("params") != json.loads(json.dumps(params, default=str)):
                raise InvalidParameterError(
                    f"{self.root} was created with other parameters {self.manifest.get('params')}; resume with "
                    "the same parameters or choose a new run folder")
        elif create:
            if self.root.exists() and any(self.root.iterdir()):
                raise FileFormatError(f"{self.root} exists, is not empty and has no manifest.json: not an nnkscope "
                                      "run folder. Choose an empty or new folder")
            self.manifest = {"format": _FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "versions": _versions(), "params": params or {}}
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps(self.manifest, indent=1, default=str))
        else:
            raise FileFormatError(f"{self.root} has no manifest.json: not an nnkscope run folder")

    def _part(self, table: str, keys: dict) -> Path:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise InvalidParameterError(f"table names must be identifiers; got {table!r}")
        path = self.root / table
        for key, value in keys.items():
            path = path / f"{key}={_SAFE.sub('_', str(value))}"
        return path / "part.parquet"

    def has(self, table: str, **keys) -> bool:
        """Whether the part for these keys was written completely (resume check)."""
        return self._part(table, keys).exists()

    def write(self, table: str, df, **keys) -> Path:
        """Write one part atomically; the key columns are added to the rows."""
        df = df.copy()
        for key, value in keys.items():
            if key in df.columns:
                raise InvalidParameterError(f"column {key!r} clashes with a key of the same name")
            df[key] = value
        path = self._part(table, keys)
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
        return path

    def tables(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and list(p.rglob("part.parquet")))

    def read(self, table: str):
        """All parts of a table as one DataFrame (parts sorted by path, so the order is reproducible)."""
        import pandas as pd

        parts = sorted((self.root / table).rglob("part.parquet"))
        if not parts:
            raise InvalidParameterError(f"{self.root} has no table {table!r}; it has {self.tables()}")
        frames = []
        for p in parts:
            try:
                frames.append(pd.read_parquet(p))
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"{p} is corrupt ({exc}); delete it and resume the run to recompute it") \
                    from exc
        return pd.concat(frames, ignore_index=True)

    def query(self, sql: str):
        """Run DuckDB SQL with one view per table (the union of its parts)."""
        import duckdb

        con = duckdb.connect()
        try:
            for table in self.tables():
                pattern = str(self.root / table / "**" / "part.parquet").replace("'", "''")
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', union_by_name=true)")
            return con.execute(sql).df()
        except duckdb.Error as exc:
            raise InvalidParameterError(f"query failed: {exc}. Tables: {self.tables()}") from exc
        finally:
            con.close()
