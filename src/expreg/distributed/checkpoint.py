"""Checkpoints of a width-sharded run: one file per rank and step, plus a manifest.

A sharded run (``expreg.distributed``) writes, every ``checkpoint_every``
steps, one file per rank into a directory::

    step0000000120-rank00001-of00002.npz    W[:, lo:hi] after 120 steps, lo, hi,
                                            m, step, the run's fingerprint, history
    manifest.json                           the last step every rank completed

Each file is written atomically (``expreg.core.storage``), so a file that exists
is whole. A step is *complete* when the files of every rank 0..P-1 of one
world size P exist. The older checkpoint is deleted only after a barrier
confirms the newer one is complete on every rank, so at any instant (a kill
included) the directory holds a complete checkpoint. A relaunch resumes
from the newest complete step, whatever its own number of ranks: the files
of a step tile the neurons 0..m-1 and each new rank reads its own slice.

History arrays (identical on every rank) are stored in every file, with the
same keys as ``expreg.train``'s checkpoints (``h_loss``, ...).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import streams
from ..core.backends import Array
from ..core.errors import CheckpointError
from ..core.model import NetSpec
from ..core.storage import load_npz, save_npz_atomic, temporary_glob, write_json_atomic
from ..engine.history import History
from ..engine.shard import Shard

MANIFEST = "manifest.json"
_NAME = re.compile(r"^step(\d{10})-rank(\d{5})-of(\d{5})\.npz$")
_REQUIRED = ("W", "lo", "hi", "m", "step", "fingerprint")


def shard_path(directory: str | os.PathLike[str], step: int, rank: int, world_size: int) -> Path:
    """The file of ``rank`` (of ``world_size``) at ``step`` inside ``directory``."""
    return Path(directory) / f"step{step:010d}-rank{rank:05d}-of{world_size:05d}.npz"


def save_shard(
    directory: str | os.PathLike[str],
    *,
    step: int,
    rank: int,
    world_size: int,
    lo: int,
    hi: int,
    m: int,
    W: np.ndarray,
    history: History,
    fingerprint: str,
) -> Path:
    """Write one rank's checkpoint atomically; returns its path.

    ``W`` is the rank's slice (d, hi - lo) after ``step`` steps.
    """
    path = shard_path(directory, step, rank, world_size)
    save_npz_atomic(
        path,
        W=np.asarray(W),
        lo=np.int64(lo),
        hi=np.int64(hi),
        m=np.int64(m),
        step=np.int64(step),
        fingerprint=np.array(fingerprint),
        streams=np.int64(streams.VERSION),
        **history.npz_fields(),
    )
    return path


def complete_sets(directory: str | os.PathLike[str]) -> dict[int, list[Path]]:
    """Every complete step in ``directory``: step -> its files, ordered by rank.

    When a step is complete for two world sizes (a relaunch with another
    number of ranks), the set written last wins.
    """
    found: dict[tuple[int, int], dict[int, Path]] = {}
    root = Path(directory)
    if not root.is_dir():
        return {}
    for path in root.iterdir():
        hit = _NAME.match(path.name)
        if hit:
            step, rank, size = (int(g) for g in hit.groups())
            found.setdefault((step, size), {})[rank] = path
    complete: dict[int, list[Path]] = {}
    newest: dict[int, float] = {}
    for (step, size), ranks in found.items():
        if set(ranks) != set(range(size)):
            continue
        files = [ranks[r] for r in range(size)]
        stamp = max(p.stat().st_mtime for p in files)
        if step not in complete or stamp > newest[step]:
            complete[step], newest[step] = files, stamp
    return complete


def latest_complete_step(directory: str | os.PathLike[str]) -> int | None:
    """The newest step whose files exist for every rank, or None."""
    sets = complete_sets(directory)
    return max(sets) if sets else None


def read_slice(
    directory: str | os.PathLike[str], step: int, lo: int, hi: int, *, fingerprint: str, d: int, m: int
) -> tuple[np.ndarray, History]:
    """Neurons ``lo`` to ``hi - 1`` of the complete checkpoint at ``step``, and its history.

    Returns W (d, hi - lo) as float64 or the stored dtype, and the history.

    Raises
    ------
    CheckpointError
        The files belong to another run (fingerprint), have other shapes, or
        do not tile 0..m-1.
    """
    files = complete_sets(directory).get(step)
    if files is None:
        raise CheckpointError(f"no complete checkpoint of step {step} in {str(directory)!r}")
    W: np.ndarray | None = None
    history: History | None = None
    covered = 0
    for path in files:
        data = load_npz(path, required=_REQUIRED)
        streams.check_checkpoint(data, path)
        if str(data["fingerprint"]) != fingerprint:
            raise CheckpointError(
                f"checkpoint {str(path)!r} belongs to another run (network, data or lr differ); "
                "delete the directory or choose another --checkpoint-dir"
            )
        f_lo, f_hi = int(data["lo"]), int(data["hi"])
        if int(data["m"]) != m or data["W"].shape != (d, f_hi - f_lo) or f_lo != covered:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds neurons {f_lo}..{f_hi - 1} of m = {int(data['m'])} with W of shape "
                f"{data['W'].shape}; expected the files of step {step} to tile 0..{m - 1} in d = {d}"
            )
        covered = f_hi
        if W is None:
            W = np.empty((d, hi - lo), dtype=data["W"].dtype)
        s_lo, s_hi = max(lo, f_lo), min(hi, f_hi)
        if s_lo < s_hi:
            W[:, s_lo - lo : s_hi - lo] = data["W"][:, s_lo - f_lo : s_hi - f_lo]
        if history is None:
            history = History.from_npz_fields(data)
    if covered != m:
        raise CheckpointError(
            f"the files of step {step} in {str(directory)!r} cover neurons 0..{covered - 1}, not 0..{m - 1}"
        )
    assert W is not None and history is not None
    return W, history


@dataclass(frozen=True)
class ShardedCheckpoint:
    """A whole network read back from a sharded checkpoint directory.

    Attributes
    ----------
    step : int
        Steps taken by ``W``.
    W : ndarray (d, m)
        All neurons, assembled from the ranks' files.
    history : History
        Records up to ``step`` (final checkpoint) or ``step - 1``.
    fingerprint : str
    world_size : int
        Ranks that wrote it.
    """

    step: int
    W: np.ndarray
    history: History
    fingerprint: str
    world_size: int


def load_checkpoint(directory: str | os.PathLike[str], step: int | None = None) -> ShardedCheckpoint:
    """Assemble the newest (or the given) complete checkpoint of ``directory``.

    >>> # ckpt = load_checkpoint("run/")   # ckpt.W is (d, m), ckpt.history...
    """
    sets = complete_sets(directory)
    if not sets:
        raise FileNotFoundError(f"no complete sharded checkpoint in {str(directory)!r}")
    step = max(sets) if step is None else int(step)
    if step not in sets:
        raise CheckpointError(f"step {step} is not complete in {str(directory)!r}; complete steps: {sorted(sets)}")
    first = load_npz(sets[step][0], required=_REQUIRED)
    fingerprint, m, d = str(first["fingerprint"]), int(first["m"]), int(first["W"].shape[0])
    W, history = read_slice(directory, step, 0, m, fingerprint=fingerprint, d=d, m=m)
    return ShardedCheckpoint(step=step, W=W, history=history, fingerprint=fingerprint, world_size=len(sets[step]))


def write_manifest(
    directory: str | os.PathLike[str],
    *,
    step: int,
    world_size: int,
    m: int,
    d: int,
    fingerprint: str,
    shards: list[tuple[int, int]],
    final: bool,
) -> None:
    """Record (atomically) that ``step`` is complete on every rank."""
    write_json_atomic(
        Path(directory) / MANIFEST,
        {
            "step": int(step),
            "world_size": int(world_size),
            "m": int(m),
            "d": int(d),
            "fingerprint": fingerprint,
            "final": bool(final),
            "shards": [list(s) for s in shards],
            "files": [shard_path(directory, step, r, world_size).name for r in range(world_size)],
        },
    )


def prune(directory: str | os.PathLike[str], keep: list[Path]) -> None:
    """Delete every checkpoint file except ``keep``, and stale temporary files (of killed writes of a rank's
    file or of the manifest: ``storage.temporary_glob``'s names).

    Call only after a barrier has confirmed ``keep`` is complete on every rank.
    """
    keep_names = {p.name for p in keep}
    temporaries = (temporary_glob("step*.npz"), temporary_glob(MANIFEST))
    for path in Path(directory).iterdir():
        stale_tmp = any(fnmatch.fnmatchcase(path.name, pattern) for pattern in temporaries)
        if (_NAME.match(path.name) and path.name not in keep_names) or stale_tmp:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@dataclass
class RankCheckpoints:
    """Per-rank checkpoint files plus a manifest, for ``train_sharded`` (an ``engine.checkpoints.Checkpoints``).

    Attributes
    ----------
    shard : Shard
        This rank's neurons and the communicator.
    spec : NetSpec
        The whole network.
    directory : Path
        Shared by every rank.
    fingerprint : str
        ``engine.checkpoints.run_fingerprint`` of the run.
    tiles : list of (lo, hi)
        Every rank's neurons, in rank order (``sharded.shard_range``).
    """

    shard: Shard
    spec: NetSpec
    directory: Path
    fingerprint: str
    tiles: list[tuple[int, int]]

    @property
    def location(self) -> str:
        return str(self.directory)

    def resume(self) -> tuple[Array, History, int] | None:
        """This rank's slice of the newest complete checkpoint, if any; every rank must agree on it."""
        found = latest_complete_step(self.directory)
        seen = self.shard.comm.max(np.array([-1.0 if found is None else found, -(-1.0 if found is None else found)]))
        if seen[0] != -seen[1]:
            raise RuntimeError(
                f"the ranks see different checkpoints in {str(self.directory)!r}; is it on a file system every rank shares?"
            )
        if found is None:
            return None
        lo, hi = self.tiles[self.shard.comm.rank]
        Wn, history = read_slice(
            self.directory, found, lo, hi, fingerprint=self.fingerprint, d=self.spec.d, m=self.spec.m
        )
        history.truncate(found - 1)  # step `found` is recomputed (identically) on resume
        return self.shard.be.asarray(Wn, self.spec.dtype), history, found

    def save(self, W: Array, history: History, step: int, *, final: bool) -> None:
        """Every rank writes its file; once all files are seen by all ranks, rank 0 records the step and deletes the older ones."""
        comm, directory, m = self.shard.comm, self.directory, self.spec.m
        lo, hi = self.tiles[comm.rank]
        save_shard(
            directory,
            step=step,
            rank=comm.rank,
            world_size=comm.world_size,
            lo=lo,
            hi=hi,
            m=m,
            W=self.shard.be.to_numpy(W),
            history=history,
            fingerprint=self.fingerprint,
        )
        comm.barrier()
        files = [shard_path(directory, step, r, comm.world_size) for r in range(comm.world_size)]
        unseen = comm.sum(np.array([float(not all(f.exists() for f in files))]))[0]  # also a second barrier
        if unseen > 0:
            raise CheckpointError(
                f"checkpoint_dir {str(directory)!r} is not shared by every rank: some rank cannot see the files of step {step} "
                "the others wrote. Put it on a file system every rank mounts (or omit checkpoints)."
            )
        if comm.rank == 0:
            write_manifest(
                directory,
                step=step,
                world_size=comm.world_size,
                m=m,
                d=self.spec.d,
                fingerprint=self.fingerprint,
                shards=self.tiles,
                final=final,
            )
            prune(directory, files)
