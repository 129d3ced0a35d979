"""A finished timed loop → the record's measurement blocks: statistics from the raw samples (``stats.summarize``),
throughput, memory, host times, energy per image, why timing stopped, and the warnings the noise and the telemetry
around the loop give. Pure: ``measured`` returns a ``Measured`` part that the runner puts into the record."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from medbench.analysis import stats
from medbench.results.record import Latency, Memory, Noise, Throughput
from medbench.run.timing import Measurement


@dataclass
class Measured:
    """The measurement blocks of a record, derived from one timed loop and the telemetry read around it."""

    latency: Latency
    throughput: Throughput
    noise: Noise
    memory: Memory
    samples_ms: list[float]
    telemetry: dict[str, Any]  # the loop's telemetry plus host times and energy per image
    metadata: dict[str, Any]  # timer, stopped_by, samples
    warmup_ms: float | None
    warnings: list[str] = field(default_factory=list)


def measured(m: Measurement, batch: int, telemetry: dict[str, Any], target_ci_pct: float | None = None,
             input_MB: float | None = None) -> Measured:
    """Derived statistics, raw samples and the warnings of one timed loop (``target_ci_pct``: the precision the
    job asked for; ``input_MB``: device memory its preloaded inputs hold)."""
    summary = stats.summarize(m.samples_ms, batch)
    warnings = [summary["noise"]["warning"]] if summary["noise"]["warning"] else []
    tel = dict(telemetry)
    if m.host_samples_ms:
        tel.update(host_samples_ms=m.host_samples_ms, host_median_ms=statistics.median(m.host_samples_ms))
    if tel.get("energy_J") is not None and m.samples_ms:
        tel["energy_per_image_J"] = tel["energy_J"] / (len(m.samples_ms) * batch)
    reached = summary["noise"]["ci95_halfwidth_pct"]
    if target_ci_pct is not None and m.stopped_by != "target":
        at = "no interval yet" if reached is None else f"±{reached:.2f}%"
        warnings.append(f"timing stopped at its cap after {len(m.samples_ms)} iterations with the median's "
                        f"95% CI at {at}, short of the ±{target_ci_pct:g}% target (iters.max_time_s / max_iters)")
    warnings += telemetry_warnings(tel)
    return Measured(
        latency=Latency(**summary["latency"]),
        throughput=Throughput(**summary["throughput"], pipelined_ms=m.pipelined_ms, pipelined_iters=m.pipelined_iters,
                              fps_pipelined=stats.fps(m.pipelined_ms, batch)),
        noise=Noise(**summary["noise"]),
        memory=Memory(**m.memory, **_nvml_memory(tel), input_MB=input_MB),
        samples_ms=m.samples_ms, telemetry=tel,
        metadata={"timer": m.timer, "stopped_by": m.stopped_by, "samples": len(m.samples_ms)},
        warmup_ms=m.warmup_ms, warnings=warnings)


def _nvml_memory(telemetry: dict[str, Any]) -> dict[str, float | None]:
    """NVML's view of device memory after the loop (whole device; this process where NVML shows pids)."""
    after = telemetry.get("after") or {}
    return {"nvml_used_MB": after.get("memory_used_MB"), "nvml_process_used_MB": after.get("process_used_MB")}


def telemetry_warnings(telemetry: dict[str, Any]) -> list[str]:
    out = []
    if telemetry.get("throttled"):
        held = {k: v for k, v in (telemetry.get("throttle_time_ms") or {}).items() if v}
        share = telemetry.get("throttle_share")
        why = ", ".join(held) or ", ".join(telemetry.get("throttle_reasons") or []) or "NVML clock events"
        part = f" for {share:.1%} of the loop" if share is not None else ""
        out.append(f"GPU clocks were held down{part} ({why}): numbers are below what the GPU can do")
    if telemetry.get("other_gpu_processes"):
        out.append(f"{telemetry['other_gpu_processes']} other process(es) used the timed GPU during the run")
    if telemetry.get("loaded"):
        out.append(f"machine loaded: other processes kept {telemetry['other_cpu_cores']:.1f} of "
                   f"{telemetry['cpu_cores']} cores busy during the timed loop")
    return out
