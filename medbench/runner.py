"""One job → one SPEC §4 record: build the model and inputs, time them, derive the statistics.

``run_job`` never raises for a failing job: the exception becomes ``status: failed`` with an
``error`` block, so the caller can always write the record.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medbench import stats
from medbench.devices import resolve_device
from medbench.result import SCHEMA_VERSION, collect_env, error_block, provenance, utc_now
from medbench.runtime import dtype_for, place_batch, place_model, runtime_settings
from medbench.schema import Job
from medbench.timing import measure, time_once

log = logging.getLogger("medbench")


def new_record(job: Job, overrides: list[str], choices: dict[str, Any]) -> dict[str, Any]:
    """The record skeleton with every SPEC §4 key present, filled from the job (values come later)."""
    h, w = job.imgsz
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "error": None,
        "metadata": {
            "model_name": job.model.name, "weights": job.model.weights, "cfg": job.model.cfg,
            "random_init": job.model.weights is None, "imgsz": h if h == w else [h, w], "batch": job.batch,
            "device": job.device, "device_requested": job.device, "warmup": job.iters.warmup,
            "iters": job.iters.iters, "seed": job.seed, "timestamp": utc_now(), "benchmark_list": None,
            "benchmark_size": None, "benchmark_list_sha256": None, "precision": job.runtime.precision,
            "overrides": list(overrides), "choices": dict(choices), "scope": job.scope,
            "model_kind": job.model.kind, "task": job.model.task, "input_kind": job.input.kind,
            "runtime": {k: getattr(job.runtime, k) for k in vars(job.runtime)},
            "iters_config": {k: getattr(job.iters, k) for k in vars(job.iters)},
        },
        "model_complexity": {"params": None, "params_M": None, "gflops": None, "fused": None},
        "latency": None, "throughput": None, "memory": None,
        "cold_start": {"model_load_ms": None, "first_forward_ms": None},
        "samples_ms": None, "noise": None, "stages": None, "warnings": [],
        "env": None, "provenance": {**provenance(), "started_at": utc_now(), "ended_at": None},
    }


def _forward_fn(module: torch.nn.Module, batches: list[torch.Tensor]) -> Callable[[], Any]:
    """The timed call: one forward on the next input batch (cycling), nothing else."""
    if len(batches) == 1:
        x = batches[0]
        return lambda: module(x)
    cycle = itertools.cycle(batches)
    return lambda: module(next(cycle))


def _progress(done: int, planned: int, last_ms: float) -> None:
    log.info("  timed %d/%d iterations (last %.2f ms)", done, planned, last_ms)


def _measure_into(record: dict[str, Any], job: Job, list_dir: Path) -> None:
    from medbench.inputs import build_inputs
    from medbench.models import build_model, compute_gflops, count_params, prepare_for_inference

    meta = record["metadata"]
    device = resolve_device(job.device)
    meta["device"] = str(device)
    dtype = dtype_for(job.runtime.precision, device)
    with runtime_settings(job.runtime, device) as applied:
        meta["runtime"].update(applied)
        loaded, build_ms = time_once(lambda: build_model(job.model), torch.device("cpu"))
        meta.update(random_init=loaded.random_init, weights=loaded.weights, cfg=loaded.cfg,
                    weights_sha256=loaded.weights_sha256, task=loaded.task, num_classes=loaded.num_classes)
        params = count_params(loaded.module)
        gflops = compute_gflops(loaded.module, job.imgsz)
        if gflops is None:
            record["warnings"].append("GFLOPs could not be computed by Ultralytics' get_flops; reported as null")
        module, fused = prepare_for_inference(loaded.module, fuse=job.model.fuse)
        module, place_ms = time_once(lambda: place_model(module, device, dtype, job.runtime.channels_last), device)
        record["model_complexity"] = {"params": params, "params_M": params / 1e6, "gflops": gflops, "fused": fused}
        record["cold_start"]["model_load_ms"] = build_ms + place_ms

        inputs = build_inputs(job.input, imgsz=job.imgsz, batch=job.batch, seed=job.seed, device=device,
                              dtype=dtype, list_dir=list_dir, preload=job.scope == "forward")
        record["warnings"].extend(inputs.warnings)
        meta.update(benchmark_list=inputs.benchmark_list, benchmark_size=inputs.benchmark_size,
                    benchmark_list_sha256=inputs.benchmark_list_sha256, input_shape=list(inputs.shape))
        step, after_warmup = _make_step(job, module, inputs, device, dtype)

        with torch.inference_mode():
            _, record["cold_start"]["first_forward_ms"] = time_once(step, device)
            log.info("timing %s on %s: %d warm-up + %d iterations, input %s",
                     job.model.name, device, job.iters.warmup, job.iters.iters, tuple(inputs.shape))
            m = measure(step, device=device, warmup=job.iters.warmup, iters=job.iters.iters,
                        min_time_s=job.iters.min_time_s, max_iters=job.iters.max_iters,
                        pipelined_iters=job.iters.pipelined_iters, progress=_progress, after_warmup=after_warmup)
    _fill_measurement(record, m, job.batch)
    if hasattr(step, "stage_stats"):
        record["stages"] = step.stage_stats()


def _make_step(job: Job, module: torch.nn.Module, inputs: Any, device: torch.device,
               dtype: torch.dtype) -> tuple[Callable[[], Any], Callable[[], None] | None]:
    """The callable the engine times, for the job's scope, and what to reset after warm-up."""
    if job.scope == "end_to_end":
        from medbench.inputs.end_to_end import EndToEndStep

        step = EndToEndStep(module, inputs.images, imgsz=job.imgsz, batch=job.batch, device=device, dtype=dtype,
                            task=job.model.task, channels_last=job.runtime.channels_last)
        return step, step.reset
    batches = [place_batch(b, job.runtime.channels_last) for b in inputs.batches]
    return _forward_fn(module, batches), None


def _fill_measurement(record: dict[str, Any], m: Any, batch: int) -> None:
    """Derived statistics and raw samples into the record."""
    summary = stats.summarize(m.samples_ms, batch)
    record["latency"] = summary["latency"]
    record["throughput"] = {**summary["throughput"], "pipelined_ms": m.pipelined_ms,
                            "pipelined_iters": m.pipelined_iters, "fps_pipelined": stats.fps(m.pipelined_ms, batch)}
    record["noise"] = summary["noise"]
    if summary["noise"]["warning"]:
        record["warnings"].append(summary["noise"]["warning"])
    record["memory"] = m.memory
    record["samples_ms"] = m.samples_ms
    record["metadata"]["timer"] = m.timer
    record["metadata"]["samples"] = len(m.samples_ms)


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
    finally:
        record["env"] = collect_env(os.getcwd())
        record["provenance"]["ended_at"] = utc_now()
    return record
