"""One job → one result record: build the model and inputs, deploy and time them, derive the statistics.

Each stage returns its typed part (``ModelPart``, ``InputPart``, the backend's ``Deployment``, ``Timed``, the
measurement's ``Measured``) and ``run_job`` assembles the ``Record`` once, from the parts the stages got to: a job
that fails half-way keeps what its earlier stages found. ``run_job`` never raises for a failing job: the exception
becomes ``status: failed`` with an ``error`` block, so the caller can always write the record.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from medbench.analysis import stats
from medbench.backends import Deployment, Prepared, check_backend, prepare_for_job
from medbench.config.schema import Job, fit_imgsz
from medbench.results.record import ModelComplexity, Record
from medbench.results.store import error_block, provenance, utc_now
from medbench.run.devices import resolve_device
from medbench.run.gpu_lock import exclusive_gpu
from medbench.run.measured import measured
from medbench.run.parts import InputPart, ModelPart, Parts, Timed, assemble, job_metadata
from medbench.run.progress import PointProgress
from medbench.run.runtime import (CudaGraphStep, check_runtime, compile_module, compile_stats, cuda_bf16_mode, dtype_for,
                                  effective_channels_last, place_model, runtime_settings, time_compilation)
from medbench.run.steps import make_step, step_batches
from medbench.run.telemetry import Probe, empty_block
from medbench.run.timing import clean_start, measure, time_once

log = logging.getLogger("medbench")


def _measure(job: Job, list_dir: Path, parts: Parts) -> None:
    """Run the stages in order, keeping each one's part in ``parts`` as it returns."""
    device = resolve_device(job.device)
    parts.device = str(device)
    check_backend(job, device)
    mode = check_runtime(job.runtime, device, job.scope)
    channels_last = effective_channels_last(job.runtime.channels_last, device, job.model.kind)
    parts.runtime.update(channels_last=channels_last, channels_last_requested=job.runtime.channels_last)
    job = dataclasses.replace(job, runtime=dataclasses.replace(job.runtime, channels_last=channels_last))
    # The GPU is ours from here: its context, placement, preloading and compilation disturb another process's
    # timed loop too.
    with exclusive_gpu(device) as held, runtime_settings(job.runtime, device) as applied:
        parts.locked, parts.gpu_lock = True, None if held is None else {"key": held.key, "waited_s": held.waited_s}
        dtype = dtype_for(job.runtime.precision, device)
        clean_start(device)  # earlier jobs' caches and peaks must not count in this one's memory figures
        parts.runtime.update(applied)
        bf16, parts.warnings = _bf16_mode(device, dtype)
        parts.runtime.update(bf16)
        parts.model = model = _load_model(job, device, dtype)
        job = replace(job, imgsz=model.imgsz)
        parts.inputs = inputs = _load_inputs(job, device, dtype, list_dir)
        with torch.inference_mode():
            parts.backend = _deploy(job, model.module, inputs.inputs, device, dtype, model.metadata)
        parts.backend.check()  # fp32 outputs that differ: a failed run that keeps its backend block
        parts.timed = _timed_section(job, model.module, inputs.inputs, device, dtype, mode, parts.backend.prepared,
                                     label=model.metadata["model_name"])
    parts.measured = measured(parts.timed.measurement, job.batch, parts.timed.telemetry, job.iters.target_ci_pct,
                              inputs.input_MB)


def _bf16_mode(device: torch.device, dtype: torch.dtype) -> tuple[dict[str, Any], list[str]]:
    """``bf16_emulated`` (and a warning) when a GPU runs bf16 through emulation: slower than GPUs built for it."""
    if dtype is not torch.bfloat16 or device.type != "cuda":
        return {}, []
    if cuda_bf16_mode(device) != "emulated":
        return {"bf16_emulated": False}, []
    return {"bf16_emulated": True}, [f"bf16 is emulated on {torch.cuda.get_device_name(device)} (no native bf16 "
                                     f"before compute capability 8.0): timings do not show what bf16 hardware does"]


