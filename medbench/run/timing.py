"""The one timing engine, shared by the CLI runner and the Python API.

``measure(fn, device=...)`` runs ``fn`` for ``warmup`` discarded iterations, then times at least
``iters`` iterations and, if asked, keeps going until ``min_time_s`` of timed work has passed.
CPU iterations are timed with ``time.perf_counter``; CUDA iterations with a pair of
``torch.cuda.Event(enable_timing=True)`` around each call and ``torch.cuda.synchronize`` after it,
so queued kernels are inside the sample they belong to. On CUDA a second, *pipelined* pass runs
``n`` calls back to back between one event pair (no per-iteration sync), which shows what async
execution (CUDA graphs, larger batches) buys in throughput. Peak memory is reset after warm-up.

The loop body does nothing but read the clock, call ``fn`` and append: the harness overhead is
measured by ``benchmarks/overhead.py``.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from medbench.run.devices import synchronize

ProgressFn = Callable[[int, int, float], None]  # (done, planned, last_sample_ms)
StopRule = Callable[[list[float]], bool]  # samples_ms so far -> True when they are precise enough
PROGRESS_EVERY_S = 2.0


@dataclass
class Measurement:
    """Raw outcome of one timed loop: samples in milliseconds, plus memory and the pipelined figure."""

    samples_ms: list[float]
    warmup: int
    pipelined_ms: float | None = None  # CUDA: mean ms per call when calls are queued back to back
    pipelined_iters: int | None = None
    memory: dict[str, float | None] = field(default_factory=dict)
    timer: str = "perf_counter"
    stopped_by: str = "iters"  # iters (count / min_time_s reached) | target (stop rule met) | cap (max_iters / max_time_s)
    warmup_ms: float | None = None  # wall time of the discarded warm-up iterations


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


def _memory(device: torch.device) -> dict[str, float | None]:
    none = {"peak_gpu_mem_MB": None, "allocated_MB": None, "reserved_MB": None}
    gpu = _cuda_memory(device) if device.type == "cuda" else none
    return {**gpu, "peak_rss_MB": peak_rss_mb()}


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


def _time_cuda(fn: Callable[[], Any], device: torch.device, n: int, budget_s: float, cap: int,
               progress: ProgressFn | None) -> list[float]:
    """Event-pair loop with a synchronize after every call: returns ms per call."""
    Event = torch.cuda.Event
    pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    perf = time.perf_counter
    start_wall = perf()
    next_report = start_wall + PROGRESS_EVERY_S
    while len(pairs) < n or (perf() - start_wall < budget_s and len(pairs) < cap):
        start, end = Event(enable_timing=True), Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        pairs.append((start, end))
        if progress is not None and perf() >= next_report:
            progress(len(pairs), n, start.elapsed_time(end))
            next_report = perf() + PROGRESS_EVERY_S
    return [s.elapsed_time(e) for s, e in pairs]


def _time_until(stop: StopRule, loop: Callable[..., list[float]], fn: Callable[[], Any], device: torch.device,
                samples: list[float], cap: int, max_time_s: float | None,
                progress: ProgressFn | None) -> tuple[list[float], str]:
    """More timed rounds until ``stop`` holds or a cap is hit: ``(samples, "target" | "cap")``.

    Each round adds a quarter of the samples so far (so the rule runs O(log n) times), trimmed so that the
    round fits what is left of ``max_iters`` and, at the current pace, of ``max_time_s``.
    """
    while True:
        if stop(samples):
            return samples, "target"
        spent_s = sum(samples) / 1e3
        if len(samples) >= cap or (max_time_s is not None and spent_s >= max_time_s):
            return samples, "cap"
        n = min(max(1, len(samples) // 4), cap - len(samples))
        if max_time_s is not None and spent_s > 0:
            n = max(1, min(n, int((max_time_s - spent_s) / (spent_s / len(samples))) + 1))
        done = len(samples)
        report = None if progress is None else (lambda k, _n, ms: progress(done + k, cap, ms))
        samples = samples + loop(fn, device, n, 0.0, n, report)


def time_pipelined(fn: Callable[[], Any], device: torch.device, n: int) -> float:
    """CUDA only: mean ms per call for ``n`` calls queued back to back between one event pair."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    synchronize(device)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / n


def measure(fn: Callable[[], Any], *, device: torch.device | str = "cpu", warmup: int = 10, iters: int = 100,
            min_time_s: float = 0.0, max_iters: int | None = None, pipelined_iters: int | None = None,
            progress: ProgressFn | None = None, after_warmup: Callable[[], None] | None = None,
            stop: StopRule | None = None, max_time_s: float | None = None) -> Measurement:
    """Warm up, then time ``fn()``; see the module docstring for the rules.

    ``stop`` (e.g. "the median's 95% interval is within ±1%"): after the first ``iters`` (and ``min_time_s``),
    keep timing in rounds until ``stop(samples_ms)`` is true, ``max_iters`` samples or ``max_time_s`` seconds
    of timed work; the rule runs between rounds, never inside the timed loop.

    ``after_warmup`` is called once between warm-up and the timed loop (e.g. to clear stage timers).
    The caller decides on ``torch.inference_mode()``: the engine times whatever ``fn`` does.
    """
    device = torch.device(device)
    warmup_start = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    warmup_ms = (time.perf_counter() - warmup_start) * 1e3
    if after_warmup is not None:
        after_warmup()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cap = max_iters if max_iters is not None else max(iters, 10 * iters)
    loop = _time_cuda if device.type == "cuda" else _time_host
    samples = loop(fn, device, iters, min_time_s, cap, progress)
    stopped_by = "cap" if sum(samples) < min_time_s * 1e3 else "iters"
    if stop is not None:
        samples, stopped_by = _time_until(stop, loop, fn, device, samples, cap, max_time_s, progress)
    memory = _memory(device)
    result = Measurement(samples_ms=samples, warmup=warmup, memory=memory, stopped_by=stopped_by, warmup_ms=warmup_ms,
                         timer="cuda_event" if device.type == "cuda" else "perf_counter")
    if device.type == "cuda":
        result.pipelined_iters = pipelined_iters or len(samples)
        result.pipelined_ms = time_pipelined(fn, device, result.pipelined_iters)
    return result


def time_once(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Time a single call (cold start) with the host clock and a sync: returns (fn's value, ms)."""
    synchronize(device)
    t0 = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, (time.perf_counter() - t0) * 1e3
