"""One job → one result record: build the model and inputs, time them, derive the statistics.

``run_job`` never raises for a failing job: the exception becomes ``status: failed`` with an
``error`` block, so the caller can always write the record.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medbench.analysis import stats
from medbench.backends import check_backend, prepare_for_job, restructure
from medbench.models.identity import checkpoint_label
from medbench.run.devices import resolve_device
from medbench.run.gpu_lock import exclusive_gpu
from medbench.run.measured import fill_measurement
from medbench.run.progress import PointProgress
from medbench.results.store import SCHEMA_VERSION, collect_env, error_block, provenance, utc_now
from medbench.run.runtime import (CudaGraphStep, check_runtime, compile_module, compile_stats, cuda_bf16_mode, dtype_for,
                                  effective_channels_last, place_batch, place_model, runtime_settings, time_compilation)
from medbench.config.schema import Job, fit_imgsz, parse_imgsz
from medbench.run.telemetry import Probe, empty_block
from medbench.run.timing import Measurement, clean_start, measure, time_once

log = logging.getLogger("medbench")


def new_record(job: Job, overrides: list[str], choices: dict[str, Any]) -> dict[str, Any]:
    """The record skeleton with every key present, filled from the job (values come later)."""
    h, w = job.imgsz
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "status": "running",
        "error": None,
        "metadata": {
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
        },
        "model_complexity": {"params": None, "params_M": None, "gflops": None, "gflops_unfused": None,
                             "fused": None},
        "latency": None, "throughput": None, "memory": None,
        "cold_start": {"model_load_ms": None, "first_forward_ms": None, "warmup_ms": None, "compile_ms": None,
                       "cuda_graph_capture_ms": None, "model_from_cache": None, "eager_forward_ms": None,
                       "graph_breaks": None, "graph_break_reasons": None, "compiled_graphs": None, "recompiles": None,
                       "recompiled": None,
                       "export_ms": None, "export_cache_hit": None, "backend_load_ms": None},
        "backend": None,
        "samples_ms": None, "noise": None, "stages": None, "telemetry": empty_block(), "warnings": [],
        "env": None, "provenance": {**provenance(), "started_at": utc_now(), "ended_at": None},
    }


def _measure_into(record: dict[str, Any], job: Job, list_dir: Path) -> None:
    meta = record["metadata"]
    device = resolve_device(job.device)
    meta["device"] = str(device)
    check_backend(job, device)
    mode = check_runtime(job.runtime, device, job.scope)
    channels_last = effective_channels_last(job.runtime.channels_last, device, job.model.kind)
    meta["runtime"].update(channels_last=channels_last, channels_last_requested=job.runtime.channels_last)
    job = dataclasses.replace(job, runtime=dataclasses.replace(job.runtime, channels_last=channels_last))
    # The GPU is ours from here: its context, placement, preloading and compilation disturb another process's
    # timed loop too.
    with exclusive_gpu(device) as held, runtime_settings(job.runtime, device) as applied:
        record["provenance"]["gpu_lock"] = None if held is None else {"key": held.key, "waited_s": held.waited_s}
        dtype = dtype_for(job.runtime.precision, device)
        clean_start(device)  # earlier jobs' caches and peaks must not count in this one's memory figures
        meta["runtime"].update(applied)
        _note_bf16(record, device, dtype)
        module = _load_model(record, job, device, dtype)
        job = replace(job, imgsz=parse_imgsz(record["metadata"]["imgsz"]))  # as rounded to the model's stride
        inputs = _load_inputs(record, job, device, dtype, list_dir)
        m = _timed_section(record, job, module, inputs, device, dtype, mode)
    fill_measurement(record, m, job.batch)
    batches = getattr(inputs, "batches", None)  # preloaded (scope=forward): device memory held by the inputs
    record["memory"]["input_MB"] = sum(b.numel() * b.element_size() for b in batches) / 2**20 if batches else None


def _note_bf16(record: dict[str, Any], device: torch.device, dtype: torch.dtype) -> None:
    """Record (and warn) when a GPU runs bf16 through emulation: slower than on GPUs built for it."""
    if dtype is not torch.bfloat16 or device.type != "cuda":
        return
    emulated = cuda_bf16_mode(device) == "emulated"
    record["metadata"]["runtime"]["bf16_emulated"] = emulated
    if emulated:
        record["warnings"].append(f"bf16 is emulated on {torch.cuda.get_device_name(device)} (no native bf16 "
                                  f"before compute capability 8.0): timings do not show what bf16 hardware does")


def _load_model(record: dict[str, Any], job: Job, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Build/load, count, fuse and place the model; ``model_load_ms`` = build (or copy from the process's
    model cache, then ``model_from_cache`` is true) + fuse + move to the device."""
    from medbench.models import MODELS, cached_gflops, prepare_for_inference

    (loaded, cached), build_ms = time_once(lambda: MODELS.get(job.model, job.seed), torch.device("cpu"))
    record["cold_start"]["model_from_cache"] = cached  # a sweep's later points copy the model instead of building
    record["metadata"].update(model_name=loaded.name, label_source=loaded.label_source)
    record["warnings"].extend(loaded.warnings)
    record["metadata"].update(random_init=loaded.random_init, weights=loaded.weights, cfg=loaded.cfg,
                              weights_sha256=loaded.weights_sha256, cfg_sha256=loaded.cfg_sha256, task=loaded.task,
                              num_classes=loaded.num_classes)
    params = loaded.params  # counted as built, before fusing folds BatchNorm away
    imgsz, warning = fit_imgsz(job.imgsz, loaded.stride)
    if warning:
        record["warnings"].append(warning)
        record["metadata"].update(imgsz_requested=record["metadata"]["imgsz"],
                                  imgsz=imgsz[0] if imgsz[0] == imgsz[1] else list(imgsz))
    key = MODELS.key(job.model, job.seed)
    gflops_unfused = cached_gflops(loaded.module, imgsz, (*key, "as built"))
    (module, fused), fuse_ms = time_once(lambda: prepare_for_inference(loaded.module, fuse=job.model.fuse),
                                         torch.device("cpu"))
    # GFLOPs of the model as timed: the fused one when fused (Ultralytics' "summary (fused)" figure)
    gflops = cached_gflops(module, imgsz, (*key, "fused")) if fused else gflops_unfused
    if gflops is None:
        record["warnings"].append("GFLOPs could not be computed by Ultralytics' get_flops; reported as null")
    module, place_ms = time_once(lambda: place_model(module, device, dtype, job.runtime.channels_last), device)
    record["model_complexity"] = {"params": params, "params_M": params / 1e6, "gflops": gflops,
                                  "gflops_unfused": gflops_unfused, "fused": fused}
    record["cold_start"]["model_load_ms"] = build_ms + fuse_ms + place_ms
    first_param = next(module.parameters(), None)
    record["metadata"]["model_dtype"] = _dtype_name(first_param.dtype if first_param is not None else dtype)
    return module


