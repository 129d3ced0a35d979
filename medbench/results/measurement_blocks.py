"""The measurement blocks of a record: latency, throughput, memory, cold start, noise, telemetry (pydantic v2).

Strict numbers (``Numbers``): ``"12.5"`` is not a latency. ``medbench.results.record`` assembles them into the
``Record``; they live here so each module stays one screenful of one thing.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from medbench.results.blocks import Block, Numbers

Number = float | None


class Latency(Numbers):
    """Per timed call (one batch), milliseconds, from ``samples_ms``."""

    mean_ms: Number = None
    median_ms: Number = None
    p50_ms: Number = None
    p50_ci95_ms: list[float] | None = None  # distribution-free 95% interval of the median (order statistics)
    p95_ms: Number = None
    p99_ms: Number = None
    std_ms: Number = None
    min_ms: Number = None
    max_ms: Number = None


class Throughput(Numbers):
    """Items per second: ``fps_p50`` = 1000 / latency.p50_ms x batch (the canonical one), ``fps_mean`` from the mean;
    ``items_per_s`` (API) = items actually delivered / timed seconds; ``fps_pipelined`` from calls queued back to
    back (CUDA)."""

    fps_mean: Number = None
    fps_p50: Number = None
    fps_pipelined: Number = None
    pipelined_ms: Number = None
    pipelined_iters: int | None = None
    items_per_s: Number = None


class Memory(Numbers):
    """MB: ``peak_gpu_mem_MB`` = torch.cuda.max_memory_allocated over the timed loop (canonical), ``reserved_MB``
    the caching allocator's hold after it, ``peak_rss_MB`` the process' peak resident memory."""

    peak_gpu_mem_MB: Number = None
    allocated_MB: Number = None
    reserved_MB: Number = None
    peak_rss_MB: Number = None
    input_MB: Number = None  # device memory held by preloaded inputs (scope=forward)
    nvml_used_MB: Number = None  # NVML, whole device, after the loop
    nvml_process_used_MB: Number = None  # NVML, this process, where NVML shows pids


class ColdStart(Numbers):
    """One-off costs, kept out of the samples (ms): building and placing the model, the first forward, warm-up,
    torch.compile and CUDA graph capture, a deployment backend's export and load."""

    model_load_ms: Number = None
    first_forward_ms: Number = None
    warmup_ms: Number = None
    compile_ms: Number = None
    cuda_graph_capture_ms: Number = None
    model_from_cache: bool | None = None
    eager_forward_ms: Number = None
    graph_breaks: int | None = None
    graph_break_reasons: list[str] | None = None
    compiled_graphs: int | None = None
    recompiles: int | None = None
    recompiled: dict[str, int] | None = None
    export_ms: Number = None
    export_cache_hit: bool | None = None
    backend_load_ms: Number = None


class Noise(Block):
    iqr_ms: Number = None
    iqr_over_median: Number = None
    ci95_halfwidth_pct: Number = None  # larger side of the median's 95% interval, % of the median
    warning: str | None = None


class Telemetry(Block):
    """GPU clocks / throttling and machine load around the timed loop (open: the GPU code adds counters)."""

    throttled: bool | None = None
    loaded: bool | None = None
    other_cpu_cores: Number = None
    cpu_cores: int | None = None
    device: dict[str, Any] | None = Field(None, description="the timed GPU as NVML names it (name, uuid, index)")
    before: dict[str, Any] | None = Field(None, description="clocks, temperature, power, memory before the loop")
    after: dict[str, Any] | None = Field(None, description="the same right after the loop")
    loop_s: Number = None
    throttle_reasons: list[str] | None = None
    throttle_time_ms: dict[str, Any] | None = None
    throttle_share: Number = Field(None, description="share of the loop the clocks were held down")
    throttle_basis: str | None = None  # clock_event_counters | reason_snapshots
    other_gpu_processes: int | None = None
    energy_J: Number = None
    energy_per_image_J: Number = None
    host_samples_ms: list[float] | None = Field(None, description="host-side time per call (CUDA: launch cost)")
    host_median_ms: Number = None
    loadavg_1m_before: Number = None
    loadavg_1m_after: Number = None
    threads: int | None = None
