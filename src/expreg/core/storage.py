"""Atomic file writes and checked reads.

Nothing the user asked to keep is ever half-written: every write goes to a
temporary file in the same directory, is flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows). A reader either
sees the old file or the new one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import CheckpointError
from .resources import check_fits


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temporary_glob(path: str | os.PathLike[str]) -> str:
    """The names ``atomic_open`` gives the temporary files of ``path`` (a glob pattern, in ``path``'s folder)."""
    return f".{Path(path).name}.*.tmp"


def remove_temporaries(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files that killed writes of ``path`` left behind; return how many.

    ``path`` may be a glob of names (``parts/part-*.parquet``). Call it only
    where no other process can be writing ``path`` now (a checkpoint's own
    run, a result store under its lock): a write in progress has its
    temporary file too.
    """
    target = Path(path)
    removed = 0
    if not target.parent.is_dir():
        return 0
    for tmp in target.parent.glob(temporary_glob(target)):
        with suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            tmp.unlink()
            removed += 1
    return removed


def save_npz_atomic(path: str | os.PathLike[str], **arrays: Any) -> None:
    """``numpy.savez`` into ``path``, atomically."""
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON into ``path``, atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)


def load_npz(
    path: str | os.PathLike[str], required: tuple[str, ...] = (), *, only: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file into a dict, with clear errors and sizes checked before reading.

    Each array's ``.npy`` header is read first: the bytes it claims must be
    stored in the file (a header claiming shape (10^11, 3) in a 1 KB file is
    refused without allocating) and must fit in the memory available.

    Parameters
    ----------
    required : tuple of str
        Names that must be present.
    only : tuple of str, optional
        Read only these arrays (the others are not even decompressed).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        Not a readable npz archive, an array whose header does not match the
        bytes stored, or one of ``required`` is missing.
    MemoryError
        The arrays to read need more memory than is available.
    """
    p = Path(path)
    _check_is_npz(p, required)
    try:
        with np.load(p, allow_pickle=False) as data:
            present = list(data.files)
            missing = [k for k in required if k not in present]
            if missing:
                raise CheckpointError(
                    f"{str(p)!r} has no array named {', '.join(map(repr, missing))} (found: {sorted(present)}); "
                    f"save it with numpy.savez(path, {', '.join(f'{k}={k}' for k in required)})"
                )
            wanted = [k for k in present if only is None or k in only]
            total = sum(_checked_size(p, data.zip, k) for k in wanted)
            check_fits(
                total, f"reading {', '.join(wanted)} from {str(p)!r}", advice="the file is too large for this machine"
            )
            return {k: data[k] for k in wanted}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(
            f"{str(p)!r} is not a readable .npz file ({exc}); it may be truncated or corrupt"
        ) from exc


def _check_is_npz(p: Path, required: tuple[str, ...]) -> None:
    """A clear error unless ``p`` is a zip archive (before ``np.load``, whose message for other files is about pickles)."""
    if not p.exists():
        raise FileNotFoundError(f"no file at {str(p)!r}")
    if p.is_dir():
        raise IsADirectoryError(f"{str(p)!r} is a directory, not an .npz file")
    if zipfile.is_zipfile(p):
        return
    with open(p, "rb") as fh:
        npy = fh.read(6) == b"\x93NUMPY"
    what = (
        "a single array (a .npy file), not named arrays"
        if npy
        else "no complete zip archive (it may be truncated or corrupt, or another format)"
    )
    names = ", ".join(f"{k}={k}" for k in required) or "..."
    raise CheckpointError(
        f"{str(p)!r} is not a readable .npz file: it holds {what}; write it with numpy.savez(path, {names})"
    )


def _checked_size(path: Path, archive: zipfile.ZipFile, name: str) -> int:
    """Bytes of array ``name`` of an npz archive, from its header; checked against the bytes stored."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10_000)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10_000)
        else:
            raise CheckpointError(
                f"array {name!r} of {str(path)!r} has .npy format version {version}; save it again with numpy.savez"
            )
        header = fh.tell()
    if dtype.hasobject:
        raise CheckpointError(
            f"array {name!r} of {str(path)!r} holds Python objects; only numeric arrays are read (save numbers)"
        )
    claimed = math.prod(shape) * dtype.itemsize
    if header + claimed != info.file_size:
        raise CheckpointError(
            f"array {name!r} of {str(path)!r} claims shape {shape} of {dtype} ({claimed} bytes) but {info.file_size - header} bytes "
            "are stored: the file is corrupt or was cut short; write it again"
        )
    return claimed


def check_writable(path: str | os.PathLike[str], what: str, *, directory: bool = False) -> None:
    """Refuse, before any work, a path a run could not write its results to.

    ``directory``: ``path`` is a directory the run writes into; otherwise a
    file. Missing folders on the way are created (as ``mkdir -p`` would), so
    ``--out results/full`` works on a fresh clone; what is refused is a path
    under a regular file, a read-only place, a file given for a directory or
    the reverse. The check writes and removes a small temporary file where
    the run will.

    Raises
    ------
    NotADirectoryError, PermissionError, IsADirectoryError, OSError
        With a message naming ``what`` (e.g. "--checkpoint") and the path.
    """
    target = Path(path)
    if directory and target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{what} {str(target)!r} is a file, not a directory; choose a directory")
    if not directory and target.is_dir():
        raise IsADirectoryError(f"{what} {str(target)!r} is a directory; give a file name inside it")
    folder = target if directory else target.parent
    ancestor = next((q for q in (folder, *folder.parents) if q.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise NotADirectoryError(
            f"{what} {str(target)!r} cannot be written: {str(ancestor)!r} is a file, not a directory"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".expreg-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise type(exc)(
            f"{what} {str(target)!r} cannot be written ({exc.strerror or exc}); choose a writable location"
        ) from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
