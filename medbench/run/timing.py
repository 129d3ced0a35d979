"""The one timing engine, shared by the CLI runner and the Python API.

``measure(fn, device=...)`` runs ``fn`` for ``warmup`` discarded iterations, then times at least
``iters`` iterations and, if asked, keeps going until ``min_time_s`` of timed work has passed.
CPU iterations are timed with ``time.perf_counter``. On CUDA the engine first makes ``device`` the
current device (so ``fn``'s kernels and the events share ``current_stream(device)``, whatever device
the caller had current), creates one event pair before the loop, and times each call between
``start.record(stream)`` and ``end.record(stream)`` followed by ``torch.cuda.synchronize``, so queued
kernels are inside the sample they belong to. Beside each event time it keeps the host's
``perf_counter`` time of the same call (record + ``fn`` + sync): where host time exceeds event time,
Python overhead or the sync wait shows.

Then, on CUDA and only when the caller asks for it (``pipelined_iters`` not 0), a *pipelined* pass
runs calls back to back between one event pair (no per-iteration sync): what async execution (CUDA
graphs, larger batches) buys in throughput. It is capped (``pipelined_count``: at most 100 calls and
about 2 s unless ``pipelined_iters`` says otherwise) and runs after ``after_loop``, so telemetry and
stage timers read at ``after_loop`` cover exactly the timed loop. Peak memory is reset after warm-up,
and the allocation at that moment is kept, so ``working_MB`` = peak - allocation before the loop.

The loop body does nothing but read the clock, call ``fn`` and append: the harness overhead is
measured by ``benchmarks/overhead.py``.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from medbench.run.devices import synchronize

ProgressFn = Callable[[int, int, float], None]  # (done, planned, last_sample_ms)
StopRule = Callable[[list[float]], bool]  # samples_ms so far -> True when they are precise enough
LoopFn = Callable[..., tuple[list[float], "list[float] | None"]]  # (fn, device, n, budget_s, cap, progress)
WarmupProgressFn = Callable[[int, int], None]  # (done, planned) after each warm-up iteration
PROGRESS_EVERY_S = 0.5  # the timed loop calls ``progress`` at most this often, between two samples


PIPELINED_MAX_CALLS = 100  # default cap of the pipelined pass (calls)
PIPELINED_MAX_S = 2.0  # ... and of its expected duration (seconds, from the median sample)


@dataclass
class Measurement:
    """Raw outcome of one timed loop: samples in milliseconds, plus memory and the pipelined figure."""

    samples_ms: list[float]
    warmup: int
    pipelined_ms: float | None = None  # CUDA: mean ms per call when calls are queued back to back
    pipelined_iters: int | None = None
    memory: dict[str, float | None] = field(default_factory=dict)
    timer: str = "perf_counter"
    host_samples_ms: list[float] | None = None  # CUDA: perf_counter ms of the same calls (record + fn + sync)
    stopped_by: str = "iters"  # iters (count / min_time_s reached) | target (stop rule met) | cap (max_iters / max_time_s)
    warmup_ms: float | None = None  # wall time of the discarded warm-up iterations


def pipelined_count(requested: int | None, samples_ms: list[float]) -> int:
    """Calls in the pipelined pass: ``requested`` as given (0 = none); by default as many as were timed,
    at most ``PIPELINED_MAX_CALLS`` and about ``PIPELINED_MAX_S`` seconds at the median sample."""
    if requested is not None:
        return max(0, requested)
    if not samples_ms:
        return 0
    median = statistics.median(samples_ms)
    by_time = int(PIPELINED_MAX_S * 1e3 / median) if median > 0 else len(samples_ms)
    return max(1, min(len(samples_ms), PIPELINED_MAX_CALLS, by_time))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (the kernel cannot reset it)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def _cuda_memory(device: torch.device) -> dict[str, float | None]:
    mb = 1024 * 1024
    return {
        "peak_gpu_mem_MB": torch.cuda.max_memory_allocated(device) / mb,
        "allocated_MB": torch.cuda.memory_allocated(device) / mb,
        "reserved_MB": torch.cuda.memory_reserved(device) / mb,
        "peak_reserved_MB": torch.cuda.max_memory_reserved(device) / mb,
    }


def _memory(device: torch.device, allocated_before: float | None = None) -> dict[str, float | None]:
    none = {"peak_gpu_mem_MB": None, "allocated_MB": None, "reserved_MB": None}
    gpu = _cuda_memory(device) if device.type == "cuda" else none
    working = None if allocated_before is None else gpu["peak_gpu_mem_MB"] - allocated_before
    return {**gpu, "allocated_before_MB": allocated_before, "working_MB": working, "peak_rss_MB": peak_rss_mb()}


def clean_start(device: torch.device) -> None:
    """Before a job on ``device``: collect garbage (earlier jobs' models, CUDA-graph pools), give cached
    blocks back to the driver and reset the peak counters, so memory figures are this job's alone."""
    gc.collect()
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)


