"""Atomic file writes and checked reads.

Nothing the user asked to keep is ever half-written: every write goes to a
temporary file in the same directory, is flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows). A reader either
sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import CheckpointError


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
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_npz_atomic(path: str | os.PathLike[str], **arrays: Any) -> None:
    """``numpy.savez`` into ``path``, atomically."""
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON into ``path``, atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)


def load_npz(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file into a dict, with clear errors.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        Not a readable npz archive, or one of ``required`` is missing.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no file at {str(p)!r}")
    if not zipfile.is_zipfile(p):  # before np.load, whose message for such files is about pickles
        with open(p, "rb") as fh:
            npy = fh.read(6) == b"\x93NUMPY"
        what = "a single array (a .npy file), not named arrays" if npy else "no complete zip archive (it may be truncated or corrupt, or another format)"
        names = ", ".join(f"{k}={k}" for k in required) or "..."
        raise CheckpointError(f"{str(p)!r} is not a readable .npz file: it holds {what}; write it with numpy.savez(path, {names})")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds a single {type(loaded).__name__} (a .npy file), not named arrays")
        with loaded as data:
            out = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{str(p)!r} is not a readable .npz file ({exc}); it may be truncated or corrupt") from exc
    missing = [k for k in required if k not in out]
    if missing:
        raise CheckpointError(f"{str(p)!r} has no array named {', '.join(map(repr, missing))} (found: {sorted(out)}); save it with numpy.savez(path, {', '.join(f'{k}={k}' for k in required)})")
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
