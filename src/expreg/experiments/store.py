"""The result table: one row per run, Parquet files written atomically, shared safely.

Layout under an experiment's directory::

    results.parquet       the compacted table
    parts/part-*.parquet  rows written since the last compaction
    .store.lock           the store's lock file (see below)

Every file is written to a temporary name and renamed into place
(``expreg.core.storage.atomic_open``), so a reader sees a whole file or none: a
kill at any moment loses at most the rows not yet handed to ``append`` and
never corrupts the table. ``compact`` merges the parts into
``results.parquet`` (atomic rename) and only then deletes them; a kill in
between leaves rows twice, which ``read`` drops (first copy of each key wins).

**Several writers.** Drivers of different configurations (or the same one)
may share one ``--out``: every operation (``append``, ``read``,
``done_keys``, ``compact``) holds an exclusive lock on ``.store.lock``
(``filelock``: an OS lock, ``flock`` on POSIX, which the kernel releases
when its holder dies, ``kill -9`` included: a killed driver never leaves a
stale lock). So no compaction deletes a part another process is reading,
and no two compactions overwrite each other's rows. The lock is held for
milliseconds per part file; a driver waits up to ``LOCK_TIMEOUT`` seconds
for it, then stops with an error naming the lock file. A directory the
process cannot write (a read-only copy) is read without the lock: nobody
can be writing there through it either.

**Temporary files of killed writes.** Writers write only while holding the
lock, so a ``.*.tmp`` file found under the lock was left by a killed
writer: the first writing operation of each store removes them.

**Checked reads.** Every file is written with Parquet page checksums
(CRC-32 of each data page) and a schema marker (``expreg.store``); reads
verify the checksums. A file whose pages do not match their checksums (a
flipped bit, a copy cut short), a foreign file (no marker and not the
columns a run writes), a file with an Arrow extension type (whose
deserialisation is code: CVE-2023-47248) or one that cannot be parsed stops
``read``, ``done_keys`` and ``compact`` with one ``CheckpointError`` naming
every such file; it is never merged nor deleted. Moved aside, its runs are
simply recomputed by the next ``expreg run``.

**Whole-file digests.** Page checksums leave the footer (schema, column
offsets, metadata) unchecked, so every file also gets a sibling
``NAME.sha256`` with the SHA-256 of its bytes, checked before the file is
parsed: a flipped bit anywhere in a file is an error naming it. The digest
file is written first, listing the digest of the file being replaced and of
its replacement, then the file, then the digest file again with the new
digest alone: a kill at any moment leaves a file whose bytes one listed
digest accepts. A marked file without its digest file is refused; files
written before digests existed (no marker) are read as before.

A run's key is ``task_key(experiment, config_hash, params, seed)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError
from ..core.storage import atomic_open, remove_temporaries

#: Columns every row has (the runner adds them).
KEY_COLUMNS = ("key", "experiment", "config_hash", "seed")
#: Columns a file written before the schema marker existed must have to be read as a result file.
LEGACY_COLUMNS = (*KEY_COLUMNS, "wall_seconds")
#: Schema metadata key (and value) that marks a file written by this store.
MARKER = (b"expreg.store", b"1")
#: Seconds a store operation waits for another process's lock before giving up.
LOCK_TIMEOUT = 600.0
#: Name of the lock file in the experiment directory.
LOCK_NAME = ".store.lock"


def task_key(experiment: str, config_hash: str, params: dict[str, Any], seed: int) -> str:
    """Hex key of one run: SHA-256 of (experiment, config hash, sorted parameters, seed), 16 digits."""
    text = json.dumps([experiment, config_hash, params, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def digest_path(path: Path) -> Path:
    """The digest file of a store file: ``NAME.sha256`` beside it."""
    return path.with_name(path.name + ".sha256")


def _accepted_digests(path: Path) -> list[str]:
    """Digests the bytes of ``path`` may have: its digest file's lines, or (no digest file) its bytes' own."""
    side = digest_path(path)
    if side.is_file():
        return side.read_text(encoding="ascii", errors="replace").split()
    return [hashlib.sha256(path.read_bytes()).hexdigest()] if path.is_file() else []


def _write_digests(path: Path, digests: list[str]) -> None:
    with atomic_open(digest_path(path), "wb") as fh:
        fh.write(("\n".join(digests) + "\n").encode("ascii"))


def _schema_problem(schema: Any) -> str | None:
    """Why a file with this Arrow schema is not a result file of this store; None when it is."""
    for fld in schema:
        meta = fld.metadata or {}
        if b"ARROW:extension:name" in meta or hasattr(fld.type, "extension_name"):
            return f"column {fld.name!r} has an Arrow extension type (refused: reading one can run code)"
    names = set(schema.names)
    marked = (schema.metadata or {}).get(MARKER[0]) == MARKER[1]
    required = ("key",) if marked else LEGACY_COLUMNS
    missing = [c for c in required if c not in names]
    if missing:
        return f"not a result file of expreg (no column {', '.join(map(repr, missing))})"
    if not marked and len(names) <= len(LEGACY_COLUMNS):
        return "not a result file of expreg (no 'expreg.store' marker and no column besides the key columns)"
    return None


class ResultStore:
    """Parquet rows of one experiment directory, shared safely by several processes.

    Parameters
    ----------
    directory : path
        Created on first write.
    lock_timeout : float
        Seconds to wait for another process's lock (``LOCK_TIMEOUT``).
    """

    def __init__(self, directory: str | Path, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self._lock: Any = None
        self._swept = False

    @property
    def table_path(self) -> Path:
        return self.directory / "results.parquet"

    @property
    def parts_dir(self) -> Path:
        return self.directory / "parts"

    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_NAME

    @contextlib.contextmanager
    def locked(self, *, write: bool) -> Iterator[None]:
        """Hold the store's lock (reentrant within this object).

        ``write``: the operation writes (the directory is created; stale
        temporary files are removed once). A read of a directory that does
        not exist, or that this process cannot write, goes without the lock.
        """
        from filelock import FileLock, Timeout

        if not write and not (self.directory.is_dir() and os.access(self.directory, os.W_OK)):
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        try:
            self._lock.acquire()
        except Timeout:
            raise CheckpointError(
                f"the result store {str(self.directory)!r} stayed locked by another process for {self.lock_timeout:g} s "
                f"(lock file {str(self.lock_path)!r}); wait for the other `expreg run` on this --out to finish"
            ) from None
        try:
            if write and not self._swept:
                for name in ("results.parquet", "parts/part-*.parquet"):
                    remove_temporaries(self.directory / name)
                    remove_temporaries(digest_path(self.directory / name))
                for side in self.parts_dir.glob("part-*.parquet.sha256") if self.parts_dir.is_dir() else []:
                    if not side.with_name(side.name[: -len(".sha256")]).exists():  # a kill before its part
                        side.unlink(missing_ok=True)
                self._swept = True
            yield
        finally:
            self._lock.release()

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def _files(self) -> list[Path]:
        return ([self.table_path] if self.table_path.is_file() else []) + self._parts()

    def _write(self, path: Path, table: Any) -> None:
        """``table`` into ``path``, atomically, marked, with page checksums and its digest file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta = dict(table.schema.metadata or {})
        meta[MARKER[0]] = MARKER[1]
        buffer = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(meta), buffer, write_page_checksum=True)
        data = buffer.getvalue().to_pybytes()
        digest = hashlib.sha256(data).hexdigest()
        _write_digests(path, [*_accepted_digests(path), digest])  # a kill from here on leaves old or new bytes
        with atomic_open(path, "wb") as fh:
            fh.write(data)
        _write_digests(path, [digest])

    def append(self, rows: Iterable[dict[str, Any]]) -> Path | None:
        """Write ``rows`` as one new part file (atomic). Returns its path, None for no rows.

        Its columns are the union of the rows' keys; a row without a column
        holds null there (NaN once read into pandas).
        """
        import pyarrow as pa

        rows = list(rows)
        if not rows:
            return None
        if any(not isinstance(row.get("key"), str) for row in rows):
            raise ValueError("every row appended to a result store needs its run's key (a string) in column 'key'")
        columns = list(
            dict.fromkeys(k for row in rows for k in row)
        )  # every row's keys: from_pylist reads only the first row's
        table = pa.Table.from_pydict({c: [row.get(c) for row in rows] for c in columns})
        path = self.parts_dir / f"part-{uuid.uuid4().hex}.parquet"
        with self.locked(write=True):
            self._write(path, table)
        return path

    @staticmethod
    def _read_file(path: Path, columns: list[str] | None) -> Any:
        """One file as a pyarrow Table, checked (its bytes' digest, its schema, then every page's checksum).

        Read on the calling thread (``use_threads=False``, and ``to_pandas`` likewise in ``_frame``): result files
        are small, and a process that has used Arrow's CPU pool can abort at exit ("terminate called without an
        active exception", SIGABRT) when the pool's threads are torn down (apache/arrow#34314; seen with pyarrow
        15 in 13 of 180 writer processes of ``tests/test_store_sharing.py``'s race, 0 of 180 without the pool).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        with open(path, "rb") as fh:  # a Python file object: any path the OS accepts (non-UTF-8 names too)
            data = fh.read()
        side = digest_path(path)
        if side.is_file() and hashlib.sha256(data).hexdigest() not in _accepted_digests(path):
            raise CheckpointError(f"its bytes do not match their checksum (SHA-256) in {side.name!r}: a changed byte")
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        problem = _schema_problem(pf.schema_arrow)
        if problem:
            raise CheckpointError(problem)
        if not side.is_file() and (pf.schema_arrow.metadata or {}).get(MARKER[0]) == MARKER[1]:
            raise CheckpointError(f"its digest file {side.name!r} is missing")
        return pf.read(columns=columns, use_threads=False)

    def _tables(self, columns: list[str] | None = None) -> list[Any]:
        """Every file as a pyarrow Table (only ``columns`` when given), the table first. Call under the lock.

        Raises
        ------
        CheckpointError
            Naming every file that cannot be read or is not a result file, and what to do.
        """
        tables, bad = [], []
        for f in self._files():
            try:
                tables.append(self._read_file(f, columns))
            except FileNotFoundError:  # removed by a process that ignores the lock: its rows are in the table
                continue
            except Exception as exc:  # pyarrow raises OSError (checksums), ArrowInvalid (a ValueError), others
                bad.append(f"{f} ({_first_line(exc)})")
        if bad:
            raise CheckpointError(
                f"{len(bad)} result file(s) under {str(self.directory)!r} cannot be used: {'; '.join(bad)}. Move them out of "
                "the directory (e.g. into a folder named 'corrupt' beside it) and run again: the runs they held are "
                "recomputed, every other row is kept"
            )
        return tables

    def _frame(self) -> Any:
        import pandas as pd

        frames = [t.to_pandas(use_threads=False) for t in self._tables()]  # no Arrow pool: see _read_file
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=list(KEY_COLUMNS))
        df = pd.concat(frames, ignore_index=True, sort=False)
        return df.drop_duplicates(subset="key", keep="first").reset_index(drop=True)

    def read(self) -> Any:
        """Every row as a pandas DataFrame, one row per key (empty frame when none)."""
        with self.locked(write=False):
            return self._frame()

    def done_keys(self) -> set[str]:
        """Keys of the runs already in the table (every column is read: every page's checksum is verified)."""
        keys: set[str] = set()
        with self.locked(write=False):
            for table in self._tables():
                keys.update(table.column("key").to_pylist())
        return keys

    def compact(self) -> None:
        """Merge the part files into ``results.parquet`` (atomic), then delete them (under the lock)."""
        import pyarrow as pa

        with self.locked(write=True):
            parts = self._parts()
            if not parts:
                return
            df = self._frame()
            self._write(self.table_path, pa.Table.from_pandas(df, preserve_index=False))
            for p in parts:
                p.unlink(missing_ok=True)
                digest_path(p).unlink(missing_ok=True)
