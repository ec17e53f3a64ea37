"""Width-sharded training (expreg.distributed) against single-process expreg.train (docs/theory.md section 2).

Multi-process runs use gloo over loopback with a file rendezvous (no
listening TCP store): 2 processes spawned by torch.multiprocessing, and the
``python -m expreg.distributed`` entry point launched as torchrun would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import expreg
from expreg.core.errors import CheckpointError, TrainingDivergedError
from expreg.distributed import checkpoint as ckpt
from expreg.distributed.sharded import NetSpec, shard_range, train_sharded
from expreg.engine.communicator import Communicator
from expreg.engine.train import History

DATA = dict(n=6, d=3, seed=2)  # the seed of KILLED's network too: the data of `expreg distributed --seed 2`
# name -> (NetSpec keywords, train keywords). m = 7 and 9 are odd; m = 6 over 2 ranks splits the pair (2, 3).
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "gaussian_odd_m": (
        dict(d=3, m=7, seed=2, init="gaussian", scaling="ntk"),
        dict(max_steps=15, record_every=4, epsilon=1e-6),
    ),
    "coupled_split_pair": (
        dict(d=3, m=6, seed=4, init="coupled", scaling="none"),
        dict(lr=0.004, max_steps=12, record_every=5, epsilon=1e-6),
    ),
    "coupled_diverges": (
        dict(d=3, m=6, seed=3, init="coupled", scaling="ntk"),
        dict(lr=0.15, max_steps=15, record_every=4, epsilon=1e-6),
    ),
    "coupled_overflows": (
        dict(d=3, m=6, seed=2, init="coupled", scaling="ntk"),
        dict(lr=3.0, max_steps=15, record_every=4, epsilon=1e-6),
    ),
    "torch_relu_float32": (
        dict(d=3, m=9, seed=5, init="gaussian", scaling="ntk", activation="relu", dtype=np.float32, backend="torch"),
        dict(lr="empirical", max_steps=10, record_every=3, epsilon=1e-6),
    ),
}
KILLED = "gaussian_odd_m"  # the config of the kill-and-resume test (relaunched through the command line)
CHECKPOINT_EVERY = 3
KILL_AT = 8  # rank 1 kills itself once step 8 is recorded: steps 3 and 6 are checkpointed, 9 at most by rank 0


def _data() -> tuple[np.ndarray, np.ndarray]:
    return expreg.make_dataset(DATA["n"], DATA["d"], seed=DATA["seed"])


def _run(fn: Any) -> tuple[Any, bool]:
    """(result, diverged): a divergence's result is the run up to its last finite weights."""
    try:
        return fn(), False
    except TrainingDivergedError as exc:
        return exc.result, True


def _reference(name: str) -> tuple[np.ndarray, History, int, bool]:
    """expreg.train on the whole network: (W, history, steps, diverged)."""
    spec, kw = CONFIGS[name]
    net = expreg.ExpNet.init(spec["d"], spec["m"], **{k: v for k, v in spec.items() if k not in ("d", "m")})
    X, y = _data()
    result, diverged = _run(lambda: expreg.train(net, X, y, **kw))
    return result.net.weights_numpy()[0], result.history, result.steps, diverged


def _assert_same_run(W: np.ndarray, history: History, W_ref: np.ndarray, h_ref: History, rtol: float) -> None:
    np.testing.assert_allclose(W, W_ref, rtol=rtol, atol=rtol)
    ref = h_ref.as_arrays()
    for key, values in history.as_arrays().items():
        assert values.shape == ref[key].shape, key
        np.testing.assert_allclose(values, ref[key], rtol=rtol, atol=rtol, err_msg=key)