def _time_host(fn: Callable[[], Any], device: torch.device, n: int, budget_s: float, cap: int,
               progress: ProgressFn | None) -> list[float]:
    """perf_counter loop (CPU, and MPS with a sync): returns seconds per call."""
    perf = time.perf_counter
    needs_sync = device.type != "cpu"
    samples: list[float] = []
    append = samples.append
    total = 0.0
    next_report = perf() + PROGRESS_EVERY_S
    while len(samples) < n or (total < budget_s and len(samples) < cap):
        t0 = perf()
        fn()
        if needs_sync:
            synchronize(device)
        t1 = perf()
        append(t1 - t0)
        total += t1 - t0
        if progress is not None and t1 >= next_report:
            progress(len(samples), n, (t1 - t0) * 1e3)
            next_report = t1 + PROGRESS_EVERY_S
    return [s * 1e3 for s in samples]


def _time_host_pair(fn: Callable[[], Any], device: torch.device, n: int, budget_s: float, cap: int,
                    progress: ProgressFn | None) -> tuple[list[float], None]:
    """``_time_host`` in the shape of ``_time_cuda`` (no separate host times: the samples are host times)."""
    return _time_host(fn, device, n, budget_s, cap, progress), None


def _time_cuda(fn: Callable[[], Any], device: torch.device, n: int, budget_s: float, cap: int,
               progress: ProgressFn | None) -> tuple[list[float], list[float]]:
    """Event-pair loop with a synchronize after every call: returns (event ms, host ms) per call."""
    stream = torch.cuda.current_stream(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)  # torch creates a CUDA event at its first record: do it here, not inside the loop
    end.record(stream)
    torch.cuda.synchronize(device)
    samples: list[float] = []
    host: list[float] = []
    perf = time.perf_counter
    start_wall = perf()
    next_report = start_wall + PROGRESS_EVERY_S
    while len(samples) < n or (perf() - start_wall < budget_s and len(samples) < cap):
        t0 = perf()
        start.record(stream)
        fn()
        end.record(stream)
        torch.cuda.synchronize(device)
        t1 = perf()
        samples.append(start.elapsed_time(end))
        host.append((t1 - t0) * 1e3)
        if progress is not None and t1 >= next_report:
            progress(len(samples), n, samples[-1])
            next_report = perf() + PROGRESS_EVERY_S
    return samples, host


