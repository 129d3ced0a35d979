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
