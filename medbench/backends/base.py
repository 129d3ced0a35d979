"""The backend protocol: what every deployment runtime gives the runner.

``Backend.prepare(module, batches, ctx)`` turns the fused, placed PyTorch module medbench would time into
a ``Prepared``: ``step`` is ONE call of the runtime itself on input that was prepared outside the loop
(``InferenceSession.run`` on a pre-built feed, an OpenVINO infer request whose input is already set, a
TorchScript module call), cycling over the input batches only when there is more than one; ``forward`` maps
a torch tensor to the runtime's outputs as torch tensors (for ``scope=end_to_end``, where each iteration
brings a freshly preprocessed batch); ``info`` is what the record's ``backend`` block reports.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch

from medbench.config.schema import BackendConfig
from medbench.errors import MedbenchError
from medbench.results.record import BackendBlock


class BackendError(MedbenchError):
    """A backend cannot run this job: missing extra, impossible device/precision, failed export, outputs differ."""

    kind = "backend"


@dataclass
class BackendInfo:
    """The record's ``backend`` block (minus the outputs check, which the runner adds)."""

    name: str
    version: str | None
    format: str | None = None  # exported file format (onnx, openvino_ir, torchscript, tensorrt_engine)
    file: str | None = None  # the exported file the runtime loaded
    file_sha256: str | None = None
    export_ms: float | None = None  # None on a cache hit
    export_cache_hit: bool | None = None
    load_ms: float | None = None  # loading/compiling the exported file into the runtime (session, compiled model)
    settings: dict[str, Any] = field(default_factory=dict)  # what the runtime reports it uses (threads, streams...)


@dataclass
class Prepared:
    step: Callable[[], Any]  # the timed call: one inference of the runtime on pre-built input
    forward: Callable[[torch.Tensor], Any]  # tensor in, torch tensor(s) out (end_to_end and the outputs check)
    info: BackendInfo
    keepalive: list[Any] = field(default_factory=list)  # objects the step's raw pointers refer to (IO binding)
    runtime: Any = None  # the runtime's own object (session, compiled model, ScriptModule, execution context)


@dataclass
class Deployment:
    """What ``prepare_for_job`` gives the runner: the record's ``backend`` block, the cold-start times of the export
    and the load, and the prepared runtime (None for pytorch, which times the module itself)."""

    block: BackendBlock
    prepared: Prepared | None = None
    cold_start: dict[str, Any] = field(default_factory=dict)  # export_ms, export_cache_hit, backend_load_ms
    mismatch: str | None = None  # one line when the outputs differ from PyTorch's on the same input
    mismatch_fails: bool = False  # fp32: outputs that differ fail the run; lower precisions warn

    @property
    def warnings(self) -> list[str]:
        return [self.mismatch] if self.mismatch and not self.mismatch_fails else []

    def check(self) -> None:
        """Raise (a failed run, the block kept in its record) when fp32 outputs differ from PyTorch's."""
        if self.mismatch and self.mismatch_fails:
            raise BackendError(self.mismatch)


@dataclass(frozen=True)
class Context:
    """What a backend needs to know about the job besides the module."""

    config: BackendConfig
    device: torch.device
    dtype: torch.dtype
    precision: str
    imgsz: tuple[int, int]
    batch: int
    threads: int  # intra-op threads (backend.threads, else the job's torch threads)
    cache_dir: Path
    identity: dict[str, Any]  # what the exported graph depends on (weights/cfg hash, state hash, ...)


class Backend(Protocol):
    name: str
    extra: str  # the pip extra that installs it: pip install "medbench[<extra>]"
    precisions: dict[str, tuple[str, ...]]  # device type -> precisions it can run

    def version(self) -> str: ...

    def prepare(self, module: torch.nn.Module, batches: Sequence[torch.Tensor], ctx: Context) -> Prepared: ...


def cycling(calls: Sequence[Callable[[], Any]]) -> Callable[[], Any]:
    """The step: the single call itself when there is one input batch, else the next one in turn."""
    if len(calls) == 1:
        return calls[0]
    nxt = itertools.cycle(calls).__next__
    return lambda: nxt()()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