# ------------------------------------------------------------------ multi-process machinery
def _worker(
    rank: int, world: int, store: str, out: str, names: list[str], ckpt_root: str | None, kill_at: int | None
) -> None:
    """One rank: join the gloo group, run each config, save this rank's result."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    X, y = _data()
    for name in names:
        killed = name == "killed"
        spec, kw = CONFIGS[KILLED if killed else name]

        def progress(t: int, res: float, killed: bool = killed) -> None:
            if killed and rank == 1 and t == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        extra = (
            dict(checkpoint_dir=os.path.join(ckpt_root, name), checkpoint_every=CHECKPOINT_EVERY) if ckpt_root else {}
        )
        result, diverged = _run(partial(train_sharded, NetSpec(**spec), X, y, progress=progress, **kw, **extra))
        np.savez(
            os.path.join(out, f"{name}-{rank}.npz"),
            W=result.weights_numpy()[0],
            lo=result.lo,
            steps=result.steps,
            diverged=diverged,
            world=result.world_size,
            **{f"h_{k}": v for k, v in result.history.as_arrays().items()},
        )
    dist.destroy_process_group()


def _spawn(
    world: int, tmp: Path, out: Path, names: list[str], ckpt_root: Path | None = None, kill_at: int | None = None
) -> None:
    import torch.multiprocessing as mp

    store = tmp / f"store-{uuid.uuid4().hex}"
    mp.spawn(
        _worker,
        args=(world, str(store), str(out), names, None if ckpt_root is None else str(ckpt_root), kill_at),
        nprocs=world,
        join=True,
    )


def _gather(out: Path, name: str) -> tuple[np.ndarray, History, int, bool, int]:
    """Assemble the ranks' files of one config: (W, history, steps, diverged, world size)."""
    parts = sorted((np.load(p) for p in out.glob(f"{name}-*.npz")), key=lambda f: int(f["lo"]))
    W = np.concatenate([p["W"] for p in parts], axis=1)
    history = History.from_arrays({k[2:]: parts[0][k] for k in parts[0].files if k.startswith("h_")})
    for p in parts[1:]:  # every rank holds the same history
        for k in p.files:
            if k.startswith("h_"):
                np.testing.assert_array_equal(p[k], parts[0][k])
    return W, history, int(parts[0]["steps"]), bool(parts[0]["diverged"]), int(parts[0]["world"])


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One launch of 2 gloo ranks: every config with checkpoints, then KILLED's config again, in which rank 1
    SIGKILLs itself at step KILL_AT (so the launch fails) leaving its checkpoints in ckpt/killed."""
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("two_ranks")
    out = tmp / "out"
    out.mkdir()
    with pytest.raises(
        (mp.ProcessExitedException, mp.ProcessRaisedException)
    ):  # the killed rank, or rank 0 losing its peer
        _spawn(2, tmp, out, [*CONFIGS, "killed"], ckpt_root=tmp / "ckpt", kill_at=KILL_AT)
    return out


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize(
    "m, world", [(m, world) for m in (1, 2, 5, 6, 7, 64, 101) for world in (1, 2, 3, 4) if world <= m]
)
def test_shard_range_is_numpy_array_split(m: int, world: int) -> None:
    expected = [(int(part[0]), int(part[-1]) + 1) for part in np.array_split(np.arange(m), world)]
    assert [shard_range(m, world, r) for r in range(world)] == expected


@pytest.mark.parametrize("name", list(CONFIGS))
def test_single_rank_equals_train(name: str) -> None:
    spec, kw = CONFIGS[name]
    X, y = _data()
    result, diverged = _run(lambda: train_sharded(NetSpec(**spec), X, y, **kw))
    W_ref, h_ref, steps_ref, div_ref = _reference(name)
    assert (result.steps, diverged) == (steps_ref, div_ref)
    assert (result.lo, result.hi, result.world_size) == (0, spec["m"], 1)
    _assert_same_run(
        result.weights_numpy()[0], result.history, W_ref, h_ref, rtol=1e-12 if spec.get("dtype") is None else 1e-6
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_gloo_ranks_equal_one_rank_and_train(two_rank_runs: Path, name: str) -> None:
    W, history, steps, diverged, world = _gather(two_rank_runs, name)
    spec, kw = CONFIGS[name]
    X, y = _data()
    one, one_diverged = _run(lambda: train_sharded(NetSpec(**spec), X, y, **kw))
    W_ref, h_ref, steps_ref, div_ref = _reference(name)
    assert world == 2 and W.shape == (spec["d"], spec["m"])
    assert (steps, diverged) == (one.steps, one_diverged) == (steps_ref, div_ref)
    rtol = 1e-10 if spec.get("dtype") is None else 2e-4  # the sums are taken in another order
    _assert_same_run(W, history, one.weights_numpy()[0], one.history, rtol)
    _assert_same_run(W, history, W_ref, h_ref, rtol)
    if name in ("coupled_diverges", "coupled_overflows"):  # diverged as expreg.train does, at the same step
        assert diverged and steps < kw["max_steps"]


def test_final_checkpoint_holds_the_whole_run(two_rank_runs: Path) -> None:
    W, history, steps, _, _ = _gather(two_rank_runs, KILLED)
    directory = two_rank_runs.parent / "ckpt" / KILLED
    saved = ckpt.load_checkpoint(directory)
    manifest = json.loads((directory / ckpt.MANIFEST).read_text())
    assert (saved.step, saved.world_size, manifest["step"], manifest["final"]) == (steps, 2, steps, True)
    assert sorted(p.name for p in directory.glob("step*.npz")) == manifest["files"]  # older checkpoints pruned
    np.testing.assert_array_equal(saved.W, W)
    _assert_same_run(saved.W, saved.history, W, history, rtol=0)


def _launch_command(world: int, tmp: Path, checkpoint_dir: Path, *extra: str) -> list[tuple[int, str, str]]:
    """``python -m expreg.distributed`` on KILLED's config, started as torchrun starts it; (rc, stdout, stderr) per rank."""
    spec, kw = CONFIGS[KILLED]
    args = [
        sys.executable,
        "-m",
        "expreg.distributed",
        "--n",
        str(DATA["n"]),
        "--d",
        str(DATA["d"]),
        "--seed",
        str(spec["seed"]),
        "--m",
        str(spec["m"]),
        "--init",
        spec["init"],
        "--scaling",
        spec["scaling"],
        "--max-steps",
        str(kw["max_steps"]),
        "--record-every",
        str(kw["record_every"]),
        "--epsilon",
        str(kw["epsilon"]),
        "--checkpoint-dir",
        str(checkpoint_dir),
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
        "--init-method",
        f"file://{tmp / uuid.uuid4().hex}",
        "--json",
        *extra,
    ]
    env = {**os.environ, "WORLD_SIZE": str(world), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            args,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    return [(p.returncode, o[0], o[1]) for p, o in zip(procs, outs, strict=True)]


def test_killed_run_relaunched_by_the_command_ends_as_the_uninterrupted_run(
    two_rank_runs: Path, tmp_path: Path
) -> None:
    directory = two_rank_runs.parent / "ckpt" / "killed"
    assert ckpt.latest_complete_step(directory) == 2 * CHECKPOINT_EVERY  # 6: step 9 is at most on rank 0
    shutil.copytree(directory, tmp_path / "copy")

    ranks = _launch_command(2, tmp_path, directory)  # the relaunch: 2 ranks again, through the command line
    # KILLED stops at max_steps = 15 before epsilon = 1e-6: exit code 3 on every rank, as `expreg train`
    assert [rc for rc, _, _ in ranks] == [3, 3], [err[-2000:] for _, _, err in ranks]
    assert "stopped at --max-steps 15" in ranks[0][2] and "--allow-unconverged" in ranks[0][2]
    assert ranks[1][1].strip() == "" and "stopped at" not in ranks[1][2]  # only rank 0 prints
    summary = json.loads(ranks[0][1])
    W_full, h_full, steps_full, _, _ = _gather(two_rank_runs, KILLED)
    saved = ckpt.load_checkpoint(directory)
    assert (summary["world_size"], summary["steps"], saved.step) == (2, steps_full, steps_full)
    np.testing.assert_array_equal(saved.W, W_full)  # same ranks, same arithmetic: bit for bit
    _assert_same_run(saved.W, saved.history, W_full, h_full, rtol=0)
    _W_ref, h_ref, _steps_ref, _ = _reference(KILLED)
    assert summary["final_residual"] == pytest.approx(h_ref.residual[-1], rel=1e-10)
    again = _launch_command(2, tmp_path, directory, "--allow-unconverged")  # the finished run, from its last checkpoint
    assert [rc for rc, _, _ in again] == [0, 0] and json.loads(again[0][1])["steps"] == steps_full

    spec, kw = CONFIGS[KILLED]  # relaunch as 1 process instead: it re-slices the 2 ranks' files
    X, y = _data()
    one = train_sharded(
        NetSpec(**spec), X, y, checkpoint_dir=tmp_path / "copy", checkpoint_every=CHECKPOINT_EVERY, **kw
    )
    assert one.steps == steps_full
    _assert_same_run(one.weights_numpy()[0], one.history, W_full, h_full, rtol=1e-10)


def test_resume_uses_newest_step_complete_on_every_rank(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    W3, W6 = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    h = History(loss=[1.0, 0.5], residual=[1.4, 1.0], max_movement=[0.0, 0.1], frobenius_movement=[0.0, 0.2])
    for step, W in ((3, W3), (6, W6)):
        for rank, (lo, hi) in enumerate([(0, 3), (3, 5)]):
            if step == 6 and rank == 1:
                continue  # rank 1 was killed before writing step 6
            ckpt.save_shard(
                tmp_path,
                step=step,
                rank=rank,
                world_size=2,
                lo=lo,
                hi=hi,
                m=5,
                W=W[:, lo:hi],
                history=h,
                fingerprint="run",
            )
    (tmp_path / ".step0000000006-rank00001-of00002.npz.x.tmp").write_bytes(b"half")  # an interrupted write
    assert ckpt.latest_complete_step(tmp_path) == 3
    W, history = ckpt.read_slice(tmp_path, 3, 1, 4, fingerprint="run", d=2, m=5)  # a slice across both files
    np.testing.assert_array_equal(W, W3[:, 1:4])
    assert history.loss == h.loss
    with pytest.raises(CheckpointError, match="another run"):
        ckpt.read_slice(tmp_path, 3, 0, 5, fingerprint="other", d=2, m=5)
    keep = [ckpt.shard_path(tmp_path, 3, r, 2) for r in range(2)]
    ckpt.prune(tmp_path, keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)


def test_single_process_resume_after_an_interruption(tmp_path: Path) -> None:
    spec, kw = CONFIGS["coupled_split_pair"]
    X, y = _data()

    class Stop(Exception):
        pass

    def stop(t: int, res: float) -> None:
        if t == 7:
            raise Stop

    with pytest.raises(Stop):
        train_sharded(
            NetSpec(**spec), X, y, checkpoint_dir=tmp_path, checkpoint_every=CHECKPOINT_EVERY, progress=stop, **kw
        )
    assert ckpt.latest_complete_step(tmp_path) == 6
    resumed = train_sharded(NetSpec(**spec), X, y, checkpoint_dir=tmp_path, checkpoint_every=CHECKPOINT_EVERY, **kw)
    full = train_sharded(NetSpec(**spec), X, y, **kw)
    np.testing.assert_array_equal(resumed.W, full.W)
    _assert_same_run(resumed.W, resumed.history, full.W, full.history, rtol=0)
    with pytest.raises(CheckpointError, match="another run"):  # another step size: another run
        train_sharded(NetSpec(**spec), X, y, checkpoint_dir=tmp_path, **{**kw, "lr": 0.003})


class _FourRanks(Communicator):
    world_size = 4


class _RankZeroOfTwo(Communicator):
    """Rank 0 of 2 whose peer never writes: collectives are the identity (enough for a checkpoint check)."""

    world_size = 2


def test_checkpoint_dir_not_shared_by_every_rank_is_an_error(tmp_path: Path) -> None:
    X, y = _data()
    with pytest.raises(CheckpointError, match="not shared by every rank"):
        train_sharded(
            NetSpec(3, 8, init="gaussian"),
            X,
            y,
            max_steps=5,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            comm=_RankZeroOfTwo(),
        )
    assert not (tmp_path / ckpt.MANIFEST).exists()  # the step was never recorded as complete


def test_command_line_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from expreg.cli import main

    assert main(["distributed", "--n", "6", "--d", "3", "--m", "7"]) == 2  # coupled needs m even
    assert main(["distributed", "--m", "8", "--device", "cuda"]) == 2  # CUDA needs the torch backend
    err = capsys.readouterr().err
    assert "error: init='coupled' pairs neurons, so m must be even; got m = 7" in err
    assert "error: device='cuda' needs backend='torch'" in err


def test_bad_input_is_refused_with_a_clear_error() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="smaller than the number of ranks"):
        train_sharded(NetSpec(3, 3, init="gaussian"), X, y, comm=_FourRanks())
    with pytest.raises(ValueError, match="m must be even"):
        NetSpec(3, 7, init="coupled")
    with pytest.raises(ValueError, match="scaling"):
        NetSpec(3, 8, scaling="mean")
    with pytest.raises(ValueError, match=r"X has 3 features|network expects d = 4"):
        train_sharded(NetSpec(4, 8), X, y)


# ------------------------------------------------------------------ ranks that disagree, ranks that are lost (issue 11, item 1)
class _Recorder(Communicator):
    """Rank 1 of 2 whose collective returns its own vector: records what it sends."""

    rank, world_size = 1, 2

    def max(self, v: np.ndarray) -> np.ndarray:
        self.sent = np.array(v, dtype=np.float64)
        return self.sent


class _RankZeroWithPeer(Communicator):
    """Rank 0 of 2 whose max all-reduce combines its vector with the recorded one of rank 1."""

    rank, world_size = 0, 2

    def __init__(self, peer: np.ndarray) -> None:
        self.peer = peer

    def max(self, v: np.ndarray) -> np.ndarray:
        return np.maximum(v, self.peer)


def _agreement_error(
    fields0: list[tuple[str, Any]], fields1: list[tuple[str, Any]], error1: Exception | None = None
) -> str:
    """The message rank 0 stops with when rank 1 holds ``fields1`` ("" when they agree)."""
    from expreg.distributed.sharded import RanksDisagreeError, check_ranks_agree

    peer = _Recorder()
    if error1 is None:
        check_ranks_agree(peer, fields1)  # alone, rank 1 sees no difference
    else:
        with pytest.raises(type(error1)) as raised:  # rank 1's own error, re-raised after it told rank 0
            check_ranks_agree(peer, fields1, error1)
        assert raised.value is error1
    try:
        check_ranks_agree(_RankZeroWithPeer(peer.sent), fields0)
    except RanksDisagreeError as exc:
        return str(exc)
    return ""


def _options(**changes: Any):
    from dataclasses import replace

    from expreg.cli._options import Activation, DType, Init, Labels, RunOptions, Scaling

    base = RunOptions(
        6,
        3,
        8,
        2,
        Activation.exp,
        Scaling.ntk,
        Init.gaussian,
        Labels.uniform,
        None,
        "auto",
        1e-6,
        15,
        4,
        DType.float64,
        "numpy",
        None,
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    "field, other, flag",
    [
        ("seed", 3, "--seed differs (from 2 to 3 over the ranks)"),
        ("lr", "0.5", "--lr differs"),
        ("m", 10, "--m differs (from 8 to 10 over the ranks)"),
        ("n", 7, "--n differs"),
        ("max_steps", 16, "--max-steps differs"),
        ("dtype", "float32", "--dtype differs"),
        ("init", "coupled", "--init differs"),
        ("data", Path("b.npz"), "--data differs"),
        ("epsilon", 1e-3, "--epsilon differs"),
        ("device", "cuda:1", ""),
    ],
)
def test_command_lines_that_differ_are_named(field: str, other: Any, flag: str) -> None:
    """Every rank stops naming the first option that differs; --device may differ (cuda:LOCAL_RANK)."""
    from expreg.cli.distributed_cmd import command_fields

    base = _options()
    if field in ("dtype", "init"):
        other = type(getattr(base, field))(other)
    message = _agreement_error(command_fields(base, None, 3), command_fields(_options(**{field: other}), None, 3))
    if flag:
        assert message.startswith("the ranks were launched with different settings: " + flag), message
    else:
        assert message == ""
    assert "--checkpoint-dir given differs" in _agreement_error(
        command_fields(base, None, 3), command_fields(base, Path("ck"), 3)
    )


def test_runs_that_differ_are_named_by_train_sharded_fields() -> None:
    from expreg.distributed.sharded import run_fields

    X, y = _data()
    spec = NetSpec(3, 8, seed=2, init="gaussian")
    same = dict(
        lr="auto",
        epsilon=1e-3,
        max_steps=10,
        record_every=None,
        track_movement=True,
        checkpoints=False,
        checkpoint_every=5,
    )
    assert _agreement_error(run_fields(spec, X, y, **same), run_fields(spec, X, y, **same)) == ""
    cases = [
        (run_fields(spec, X, y, **{**same, "lr": 0.1}), "lr differs"),
        (run_fields(NetSpec(3, 8, seed=2, init="gaussian", dtype=np.float32), X, y, **same), "dtype differs"),
        (run_fields(spec, X, y + 1e-12, **same), "y differs"),
        (
            run_fields(spec, X[::-1].copy(), y, **same),
            "X differs; rank 0 has an array of shape (6, 3) with sha256 digest",
        ),
        (run_fields(spec, X[:5], y[:5], **same), "n differs (from 5 to 6 over the ranks)"),
    ]
    for fields1, message in cases:
        assert message in _agreement_error(run_fields(spec, X, y, **same), fields1)
    failed = _agreement_error(
        run_fields(spec, X, y, **same), run_fields(spec, None, None, **same), ValueError("bad data on rank 1")
    )
    assert failed.startswith("rank 0 stops: rank(s) 1 of 2 stopped before training with an error of their own")


class _Ranks:
    """``python -m expreg.distributed`` as torchrun starts it, one process per argument list; every process is ended on exit."""

    def __init__(
        self, tmp: Path, rank_args: list[list[str]], *, world: int | None = None, cwds: list[Path] | None = None
    ) -> None:
        world = len(rank_args) if world is None else world
        env = {
            **os.environ,
            "WORLD_SIZE": str(world),
            "GLOO_SOCKET_IFNAME": "lo",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(
                map(str, [Path(expreg.__file__).parents[1], os.environ.get("PYTHONPATH", "")])
            ),
        }
        rdv = f"file://{tmp / uuid.uuid4().hex}"
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "expreg.distributed", *map(str, args), "--init-method", rdv],
                env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                cwd=None if cwds is None else cwds[r],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r, args in enumerate(rank_args)
        ]

    def __enter__(self) -> _Ranks:
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()

    def results(self, timeout: float = 120) -> list[tuple[int, str, str]]:
        outs = [p.communicate(timeout=timeout) for p in self.procs]
        return [(p.returncode, o, " ".join(e.split())) for p, (o, e) in zip(self.procs, outs, strict=True)]


