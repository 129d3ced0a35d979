"""Device strings with Ultralytics' meaning; missing GPUs are one clear error."""

import pytest
import torch

from medbench.run.devices import resolve_device
from medbench.errors import DeviceError

from conftest import HAS_CUDA


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda:0") if HAS_CUDA else torch.device("cpu"))


@pytest.mark.parametrize("spec", ["0,1", "0, 1", "[0,1]"])
def test_several_gpus_are_refused(spec):
    with pytest.raises(DeviceError, match="exactly one device"):
        resolve_device(spec)


def test_unknown_device():
    with pytest.raises(DeviceError, match="unknown device 'tpu'.*available: cpu"):
        resolve_device("tpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-GPU error")
@pytest.mark.parametrize("spec", ["0", 0, "cuda", "cuda:1"])
def test_gpu_without_cuda_is_one_line(spec):
    with pytest.raises(DeviceError) as err:
        resolve_device(spec)
    assert "CUDA is not available" in str(err.value) and "available: cpu" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.gpu
def test_gpu_indices():
    assert resolve_device("0") == torch.device("cuda:0")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="only"):
        resolve_device(str(torch.cuda.device_count()))


# ---------------------------------------------------------------- identity, bf16, lock dir (pure pieces)


def test_mig_uuid_keeps_its_own_prefix():
    from medbench.run.nvml import bare_uuid, format_uuid

    raw = "0d6f2ab1-8c5e-5f0b-9a1e-3b2f7c1d4e5f"
    assert format_uuid(raw, set()) == f"GPU-{raw}"
    assert format_uuid(raw, {raw}) == f"MIG-{raw}"  # a MIG instance: NVML knows it by MIG-…, never GPU-…
    assert format_uuid(f"MIG-{raw}", set()) == f"MIG-{raw}" and format_uuid(f"GPU-{raw}", {raw}) == f"GPU-{raw}"
    assert bare_uuid(f"MIG-{raw.upper()}") == bare_uuid(f"GPU-{raw}") == raw


def test_mig_instances_named_in_cuda_visible_devices(monkeypatch):
    from medbench.run.gpu_lock import gpu_lock_key
    from medbench.run.nvml import _visible_mig_uuids

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-AAAA-1111, GPU-bbbb,0")
    assert _visible_mig_uuids() == {"aaaa-1111"}
    assert gpu_lock_key(torch.device("cpu")) is None


def test_bf16_mode_by_compute_capability():
    from medbench.run.runtime import bf16_mode

    assert bf16_mode(8, False) == "native" and bf16_mode(9, True) == "native"  # Ampere, Hopper
    assert bf16_mode(7, True) == "emulated"  # Volta/Turing: torch runs bf16 through slower paths
    assert bf16_mode(6, False) is None


def test_lock_dir_is_node_shared_by_default(tmp_path, monkeypatch):
    from medbench.run.gpu_lock import DEFAULT_LOCK_DIR, choose_lock_dir, lock_dir

    assert DEFAULT_LOCK_DIR == "/var/tmp/medbench-locks"  # not /tmp or /dev/shm: private per Slurm job/container
    assert choose_lock_dir(str(tmp_path / "mine")) == tmp_path / "mine"  # $MEDBENCH_LOCK_DIR wins
    assert choose_lock_dir(None, str(tmp_path / "locks")) == tmp_path / "locks"
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    fallback = choose_lock_dir(None, str(not_a_dir / "locks"))
    assert fallback.name == "medbench-locks" and fallback.parent != not_a_dir  # unusable parent: the temp dir
    monkeypatch.setenv("MEDBENCH_LOCK_DIR", str(tmp_path / "env"))
    assert lock_dir() == tmp_path / "env"


def test_lock_is_a_filelock_that_names_its_holder(tmp_path):
    from medbench.run.gpu_lock import exclusive_lock

    with exclusive_lock("gpu-test", tmp_path) as held:
        assert held.path == tmp_path / "gpu-test.lock" and held.waited_s < 5
        assert held.path.read_text().startswith(f"pid {__import__('os').getpid()} on ")
        assert oct(tmp_path.stat().st_mode & 0o7777) == "0o1777"
    with exclusive_lock("gpu-test", tmp_path):  # released: taken again at once
        pass


def test_env_describes_the_timed_device_only():
    from medbench.results.store import gpu_env

    cpu = gpu_env(torch.device("cpu"))
    assert cpu["gpu_name"] is None and cpu["gpu_uuid"] is None  # a CPU job has no timed GPU
    missing = gpu_env(torch.device("cuda", 64))  # a job that asked for a GPU that is not there: no crash
    assert missing["gpu_name"] is None and missing["gpu_count"] == torch.cuda.device_count()


@pytest.mark.gpu
def test_env_of_the_last_gpu():
    from medbench.results.store import gpu_env
    from medbench.run.nvml import torch_uuid

    last = torch.cuda.device_count() - 1
    env = gpu_env(torch.device("cuda", last))
    assert env["gpu_name"] == torch.cuda.get_device_name(last) and env["gpu_uuid"] == torch_uuid(last)
