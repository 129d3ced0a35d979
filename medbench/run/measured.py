"""A finished timed loop → the record's measurement blocks: statistics from the raw samples (``stats.summarize``),
throughput, memory, host times, energy per image, why timing stopped, and the warnings the noise and the telemetry
around the loop give."""

from __future__ import annotations

import statistics
from typing import Any

from medbench.analysis import stats


def fill_measurement(record: dict[str, Any], m: Any, batch: int) -> None:
    """Derived statistics and raw samples into the record."""
    summary = stats.summarize(m.samples_ms, batch)
    record["latency"] = summary["latency"]
    record["throughput"] = {**summary["throughput"], "pipelined_ms": m.pipelined_ms,
                            "pipelined_iters": m.pipelined_iters, "fps_pipelined": stats.fps(m.pipelined_ms, batch)}
    record["noise"] = summary["noise"]
    if summary["noise"]["warning"]:
        record["warnings"].append(summary["noise"]["warning"])
    record["memory"] = {**m.memory, **_nvml_memory(record["telemetry"])}
    record["samples_ms"] = m.samples_ms
    tel = record["telemetry"]
    if m.host_samples_ms:
        tel.update(host_samples_ms=m.host_samples_ms, host_median_ms=statistics.median(m.host_samples_ms))
    if tel.get("energy_J") is not None and m.samples_ms:
        tel["energy_per_image_J"] = tel["energy_J"] / (len(m.samples_ms) * batch)
    record["metadata"]["timer"] = m.timer
    record["metadata"]["stopped_by"] = m.stopped_by
    target = record["metadata"]["iters_config"].get("target_ci_pct")
    reached = summary["noise"]["ci95_halfwidth_pct"]
    if target is not None and m.stopped_by != "target":
        at = "no interval yet" if reached is None else f"±{reached:.2f}%"
        record["warnings"].append(f"timing stopped at its cap after {len(m.samples_ms)} iterations with the median's "
                                  f"95% CI at {at}, short of the ±{target:g}% target (iters.max_time_s / max_iters)")
    record["cold_start"]["warmup_ms"] = m.warmup_ms
    record["metadata"]["samples"] = len(m.samples_ms)
    record["warnings"].extend(telemetry_warnings(record["telemetry"]))


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
