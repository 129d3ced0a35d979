"""Device-side settings of a job: precision, memory format, threads, cuDNN/TF32 switches,
``torch.compile`` and CUDA graphs.

Everything here is a setting the result records; ``runtime_settings`` restores the process-wide
switches it changed in ``finally``, so jobs of one sweep run in the same process without leaking
settings into each other.

Two options change *what* is timed, and each has a one-off preparation cost that is reported in
``cold_start`` and never inside the samples:

- ``compile``: one *eager* forward on the real input first (the Detect head builds its anchors and
  ``shape`` on first sight of an input: traced fresh, that code breaks the graph and recompiles), then
  ``torch.compile(model, mode=...)``, which compiles lazily: the first call of the step is the
  compilation (``compile_ms``); warm-up and timing run after it. Dynamo's graph breaks, graphs and
  recompilations are counted (``compile_stats``) and a run with any is warned about.
- ``cuda_graphs``: the forward is captured once into a CUDA graph on a static input and the timed step
  is ``graph.replay()`` (``cuda_graph_capture_ms`` = side-stream warm-up + capture; ``first_forward_ms``
  is then the first *replay*). With more than one input batch the step also copies the next batch into
  the static input (a device-to-device copy, then part of every sample). Combined with ``compile`` it is
  refused: ``compile=reduce-overhead`` is torch.compile's own CUDA-graph mode.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import platform
from collections.abc import Callable, Iterator
from typing import Any

import torch

from medbench.errors import ConfigError, DeviceError
from medbench.config.schema import RuntimeConfig
from medbench.run import tf32
from medbench.run.timing import time_once
from medbench.text import first_line

log = logging.getLogger("medbench")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_COMPILE_OFF = {"", "off", "false", "no", "none", "null", "0"}  # YAML `compile: off` arrives as "False"
_COMPILE_ON = {"true", "on", "yes", "1"}
GRAPH_WARMUP_ITERS = 3  # eager forwards on a side stream before capture (lazy init, cuDNN autotune, anchors)


def bf16_mode(major: int, emulation_works: bool) -> str | None:
    """How a CUDA GPU of compute capability ``major`` runs bf16: "native" (Ampere, 8.x, and newer),
    "emulated" (older GPUs where torch still computes in bf16 through slower paths), or None."""
    if major >= 8:
        return "native"
    return "emulated" if emulation_works else None


def cuda_bf16_mode(device: torch.device) -> str | None:
    """``bf16_mode`` of ``device`` itself (``torch.cuda.is_bf16_supported`` asks the *current* device)."""
    with torch.cuda.device(device):
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        emulated = not native and torch.cuda.is_bf16_supported(including_emulation=True)
    return bf16_mode(8 if native else 0, emulated)


def dtype_for(precision: str, device: torch.device) -> torch.dtype:
    """The torch dtype for ``precision`` on ``device``, or a one-line error where it cannot run."""
    dtype = DTYPES[precision]
    if dtype is torch.float16 and device.type == "cpu":
        raise DeviceError("precision=fp16 is not supported on cpu (use fp32 or bf16, or a GPU device)")
    if dtype is torch.bfloat16 and device.type == "cuda" and cuda_bf16_mode(device) is None:
        raise DeviceError(f"precision=bf16 is not supported by {torch.cuda.get_device_name(device)}")
    return dtype


def channels_last_rule(device_type: str, machine: str, system: str, onednn: bool) -> bool:
    """Ultralytics' ``AutoBackend`` default (8.4+): channels_last for PyTorch models on x86 CPUs with oneDNN
    under Linux or Windows; contiguous on CUDA and elsewhere."""
    return device_type == "cpu" and machine in ("AMD64", "x86_64") and onednn and system in ("Linux", "Windows")


def effective_channels_last(requested: bool | None, device: torch.device, model_kind: str) -> bool:
    """``runtime.channels_last``: as given, or (null) what the installed Ultralytics' ``predict()`` would use
    for an Ultralytics model (its ``AutoBackend`` has a ``channels_last`` default since 8.4), else False."""
    if requested is not None:
        return requested
    if model_kind != "ultralytics":
        return False
    try:
        from ultralytics.nn.autobackend import AutoBackend

        if "channels_last" not in inspect.signature(AutoBackend.__init__).parameters:
            return False  # an older Ultralytics: predict() keeps the contiguous format
    except Exception:
        return False
    onednn = torch.backends.mkldnn.is_available() and bool(torch.backends.mkldnn.enabled)
    return channels_last_rule(device.type, platform.machine(), platform.system(), onednn)


def compile_mode(value: Any) -> str | None:
    """``runtime.compile`` → a torch.compile mode, or None for eager (null/off/false)."""
    if value is None or value is False:
        return None
    text = str(value).strip().lower()
    if text in _COMPILE_OFF:
        return None
    if text in _COMPILE_ON:
        return "default"
    if text not in COMPILE_MODES:
        raise ConfigError(f"runtime.compile must be null/off or one of {', '.join(COMPILE_MODES)}; got {value!r}")
    return text


def check_runtime(runtime: RuntimeConfig, device: torch.device, scope: str) -> str | None:
    """Refuse combinations that cannot run, in one line, before anything is built; returns the compile mode."""
    mode = compile_mode(runtime.compile)
    if runtime.cuda_graphs:
        if device.type != "cuda":
            raise DeviceError(f"runtime.cuda_graphs needs a CUDA device (this job runs on {device})")
        if scope != "forward":
            raise ConfigError("runtime.cuda_graphs needs scope=forward (end_to_end runs host code between kernels)")
        if mode is not None:
            raise ConfigError("runtime.cuda_graphs cannot be combined with runtime.compile; "
                              "use runtime.compile=reduce-overhead (torch.compile's own CUDA graphs) instead")
    return mode


@contextlib.contextmanager
def runtime_settings(runtime: RuntimeConfig, device: torch.device) -> Iterator[dict]:
    """Apply threads, cudnn.benchmark and TF32 (only where asked: see ``medbench.run.tf32``) and make
    ``device`` the current CUDA device, for the duration of a job; yields what is in effect, TF32 as the
    *effective* ``tf32_conv`` / ``tf32_matmul`` values."""
    saved = (torch.get_num_threads(), torch.backends.cudnn.benchmark)
    try:
        if runtime.threads is not None:
            torch.set_num_threads(runtime.threads)
        torch.backends.cudnn.benchmark = runtime.cudnn_benchmark
        with tf32.apply(runtime.tf32, runtime.tf32_conv, runtime.tf32_matmul) as precision, \
                torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            yield {"threads": torch.get_num_threads(), "cudnn_benchmark": runtime.cudnn_benchmark, **precision,
                   "compile": compile_mode(runtime.compile), "cuda_graphs": runtime.cuda_graphs}
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.cudnn.benchmark = saved[1]


def place_model(module: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                channels_last: bool) -> torch.nn.Module:
    """Move the model to its device, dtype and memory format, in eval mode without gradients."""
    module = module.to(device=device, dtype=dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    from medbench.models import freeze

    return freeze(module)


def place_batch(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Give an input batch the memory format the model was given."""
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def compile_module(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``torch.compile`` the model (lazy: nothing compiles until the first call).

    Dynamo's caches and counters are reset first: in a sweep every job compiles afresh instead of piling
    up recompilations until dynamo's cache limit silently falls back to eager, and counts only its own.
    """
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        return torch.compile(module, mode=mode)
    except Exception as exc:
        raise DeviceError(f"torch.compile(mode={mode}) is not available here: {first_line(exc, with_type=True)}") from exc


def compile_stats(module: torch.nn.Module) -> dict[str, Any]:
    """What dynamo did since ``compile_module``: graph breaks (count and first reasons), graphs compiled, and
    recompilations per module ``forward`` (cache entries beyond the first; past ``recompile_limit`` dynamo
    silently runs that code eagerly)."""
    from torch._dynamo.utils import counters

    module = getattr(module, "_orig_mod", module)
    breaks = counters["graph_break"]
    reasons = sorted({str(msg).strip().splitlines()[0] for msg in breaks})[:5]
    try:
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list

        codes = {type(m).forward.__code__ for m in module.modules()}
        extra = {c.co_qualname.split(".<locals>.")[-1]: len(_debug_get_cache_entry_list(c)) - 1 for c in codes}
        recompiled: dict[str, int] | None = {name: n for name, n in sorted(extra.items()) if n > 0}
    except Exception:  # a torch without this debug hook: unknown, not zero
        recompiled = None
    return {"graph_breaks": sum(breaks.values()), "graph_break_reasons": reasons,
            "compiled_graphs": counters["stats"]["unique_graphs"],
            "recompiles": None if recompiled is None else sum(recompiled.values()), "recompiled": recompiled}


def time_compilation(step: Callable[[], Any], device: torch.device, mode: str) -> float:
    """Run the first call of a compiled step (= the compilation) and return its ms; one line if it fails."""
    try:
        _, ms = time_once(step, device)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:
        log.debug("torch.compile failed", exc_info=True)
        raise DeviceError(f"torch.compile(mode={mode}) failed on {device}: {first_line(exc, with_type=True)}") from exc
    return ms


class CudaGraphStep:
    """The timed step for ``runtime.cuda_graphs``: replay one captured forward on a static input.

    Built following PyTorch's recipe (``torch.cuda.graphs``): a few eager forwards on a side stream
    (lazy initialisation, cuDNN autotuning, the Detect head's anchors built on first sight of a shape),
    then ``torch.cuda.graph`` captures one forward. Construct and call it under the same
    ``torch.inference_mode()`` (the static tensors are inference tensors).
    """

    def __init__(self, module: torch.nn.Module, batches: list[torch.Tensor], device: torch.device) -> None:
        self.static_x = batches[0].clone()  # keeps the memory format (channels_last)
        self._next = itertools.cycle(batches).__next__ if len(batches) > 1 else None
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_ITERS):
                module(self.static_x)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.static_out = module(self.static_x)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            raise DeviceError(f"runtime.cuda_graphs: the forward cannot be captured as a CUDA graph: "
                              f"{first_line(exc, with_type=True)}") from exc
        torch.cuda.synchronize(device)

    def __call__(self) -> Any:
        if self._next is not None:
            self.static_x.copy_(self._next())
        self.graph.replay()
        return self.static_out
