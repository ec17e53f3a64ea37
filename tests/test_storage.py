"""Atomic writes and checked reads (storage.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import expreg.core.storage as storage
from expreg import CheckpointError


def test_atomic_open_replaces_the_target_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    with storage.atomic_open(target) as fh:
        fh.write(b"old")
    assert target.read_bytes() == b"old"
    with pytest.raises(RuntimeError, match="boom"), storage.atomic_open(target) as fh:
        fh.write(b"new but half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["f.bin"]  # the temporary file is gone
    with pytest.raises(KeyboardInterrupt), storage.atomic_open(tmp_path / "g.bin") as fh:
        fh.write(b"x")
        raise KeyboardInterrupt
    assert not (tmp_path / "g.bin").exists()


def test_save_npz_atomic_round_trip_and_interrupted_write(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.npz"
    storage.save_npz_atomic(path, W=np.arange(6.0).reshape(2, 3), step=np.int64(4))
    data = storage.load_npz(path, required=("W", "step"))
    assert np.array_equal(data["W"], np.arange(6.0).reshape(2, 3)) and int(data["step"]) == 4

    def half_write(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(storage.np, "savez", half_write)
    with pytest.raises(OSError, match="simulated"):
        storage.save_npz_atomic(path, W=np.zeros(1), step=np.int64(5))
    monkeypatch.undo()
    assert int(storage.load_npz(path)["step"]) == 4  # the previous file, intact
    assert os.listdir(tmp_path) == ["a.npz"]


def test_write_json_atomic_handles_numpy_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    storage.write_json_atomic(path, {"x": np.float32(1.5), "v": np.arange(3), "p": Path("/a/b"), "n": np.int64(2)})
    assert json.loads(path.read_text()) == {"x": 1.5, "v": [0, 1, 2], "p": "/a/b", "n": 2}
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        storage.write_json_atomic(path, {"bad": {1, 2}})
    assert json.loads(path.read_text())["n"] == 2  # untouched by the failed write


def test_load_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file at"):
        storage.load_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "ok.npz", X=np.ones(2))
    whole = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        storage.load_npz(tmp_path / "trunc.npz")
    (tmp_path / "junk.npz").write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.raises(CheckpointError, match=r"not a readable \.npz") as junk:
        storage.load_npz(tmp_path / "junk.npz")
    assert "pickle" not in str(junk.value)  # no advice to load a corrupt file unsafely
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(CheckpointError, match=r"a \.npy file"):
        storage.load_npz(tmp_path / "single.npy")
    with pytest.raises(CheckpointError, match=r"has no array named 'y' \(found: \['X'\]\)"):
        storage.load_npz(tmp_path / "ok.npz", required=("X", "y"))


def test_load_npz_checks_sizes_from_the_headers_and_reads_only_what_is_asked(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((4, 3)), y=np.zeros(4), big=np.zeros(1000))
    assert sorted(storage.load_npz(path, required=("X",), only=("X", "y"))) == ["X", "y"]

    def no_memory(need: int, what: str, **kw) -> None:
        raise MemoryError(f"{what}: {need}")

    monkeypatch.setattr(storage, "check_fits", no_memory)
    with pytest.raises(MemoryError, match=r"reading X, y from .*: 128"):  # 12 + 4 float64, from the headers
        storage.load_npz(path, only=("X", "y"))
    cut = (
        tmp_path / "cut.npz"
    )  # an archive whose X claims more rows than it stores (rebuilt, so the zip itself is whole)
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(cut, "w") as dst:
        dst.writestr("X.npy", src.read("X.npy")[:-8])
        dst.writestr("y.npy", src.read("y.npy"))
    monkeypatch.undo()
    with pytest.raises(
        CheckpointError, match=r"'X' of .* claims shape \(4, 3\) of float64 \(96 bytes\) but 88 bytes are stored"
    ):
        storage.load_npz(cut)


def test_check_writable(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    storage.check_writable(tmp_path / "ck.npz", "--checkpoint")
    storage.check_writable(tmp_path / "new", "--out", directory=True)
    assert (tmp_path / "new").is_dir() and os.listdir(tmp_path / "new") == []  # created, the probe removed
    with pytest.raises(NotADirectoryError, match=r"'.*f' is a file, not a directory"):
        storage.check_writable(tmp_path / "f" / "sub" / "ck.npz", "--checkpoint")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory; choose a directory"):
        storage.check_writable(tmp_path / "f", "--checkpoint-dir", directory=True)
    with pytest.raises(IsADirectoryError, match="is a directory; give a file name"):
        storage.check_writable(tmp_path, "--checkpoint")
    storage.check_writable(tmp_path / "a" / "b", "--out", directory=True)  # missing folders are created (mkdir -p)
    assert (tmp_path / "a" / "b").is_dir()
    storage.check_writable(tmp_path / "c" / "d" / "ck.npz", "--checkpoint")
    assert (tmp_path / "c" / "d").is_dir() and not (tmp_path / "c" / "d" / "ck.npz").exists()
    with pytest.raises(OSError, match="cannot be written"):
        storage.check_writable("/proc/expreg-ck.npz", "--checkpoint")


# --- issue 19: temporary files of killed writes are removed by the next run that writes there ------------

KILLED_WRITE = """
import os, signal, sys
import numpy as np
from expreg.core import storage

real_savez = np.savez
def savez_then_die(fh, **arrays):
    fh.write(b"PK\\x03\\x04 the first bytes of the archive")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the write
np.savez = savez_then_die
storage.save_npz_atomic(sys.argv[1], W=np.zeros((3, 4)))
"""


def test_a_killed_checkpoint_write_leaves_a_temporary_that_the_next_training_removes(tmp_path: Path) -> None:
    import subprocess
    import sys

    from expreg import ExpNet, make_dataset, train

    ck = tmp_path / "ck.npz"
    src = str(Path(storage.__file__).parents[2])
    for _ in range(2):  # two kills, two leftovers (as the fault battery found)
        proc = subprocess.run(
            [sys.executable, "-c", KILLED_WRITE, str(ck)],
            env={**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")},
            timeout=120,
        )
        assert proc.returncode == -9
    left = sorted(p.name for p in tmp_path.glob(".ck.npz.*.tmp"))
    assert len(left) == 2 and not ck.exists()
    X, y = make_dataset(6, 3, seed=0)
    train(ExpNet.init(3, 16, seed=0), X, y, max_steps=3, checkpoint=ck)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # the leftovers are gone, the checkpoint written