def _load_inputs(record: dict[str, Any], job: Job, device: torch.device, dtype: torch.dtype, list_dir: Path) -> Any:
    """The input set (preloaded on the device for scope=forward) and its provenance in the record."""
    from medbench.inputs import build_inputs

    inputs = build_inputs(job.input, imgsz=job.imgsz, batch=job.batch, seed=job.seed, device=device,
                          dtype=dtype, list_dir=list_dir, preload=job.scope == "forward")
    record["warnings"].extend(inputs.warnings)
    batches = getattr(inputs, "batches", None)
    record["metadata"].update(benchmark_list=inputs.benchmark_list, benchmark_size=inputs.benchmark_size,
                              benchmark_list_sha256=inputs.benchmark_list_sha256, input_shape=list(inputs.shape),
                              input_dtype=_dtype_name(batches[0].dtype if batches else dtype))
    return inputs


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _timed_section(record: dict[str, Any], job: Job, module: torch.nn.Module, inputs: Any, device: torch.device,
                   dtype: torch.dtype, mode: str | None) -> Measurement:
    """Everything that runs the model, in one block: compile / CUDA graph capture, the first forward,
    warm-up, the timed loop and the telemetry around it (read right after the loop, before the pipelined
    pass, which runs only for scope=forward)."""
    cold = record["cold_start"]
    probe = Probe(device)
    with torch.inference_mode():
        step, after_warmup = _make_step(job, module, inputs, device, dtype, record)
        step, after_warmup = _prepare(step, after_warmup, job, module, inputs, device, dtype, mode, cold)
        _, cold["first_forward_ms"] = time_once(step, device)
        log.info("timing %s on %s: %d warm-up + %d iterations, input %s",
                 record["metadata"]["model_name"], device, job.iters.warmup, job.iters.iters, tuple(inputs.shape))

        def after_loop() -> None:
            record["telemetry"] = probe.finish()
            if hasattr(step, "stage_stats"):
                record["stages"] = step.stage_stats()

        bar = PointProgress(f"{record['metadata']['model_name']}", job.iters.warmup, job.iters.iters)
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
        _compile_warnings(record)
    return m


