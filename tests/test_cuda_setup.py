"""A CUDA run that cannot work stops with one clear line, before joining a process group (issue 10, item 6).

Simulated on the CPU by replacing torch.cuda's answers (is_available,
device_count); ``init_from_environment`` must raise before
torch.distributed is touched.
"""

from __future__ import annotations

import pytest

from expreg.distributed import comm as distributed_comm

torch = pytest.importorskip("torch")


@pytest.fixture
def torchrun_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them, and a process group that must not be joined."""
    import torch.distributed as dist

    for k, v in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3"}.items():
        monkeypatch.setenv(k, v)

    def joined(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the process group was joined before the device was checked")

    monkeypatch.setattr(dist, "init_process_group", joined)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    return monkeypatch


def test_cuda_without_a_gpu_is_one_clear_error(torchrun_env: pytest.MonkeyPatch) -> None:
    torchrun_env.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"needs CUDA.*device='cpu'") as err:
        distributed_comm.init_from_environment("cuda")
    assert "\n" not in str(err.value)


def test_local_rank_beyond_the_gpus_is_one_clear_error(torchrun_env: pytest.MonkeyPatch) -> None:
    torchrun_env.setattr(torch.cuda, "is_available", lambda: True)
    torchrun_env.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"cuda:3 does not exist: 2 GPU\(s\).*LOCAL_RANK=3.*--nproc-per-node 2") as err:
        distributed_comm.init_from_environment("cuda")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="cuda:5 does not exist"):
        distributed_comm.init_from_environment("cuda:5")


def test_a_visible_gpu_passes_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    distributed_comm.check_cuda_device(torch, "cuda:1")  # no error


def test_a_non_integer_local_rank_is_named(torchrun_env: pytest.MonkeyPatch) -> None:
    torchrun_env.setenv("LOCAL_RANK", "first")
    with pytest.raises(ValueError, match="LOCAL_RANK='first' must be an integer"):
        distributed_comm.init_from_environment("cuda")
