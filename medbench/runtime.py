"""Device-side settings of a job: precision, memory format, threads, cuDNN/TF32 switches.

Everything here is a setting the result records; ``runtime_settings`` restores the process-wide
switches it changed in ``finally``, so jobs of one sweep run in the same process without leaking
settings into each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from medbench.errors import DeviceError
from medbench.schema import RuntimeConfig

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_for(precision: str, device: torch.device) -> torch.dtype:
    """The torch dtype for ``precision`` on ``device``, or a one-line error where it cannot run."""
    dtype = DTYPES[precision]
    if dtype is torch.float16 and device.type == "cpu":
        raise DeviceError("precision=fp16 is not supported on cpu (use fp32 or bf16, or a GPU device)")
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision=bf16 is not supported by {torch.cuda.get_device_name(device)}")
    return dtype


@contextlib.contextmanager
def runtime_settings(runtime: RuntimeConfig, device: torch.device) -> Iterator[dict]:
    """Apply threads, cudnn.benchmark and TF32 for the duration of a job; yields what was applied."""
    saved = (torch.get_num_threads(), torch.backends.cudnn.benchmark,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if runtime.threads is not None:
            torch.set_num_threads(runtime.threads)
        torch.backends.cudnn.benchmark = runtime.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = runtime.tf32
        torch.backends.cudnn.allow_tf32 = runtime.tf32
        yield {"threads": torch.get_num_threads(), "cudnn_benchmark": runtime.cudnn_benchmark, "tf32": runtime.tf32}
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.cudnn.benchmark = saved[1]
        torch.backends.cuda.matmul.allow_tf32 = saved[2]
        torch.backends.cudnn.allow_tf32 = saved[3]


def place_model(module: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                channels_last: bool) -> torch.nn.Module:
    """Move the model to its device, dtype and memory format, in eval mode without gradients."""
    module = module.to(device=device, dtype=dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def place_batch(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Give an input batch the memory format the model was given."""
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