def _compile_warnings(record: dict[str, Any]) -> None:
    cold = record["cold_start"]
    if cold["graph_breaks"]:
        record["warnings"].append(f"torch.compile left {cold['graph_breaks']} graph break(s) "
                                  f"({'; '.join(cold['graph_break_reasons'])}): parts of the model ran eagerly")
    if cold["recompiles"]:
        record["warnings"].append(f"torch.compile recompiled {cold['recompiles']} time(s) "
                                  f"({', '.join(cold['recompiled'])}); past dynamo's recompile limit code runs eagerly")


def _prepare(step: Callable[[], Any], after_warmup: Callable[[], None] | None, job: Job, module: torch.nn.Module,
             inputs: Any, device: torch.device, dtype: torch.dtype, mode: str | None,
             cold: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], None] | None]:
    """One-off preparation of the step (compile, CUDA graph capture), timed into cold_start, not the samples."""
    if mode is not None:
        _, cold["eager_forward_ms"] = time_once(step, device)  # lazy model state exists before dynamo traces
        step, after_warmup = _make_step(job, compile_module(module, mode), inputs, device, dtype)
        cold["compile_ms"] = time_compilation(step, device, mode)  # torch.compile is lazy: the first call compiles
    if job.runtime.cuda_graphs:
        batches = step.batches
        step, cold["cuda_graph_capture_ms"] = time_once(lambda: CudaGraphStep(module, batches, device), device)
    return step, after_warmup


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


class ForwardStep:
    """The timed call for scope=forward: one forward on the next input batch (cycling), nothing else."""

    def __init__(self, module: torch.nn.Module, batches: list[torch.Tensor]) -> None:
        self.module, self.batches = module, batches
        self._next = itertools.cycle(batches).__next__

    def __call__(self) -> Any:
        return self.module(self._next())


def _make_step(job: Job, module: torch.nn.Module, inputs: Any, device: torch.device, dtype: torch.dtype,
               record: dict[str, Any] | None = None) -> tuple[Callable[[], Any], Callable[[], None] | None]:
    """The callable the engine times, for the job's scope and backend, and what to reset after warm-up.

    With ``record`` a non-PyTorch backend exports/loads the module here (cached; outputs checked; see
    medbench.backends) and the timed call is one call of that runtime."""
    exported = job.backend.name not in ("pytorch", "torchscript")  # runtimes that take plain NCHW arrays
    channels_last = job.runtime.channels_last and not exported
    if exported and record is not None:
        record["metadata"]["runtime"]["channels_last"] = False  # the runtime lays its tensors out itself
    batches = [place_batch(b, channels_last) for b in inputs.batches]
    if job.backend.name != "pytorch" and not batches:  # end_to_end: export on a seeded batch of the job's shape
        from medbench.inputs.synthetic import synthetic_batch

        batches = [synthetic_batch(job.batch, job.imgsz, seed=job.seed, device=device, dtype=dtype)]
    prepared = prepare_for_job(record, job, module, batches, device, dtype) if record is not None else None
    if job.scope == "end_to_end":
        from medbench.inputs.end_to_end import EndToEndStep

        forward = None if prepared is None else (lambda x: restructure(module, prepared.forward(x)))
        step = EndToEndStep(module, inputs.images, imgsz=job.imgsz, batch=job.batch, device=device, dtype=dtype,
                            task=job.model.task, channels_last=channels_last, forward=forward)
        return step, step.reset
    if prepared is not None:
        return prepared.step, None
    return ForwardStep(module, batches), None


def _resolved(device: str) -> torch.device | None:
    """The timed device once ``_measure_into`` resolved it (``cuda:1``), else None (env then describes GPU 0)."""
    try:
        return torch.device(device)
    except (RuntimeError, ValueError):
        return None


def run_job(job: Job, *, list_dir: Path, overrides: list[str] | None = None,
            choices: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one job and return its record; a failure is recorded, never raised."""
    record = new_record(job, overrides or [], choices or {})
    try:
        _measure_into(record, job, list_dir)
        record["status"] = "ok"
    except Exception as exc:  # every failure becomes a record: nothing is lost
        record["status"] = "failed"
        record["error"] = error_block(exc)
    except KeyboardInterrupt as exc:  # SIGINT / SIGTERM: the caller writes this record, then stops
        record["status"] = "interrupted"
        record["error"] = {"type": "interrupted", "exception": type(exc).__name__, "message": str(exc) or "interrupted"}
        exc.record = record  # type: ignore[attr-defined]
        raise
    finally:
        record["env"] = collect_env(os.getcwd(), device=_resolved(record["metadata"]["device"]))
        record["provenance"]["ended_at"] = utc_now()
    return record