def _load_model(job: Job, device: torch.device, dtype: torch.dtype) -> ModelPart:
    """Build/load, count, fuse and place the model; ``model_load_ms`` = build (or copy from the process's
    model cache, then ``model_from_cache`` is true) + fuse + move to the device."""
    from medbench.models import MODELS, accuracy, cached_gflops, prepare_for_inference

    (loaded, cached), build_ms = time_once(lambda: MODELS.get(job.model, job.seed), torch.device("cpu"))
    warnings = list(loaded.warnings)
    meta = {"model_name": loaded.name, "label_source": loaded.label_source, "random_init": loaded.random_init,
            "weights": loaded.weights, "cfg": loaded.cfg, "weights_sha256": loaded.weights_sha256, "task": loaded.task,
            "num_classes": loaded.num_classes, "cfg_sha256": loaded.cfg_sha256}
    params = loaded.params  # counted as built, before fusing folds BatchNorm away
    imgsz, warning = fit_imgsz(job.imgsz, loaded.stride)
    if warning:
        warnings.append(warning)
        h, w = job.imgsz
        meta.update(imgsz_requested=h if h == w else [h, w], imgsz=imgsz[0] if imgsz[0] == imgsz[1] else list(imgsz))
    key = MODELS.key(job.model, job.seed)
    gflops_unfused = cached_gflops(loaded.module, imgsz, (*key, "as built"))
    (module, fused), fuse_ms = time_once(lambda: prepare_for_inference(loaded.module, fuse=job.model.fuse),
                                         torch.device("cpu"))
    # GFLOPs of the model as timed: the fused one when fused (Ultralytics' "summary (fused)" figure)
    gflops = cached_gflops(module, imgsz, (*key, "fused")) if fused else gflops_unfused
    if gflops is None:
        warnings.append("GFLOPs could not be computed by Ultralytics' get_flops; reported as null")
    module, place_ms = time_once(lambda: place_model(module, device, dtype, job.runtime.channels_last), device)
    first_param = next(module.parameters(), None)
    meta["model_dtype"] = _dtype_name(first_param.dtype if first_param is not None else dtype)
    return ModelPart(module, tuple(imgsz), meta,
                     ModelComplexity(params=params, params_M=params / 1e6, gflops=gflops,
                                     gflops_unfused=gflops_unfused, fused=fused),
                     {"model_load_ms": build_ms + fuse_ms + place_ms, "model_from_cache": cached},  # later points copy
                     warnings, accuracy.resolve(job.model.accuracy, loaded.accuracy))  # config, else the checkpoint's


def _load_inputs(job: Job, device: torch.device, dtype: torch.dtype, list_dir: Path) -> InputPart:
    """The input set (preloaded on the device for scope=forward) and its provenance."""
    from medbench.inputs import build_inputs

    inputs = build_inputs(job.input, imgsz=job.imgsz, batch=job.batch, seed=job.seed, device=device,
                          dtype=dtype, list_dir=list_dir, preload=job.scope == "forward")
    batches = getattr(inputs, "batches", None)
    return InputPart(inputs, {"benchmark_list": inputs.benchmark_list, "benchmark_size": inputs.benchmark_size,
                              "benchmark_list_sha256": inputs.benchmark_list_sha256, "input_shape": list(inputs.shape),
                              "input_dtype": _dtype_name(batches[0].dtype if batches else dtype)},
                     sum(b.numel() * b.element_size() for b in batches) / 2**20 if batches else None,
                     list(inputs.warnings))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _deploy(job: Job, module: torch.nn.Module, inputs: Any, device: torch.device, dtype: torch.dtype,
            model: dict[str, Any]) -> Deployment:
    """The backend stage: a non-PyTorch backend exports/loads the module here (cached; outputs checked; see
    medbench.backends); pytorch gives its block only."""
    return prepare_for_job(job, module, step_batches(job, inputs, device, dtype), device, dtype, model)