def _time_until(stop: StopRule, loop: LoopFn, fn: Callable[[], Any], device: torch.device,
                samples: list[float], host: list[float] | None, cap: int, max_time_s: float | None,
                progress: ProgressFn | None) -> tuple[list[float], list[float] | None, str]:
    """More timed rounds until ``stop`` holds or a cap is hit: ``(samples, host, "target" | "cap")``.

    Each round adds a quarter of the samples so far (so the rule runs O(log n) times), trimmed so that the
    round fits what is left of ``max_iters`` and, at the current pace, of ``max_time_s``.
    """
    while True:
        if stop(samples):
            return samples, host, "target"
        spent_s = sum(samples) / 1e3
        if len(samples) >= cap or (max_time_s is not None and spent_s >= max_time_s):
            return samples, host, "cap"
        n = min(max(1, len(samples) // 4), cap - len(samples))
        if max_time_s is not None and spent_s > 0:
            n = max(1, min(n, int((max_time_s - spent_s) / (spent_s / len(samples))) + 1))
        done = len(samples)
        report = None if progress is None else (lambda k, _n, ms: progress(done + k, cap, ms))
        more, more_host = loop(fn, device, n, 0.0, n, report)
        samples = samples + more
        host = None if host is None or more_host is None else host + more_host


def time_pipelined(fn: Callable[[], Any], device: torch.device, n: int) -> float:
    """CUDA only: mean ms per call for ``n`` calls queued back to back between one event pair."""
    stream = torch.cuda.current_stream(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    synchronize(device)
    start.record(stream)
    for _ in range(n):
        fn()
    end.record(stream)
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / n


def _current(device: torch.device) -> contextlib.AbstractContextManager:
    """Make a CUDA ``device`` current for the block (events, streams, allocations); nothing elsewhere."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def measure(fn: Callable[[], Any], *, device: torch.device | str = "cpu", warmup: int = 10, iters: int = 100,
            min_time_s: float = 0.0, max_iters: int | None = None, pipelined_iters: int | None = None,
            progress: ProgressFn | None = None, after_warmup: Callable[[], None] | None = None,
            after_loop: Callable[[], None] | None = None, stop: StopRule | None = None,
            max_time_s: float | None = None, warmup_progress: WarmupProgressFn | None = None) -> Measurement:
    """Warm up, then time ``fn()``; see the module docstring for the rules.

    ``after_warmup`` is called once between warm-up and the timed loop (e.g. to clear stage timers and
    start telemetry), ``after_loop`` once right after it, before the pipelined pass. ``pipelined_iters=0``
    skips that pass (do so where calls back to back mean nothing, or pull data). The caller decides on
    ``torch.inference_mode()``: the engine times whatever ``fn`` does.

    ``stop`` (e.g. "the median's 95% interval is within ±1%"): after the first ``iters`` (and ``min_time_s``),
    keep timing in rounds until ``stop(samples_ms)`` is true, ``max_iters`` samples or ``max_time_s`` seconds
    of timed work; the rule runs between rounds, never inside the timed loop.

    ``warmup_progress(done, warmup)`` is called after each warm-up iteration and ``progress(done, planned,
    last_ms)`` at most every ``PROGRESS_EVERY_S`` of the timed loop, after a sample's second clock read
    (``medbench.run.progress.PointProgress`` draws them): neither is inside a sample.
    """
    device = torch.device(device)
    with _current(device):
        warmup_start = time.perf_counter()
        for done in range(1, warmup + 1):
            fn()
            if warmup_progress is not None:
                warmup_progress(done, warmup)
        synchronize(device)
        warmup_ms = (time.perf_counter() - warmup_start) * 1e3
        if after_warmup is not None:
            after_warmup()
        before = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device) / (1024 * 1024)
        cap = max_iters if max_iters is not None else max(iters, 10 * iters)
        loop: LoopFn = _time_cuda if device.type == "cuda" else _time_host_pair
        samples, host = loop(fn, device, iters, min_time_s, cap, progress)
        stopped_by = "cap" if sum(samples) < min_time_s * 1e3 else "iters"
        if stop is not None:
            samples, host, stopped_by = _time_until(stop, loop, fn, device, samples, host, cap, max_time_s, progress)
        result = Measurement(samples_ms=samples, warmup=warmup, memory=_memory(device, before), host_samples_ms=host,
                             timer="cuda_event" if device.type == "cuda" else "perf_counter", stopped_by=stopped_by,
                             warmup_ms=warmup_ms)
        if after_loop is not None:
            after_loop()
        n = pipelined_count(pipelined_iters, samples) if device.type == "cuda" else 0
        if n > 0:
            result.pipelined_iters = n
            result.pipelined_ms = time_pipelined(fn, device, n)
    return result


def time_once(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Time a single call (cold start) with the host clock and a sync: returns (fn's value, ms)."""
    with _current(device):
        synchronize(device)
        t0 = time.perf_counter()
        value = fn()
        synchronize(device)
    return value, (time.perf_counter() - t0) * 1e3