SMALL = ["--n", "6", "--d", "3", "--init", "gaussian", "--max-steps", "5", "--json"]


def test_ranks_with_different_data_all_stop_naming_x(tmp_path: Path) -> None:
    """The same command line in two directories holding different data.npz: the command lines agree, the data do not.

    (Command lines that differ, and a rank that fails alone, are the cases of the two tests above, one collective earlier.)
    """
    dirs = [tmp_path / f"rank{r}" for r in range(2)]
    X, y = _data()
    for r, directory in enumerate(dirs):
        directory.mkdir()
        np.savez(directory / "data.npz", X=X if r == 0 else X[::-1], y=y)
    args = [*SMALL, "--m", "8", "--data", "data.npz"]
    with _Ranks(tmp_path, [args, args], cwds=dirs[:2]) as ranks:
        results = ranks.results()
    for rank, (rc, out, err) in enumerate(results):
        assert (
            rc == 2
            and out == ""
            and err.startswith(
                "error: the ranks were launched with different settings: X differs; "
                f"rank {rank} has an array of shape (6, 3)"
            )
        ), err


def test_a_rank_whose_peer_is_killed_stops_with_a_message(tmp_path: Path) -> None:
    args = [
        "--n",
        "6",
        "--d",
        "3",
        "--m",
        "64",
        "--init",
        "gaussian",
        "--epsilon",
        "0",
        "--max-steps",
        "100000000",
        "--record-every",
        "0",
        "--log-every",
        "1",
        "--timeout",
        "60",
    ]
    with _Ranks(tmp_path, [args, args]) as ranks:
        rank0, rank1 = ranks.procs
        assert rank0.stderr is not None and rank0.stderr.readline().startswith(
            "step 0"
        )  # training has begun (EOF if rank 0 died)
        rank1.kill()
        rank1.communicate()
        _, err = rank0.communicate(timeout=50)  # well before the timeout: a closed connection is noticed at once
    last = err.strip().splitlines()[-1]
    assert rank0.returncode == 1 and "Traceback" not in err  # a runtime error (a peer died), not a usage error
    assert (
        last.startswith("error: rank 0 of 2 lost contact with the other ranks (")
        and "Relaunch the same command" in last
    )


