"""The typed parts the runner's stages return, and the one place they become a record (``assemble``).

Each stage of ``medbench.run.runner`` returns its part: the model (``ModelPart``), the inputs (``InputPart``), the
backend (``medbench.backends.Deployment``), the timed section (``Timed``) and the measurement (``Measured``).
``assemble`` builds the ``Record`` from the job's metadata and whichever parts the stages got to, so a job that fails
half-way keeps what its earlier stages found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from medbench.backends import Deployment
from medbench.config.schema import Job
from medbench.models.identity import checkpoint_label
from medbench.results.record import ColdStart, ModelComplexity, Record, interrupted
from medbench.results.store import collect_env, utc_now
from medbench.run.measured import Measured
from medbench.run.telemetry import empty_block
from medbench.run.timing import Measurement


@dataclass
class ModelPart:
    """The model as timed (built, fused, placed) and what loading it found."""

    module: torch.nn.Module
    imgsz: tuple[int, int]  # as rounded to the model's stride
    metadata: dict[str, Any]  # model_name, label_source, weights, cfg, weights_sha256, task, num_classes, model_dtype
    complexity: ModelComplexity
    cold_start: dict[str, Any]  # model_load_ms, model_from_cache
    warnings: list[str] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None  # validation metrics of the weights (medbench.models.accuracy)


@dataclass
class InputPart:
    """The input set (preloaded on the device for scope=forward) and its provenance."""

    inputs: Any
    metadata: dict[str, Any]  # benchmark_list, benchmark_size, benchmark_list_sha256, input_shape, input_dtype
    input_MB: float | None  # device memory the preloaded batches hold
    warnings: list[str] = field(default_factory=list)


@dataclass
class Timed:
    """What running the model gave: the raw measurement and everything measured around it."""

    measurement: Measurement
    cold_start: dict[str, Any]  # first_forward_ms, eager_forward_ms, compile_ms, cuda_graph_capture_ms, compile stats
    telemetry: dict[str, Any]
    stages: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Parts:
    """The parts the stages returned, in order; a stage that did not run leaves its part None."""

    device: str | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # effective settings over the configured ones
    locked: bool = False  # the stages got to the GPU lock (``gpu_lock`` is then what it held, None on CPU)
    gpu_lock: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # about the device (bf16 emulation)
    model: ModelPart | None = None
    inputs: InputPart | None = None
    backend: Deployment | None = None
    timed: Timed | None = None
    measured: Measured | None = None


def job_metadata(job: Job, overrides: list[str], choices: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata`` block as far as the job alone says it (the stages' parts add what they find)."""
    h, w = job.imgsz
    return {
        "model_name": checkpoint_label(job.model.name, None, job.model.weights)[0] or job.model.cfg,
        "label_source": None, "weights": job.model.weights, "cfg": job.model.cfg,
        "random_init": job.model.weights is None, "imgsz": h if h == w else [h, w], "batch": job.batch,
        "device": job.device, "device_requested": job.device, "warmup": job.iters.warmup,
        "iters": job.iters.iters, "seed": job.seed, "repeat": job.repeat, "timestamp": utc_now(), "benchmark_list": None,
        "benchmark_size": None, "benchmark_list_sha256": None, "precision": job.runtime.precision,
        "overrides": list(overrides), "choices": dict(choices), "scope": job.scope,
        "backend": job.backend.name, "model_kind": job.model.kind, "task": job.model.task,
        "input_kind": job.input.kind,
        "trust_weights": job.model.trust_weights, "model_imports": list(job.model.imports),
        "runtime": {k: getattr(job.runtime, k) for k in vars(job.runtime)},
        "iters_config": {k: getattr(job.iters, k) for k in vars(job.iters)},
    }


def exported(backend: str) -> bool:
    """Runtimes that take plain NCHW arrays (and lay their tensors out themselves)."""
    return backend not in ("pytorch", "torchscript")


def assemble(job_meta: dict[str, Any], parts: Parts, status: str, error: dict[str, Any] | None,
             started: dict[str, Any]) -> Record:
    """The record, built once from the job's metadata and the parts its stages returned."""
    model, inputs, backend, timed, done = parts.model, parts.inputs, parts.backend, parts.timed, parts.measured
    runtime = {**job_meta["runtime"], **parts.runtime}
    if inputs is not None and exported(job_meta["backend"]):
        runtime["channels_last"] = False  # from the backend stage on: the runtime lays its tensors out itself
    metadata = {**job_meta, **({"device": parts.device} if parts.device else {}), "runtime": runtime,
                **(model.metadata if model else {}), **(inputs.metadata if inputs else {}),
                **(done.metadata if done else {})}
    cold: dict[str, Any] = {key: None for key in ColdStart.model_fields}  # every key written, null or not
    for part in (model, backend, timed):
        cold.update(part.cold_start if part else {})
    if done:
        cold["warmup_ms"] = done.warmup_ms
    warnings = [*parts.warnings, *(model.warnings if model else []), *(inputs.warnings if inputs else []),
                *(backend.warnings if backend else []), *(timed.warnings if timed else []),
                *(done.warnings if done else [])]
    complexity = model.complexity if model else ModelComplexity(**{key: None for key in ModelComplexity.model_fields})
    lock = {"gpu_lock": parts.gpu_lock} if parts.locked else {}
    fields = dict(metadata=metadata, model_complexity=complexity, accuracy=model.accuracy if model else None,
                  cold_start=cold,
                  backend=backend.block if backend else None, stages=timed.stages if timed else None,
                  telemetry=done.telemetry if done else timed.telemetry if timed else empty_block(),
                  warnings=warnings, provenance={**started, **lock, "ended_at": utc_now()},
                  env=collect_env(os.getcwd(), device=_resolved(metadata["device"])))
    if done:
        fields.update(latency=done.latency, throughput=done.throughput, memory=done.memory,
                      samples_ms=done.samples_ms, noise=done.noise)
    if status == "interrupted":
        return interrupted(error["message"], error.get("exception"), **fields)
    return Record(status=status, error=error, **fields)


def _resolved(device: str) -> torch.device | None:
    """The timed device once ``_measure`` resolved it (``cuda:1``), else None (env then describes GPU 0)."""
    try:
        return torch.device(device)
    except (RuntimeError, ValueError):
        return None