def _timed_section(job: Job, module: torch.nn.Module, inputs: Any, device: torch.device, dtype: torch.dtype,
                   mode: str | None, prepared: Prepared | None = None, label: str | None = None) -> Timed:
    """Everything that runs the model, in one block: compile / CUDA graph capture, the first forward,
    warm-up, the timed loop and the telemetry around it (read right after the loop, before the pipelined
    pass, which runs only for scope=forward)."""
    probe = Probe(device)
    after: dict[str, Any] = {"telemetry": None, "stages": None}
    with torch.inference_mode():
        step, after_warmup = make_step(job, module, inputs, device, dtype, prepared)
        step, after_warmup, cold = _prepare(step, after_warmup, job, module, inputs, device, dtype, mode)
        _, cold["first_forward_ms"] = time_once(step, device)
        log.info("timing %s on %s: %d warm-up + %d iterations, input %s",
                 label or job.model.name, device, job.iters.warmup, job.iters.iters, tuple(inputs.shape))

        def after_loop() -> None:
            after["telemetry"] = probe.finish()
            if hasattr(step, "stage_stats"):
                after["stages"] = step.stage_stats()

        bar = PointProgress(label or job.model.name, job.iters.warmup, job.iters.iters)
        try:
            m = measure(step, device=device, warmup=job.iters.warmup, iters=job.iters.iters,
                        min_time_s=job.iters.min_time_s, max_iters=job.iters.max_iters,
                        pipelined_iters=job.iters.pipelined_iters if job.scope == "forward" else 0,
                        progress=bar.timed, warmup_progress=bar.warmup, after_warmup=_then(after_warmup, probe.start),
                        after_loop=after_loop, stop=_precision_rule(job.iters.target_ci_pct),
                        max_time_s=job.iters.max_time_s)
            bar.finish(len(m.samples_ms))
        finally:
            bar.close()
    if mode is not None:
        cold.update(compile_stats(module))
    return Timed(m, cold, after["telemetry"] or empty_block(), after["stages"], _compile_warnings(cold))


def _compile_warnings(cold: dict[str, Any]) -> list[str]:
    out = []
    if cold.get("graph_breaks"):
        out.append(f"torch.compile left {cold['graph_breaks']} graph break(s) "
                   f"({'; '.join(cold['graph_break_reasons'])}): parts of the model ran eagerly")
    if cold.get("recompiles"):
        out.append(f"torch.compile recompiled {cold['recompiles']} time(s) "
                   f"({', '.join(cold['recompiled'])}); past dynamo's recompile limit code runs eagerly")
    return out


def _prepare(step: Callable[[], Any], after_warmup: Callable[[], None] | None, job: Job, module: torch.nn.Module,
             inputs: Any, device: torch.device, dtype: torch.dtype, mode: str | None,
             ) -> tuple[Callable[[], Any], Callable[[], None] | None, dict[str, Any]]:
    """One-off preparation of the step (compile, CUDA graph capture), timed into cold_start, not the samples."""
    cold: dict[str, Any] = {}
    if mode is not None:
        _, cold["eager_forward_ms"] = time_once(step, device)  # lazy model state exists before dynamo traces
        step, after_warmup = make_step(job, compile_module(module, mode), inputs, device, dtype)
        cold["compile_ms"] = time_compilation(step, device, mode)  # torch.compile is lazy: the first call compiles
    if job.runtime.cuda_graphs:
        batches = step.batches
        step, cold["cuda_graph_capture_ms"] = time_once(lambda: CudaGraphStep(module, batches, device), device)
    return step, after_warmup, cold


def _precision_rule(target_pct: float | None) -> Callable[[list[float]], bool] | None:
    """iters.target_ci_pct → "the median's 95% interval is within ±target % of the median" (None: no rule)."""
    if target_pct is None:
        return None

    def precise_enough(samples_ms: list[float]) -> bool:
        half = stats.ci_halfwidth_pct(samples_ms)
        return half is not None and half <= target_pct

    return precise_enough


def _then(first: Callable[[], None] | None, second: Callable[[], None]) -> Callable[[], None]:
    """Call ``first`` (if any), then ``second``."""
    if first is None:
        return second
    return lambda: (first(), second())[-1]


def run_job(job: Job, *, list_dir: Path, overrides: list[str] | None = None,
            choices: dict[str, Any] | None = None) -> Record:
    """Run one job and return its record, assembled once from the parts its stages returned; a failure is recorded,
    never raised (SIGINT / SIGTERM re-raise with the record's JSON as ``exc.record`` for the caller to write)."""
    meta = job_metadata(job, overrides or [], choices or {})
    started = {**provenance(), "started_at": utc_now()}
    parts = Parts()
    try:
        _measure(job, list_dir, parts)
    except Exception as exc:  # every failure becomes a record: nothing is lost
        return assemble(meta, parts, "failed", error_block(exc), started)
    except KeyboardInterrupt as exc:  # SIGINT / SIGTERM: the caller writes this record, then stops
        error = {"message": str(exc) or "interrupted", "exception": type(exc).__name__}
        exc.record = assemble(meta, parts, "interrupted", error, started).to_json()  # type: ignore[attr-defined]
        raise
    return assemble(meta, parts, "ok", None, started)
