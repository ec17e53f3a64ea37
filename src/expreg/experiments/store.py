"""The result table: one row per run, Parquet files written atomically.

Layout under an experiment's directory::

    results.parquet       the compacted table
    parts/part-*.parquet  rows written since the last compaction

Every file is written to a temporary name and renamed into place
(``expreg.core.storage.atomic_open``), so a reader sees a whole file or none: a
kill at any moment loses at most the rows not yet handed to ``append`` and
never corrupts the table. ``compact`` merges the parts into
``results.parquet`` (atomic rename) and only then deletes them; a kill in
between leaves rows twice, which ``read`` drops (first copy of each key wins).

A run's key is ``task_key(experiment, config_hash, params, seed)``.

A file that cannot be read (a disk fault, a copy cut short, a foreign file
named ``part-*.parquet``) stops ``read`` and ``done_keys`` with one
``CheckpointError`` naming every such file: moved aside, its runs are
simply recomputed by the next ``expreg run``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError
from ..core.storage import atomic_open

#: Columns every row has (the runner adds them).
KEY_COLUMNS = ("key", "experiment", "config_hash", "seed")


def task_key(experiment: str, config_hash: str, params: dict[str, Any], seed: int) -> str:
    """Hex key of one run: SHA-256 of (experiment, config hash, sorted parameters, seed), 16 digits."""
    text = json.dumps([experiment, config_hash, params, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultStore:
    """Parquet rows of one experiment directory.

    Parameters
    ----------
    directory : path
        Created on first write.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def table_path(self) -> Path:
        return self.directory / "results.parquet"

    @property
    def parts_dir(self) -> Path:
        return self.directory / "parts"

    def _files(self) -> list[Path]:
        files = [self.table_path] if self.table_path.exists() else []
        if self.parts_dir.exists():
            files += sorted(self.parts_dir.glob("part-*.parquet"))
        return files

    def append(self, rows: Iterable[dict[str, Any]]) -> Path | None:
        """Write ``rows`` as one new part file (atomic). Returns its path, None for no rows.

        Its columns are the union of the rows' keys; a row without a column
        holds null there (NaN once read into pandas).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = list(rows)
        if not rows:
            return None
        columns = list(
            dict.fromkeys(k for row in rows for k in row)
        )  # every row's keys: from_pylist reads only the first row's
        table = pa.Table.from_pydict({c: [row.get(c) for row in rows] for c in columns})
        path = self.parts_dir / f"part-{uuid.uuid4().hex}.parquet"
        with atomic_open(path, "wb") as fh:
            pq.write_table(table, fh)
        return path

    def _tables(self, columns: list[str] | None = None) -> list[Any]:
        """Every file as a pyarrow Table (only ``columns`` when given), the table first.

        Raises
        ------
        CheckpointError
            Naming every file that cannot be read, and what to do.
        """
        import pyarrow.parquet as pq

        tables, bad = [], []
        for f in self._files():
            try:
                tables.append(pq.read_table(f, columns=columns))
            except (
                OSError,
                ValueError,
                KeyError,
            ) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
                bad.append(f"{f} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        if bad:
            raise CheckpointError(
                f"{len(bad)} result file(s) under {str(self.directory)!r} cannot be read: {'; '.join(bad)}. Move them out of "
                "the directory (e.g. into a folder named 'corrupt' beside it) and run again: the runs they held are "
                "recomputed, every other row is kept"
            )
        return tables

    def read(self) -> Any:
        """Every row as a pandas DataFrame, one row per key (empty frame when none)."""
        import pandas as pd

        frames = [t.to_pandas() for t in self._tables()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=list(KEY_COLUMNS))
        df = pd.concat(frames, ignore_index=True, sort=False)
        return df.drop_duplicates(subset="key", keep="first").reset_index(drop=True)

    def done_keys(self) -> set[str]:
        """Keys of the runs already in the table."""
        keys: set[str] = set()
        for table in self._tables(columns=["key"]):
            keys.update(table.column("key").to_pylist())
        return keys

    def compact(self) -> None:
        """Merge the part files into ``results.parquet`` (atomic), then delete them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.exists() else []
        if not parts:
            return
        df = self.read()
        with atomic_open(self.table_path, "wb") as fh:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), fh)
        for p in parts:
            p.unlink(missing_ok=True)