def test_a_rank_alone_stops_after_the_timeout(tmp_path: Path) -> None:
    with _Ranks(tmp_path, [[*SMALL, "--m", "8", "--timeout", "2"]], world=2) as ranks:
        [(rc, out, err)] = ranks.results()
    assert rc == 1 and out == "" and err.startswith("error: rank 0 of 2 could not form the process group within 2 s"), (
        err
    )


def test_a_failed_final_save_keeps_the_finished_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from expreg.engine.checkpoints import ResultNotSavedError

    spec, kw = CONFIGS["gaussian_odd_m"]
    X, y = _data()

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_shard", disk_full)
    with pytest.raises(ResultNotSavedError, match=r"finished \(step 15.*No space left on device") as info:
        train_sharded(NetSpec(**spec), X, y, checkpoint_dir=tmp_path, checkpoint_every=100, **kw)
    full = train_sharded(NetSpec(**spec), X, y, **kw)
    np.testing.assert_array_equal(info.value.result.W, full.W)
    _assert_same_run(info.value.result.W, info.value.result.history, full.W, full.history, rtol=0)


def test_prune_removes_old_steps_and_the_temporaries_of_killed_writes_only(tmp_path: Path) -> None:
    """After a complete step, rank 0's prune deletes older steps' files and what killed atomic writes left
    (a rank's file or the manifest, named as mkstemp names them: ``.NAME.XXXXXXXX.tmp``), nothing else."""
    keep = [tmp_path / f"step0000000006-rank0000{r}-of00002.npz" for r in (0, 1)]
    old = [tmp_path / f"step0000000003-rank0000{r}-of00002.npz" for r in (0, 1)]
    killed = [tmp_path / ".step0000000009-rank00001-of00002.npz.q1w2e3r4.tmp", tmp_path / ".manifest.json.z9x8c7v6.tmp"]
    foreign = [tmp_path / ckpt.MANIFEST, tmp_path / "notes.txt", tmp_path / ".other.json.a1b2c3d4.tmp"]
    for path in keep + old + killed + foreign:
        path.write_bytes(b"x")
    ckpt.prune(tmp_path, keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep + foreign)
