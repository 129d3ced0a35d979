"""Machine state around the timed loop: NVML GPU telemetry and CPU load.

A benchmark number is only as good as the conditions it was taken under. Right after warm-up and right
after the timed loop (before anything else runs) we read, through NVML (``medbench.run.nvml``), the SM
and memory clocks, temperature, power, the current clock event (throttle) reasons, the energy counter,
the processes on the GPU, and NVML's *cumulative* clock-event counters: how many ns the clocks were held
down by the power cap, thermal slowdown or a power brake. Their growth over the loop, as a share of the
loop's wall time, decides ``throttled`` (above ``THROTTLE_SHARE``); the reasons read at the two instants
are reported but decide only where the driver has no counters (``throttle_basis``), because at those
instants the GPU idles after a synchronize. Another process on the timed GPU is counted
(``other_gpu_processes``) and warned about. ``energy_J`` is the energy counter's growth over the loop.

On every device the 1-minute load average is read before and after, and the CPU time other processes
used during the loop is measured (system-wide busy time minus this process's own). A run is flagged
``loaded`` when other processes kept more cores busy than the run left free: ``cores - torch threads``
on a CPU job, ``cores - 1`` on a GPU job (its one busy core is the Python thread launching kernels),
at least half a core. The load average is recorded but does not decide the flag, because in a sweep it
mostly measures the previous point of the same sweep.

Everything degrades to ``None`` when NVML (or psutil) is missing or a query is not supported.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from medbench.run import nvml
from medbench.run.nvml import gpu_identity, nvml_handle

# NVML clocks event / throttle reason bits (nvml.h, stable across driver versions).
THROTTLE_REASONS = {
    0x1: "GpuIdle",
    0x2: "ApplicationsClocksSetting",
    0x4: "SwPowerCap",
    0x8: "HwSlowdown",
    0x10: "SyncBoost",
    0x20: "SwThermalSlowdown",
    0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
}
# The reasons that mean the clocks were capped by power or heat: these flag a run as throttled.
CAPPING_REASONS = frozenset({"SwPowerCap", "HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown",
                             "HwPowerBrakeSlowdown"})
MIN_OTHER_CORES = 0.5  # other processes must keep at least this many cores busy to flag a run as loaded
THROTTLE_SHARE = 0.01  # clocks held down for more than this share of the loop's wall time: throttled


def decode_throttle_reasons(mask: int) -> list[str]:
    """NVML reason bit mask → names (unknown bits as hex), in bit order."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    return names + ([hex(unknown)] if unknown else [])


def capping(reasons: list[str] | None) -> list[str]:
    """The subset of ``reasons`` that means power or thermal capping."""
    return sorted(set(reasons or ()) & CAPPING_REASONS)


def throttle_rule(held_ms: dict[str, float | None] | None, loop_ms: float) -> tuple[bool | None, float | None]:
    """(throttled, share): the share of the loop's wall time the clocks were held down (the sum over
    reasons, an upper bound when reasons overlap, at most 1), and whether it exceeds ``THROTTLE_SHARE``."""
    known = [max(0.0, v) for v in (held_ms or {}).values() if v is not None]
    if not known or loop_ms <= 0:
        return None, None
    share = min(1.0, sum(known) / loop_ms)
    return share > THROTTLE_SHARE, share


def counter_growth_ms(before: dict | None, after: dict | None) -> dict[str, float | None] | None:
    """Growth of each clock-event counter (ns) between two snapshots, in ms."""
    b, a = (before or {}).get("clock_event_ns"), (after or {}).get("clock_event_ns")
    if not b or not a:
        return None
    return {k: None if a.get(k) is None or b.get(k) is None else (a[k] - b[k]) / 1e6 for k in a}


def gpu_snapshot(handle: Any) -> dict[str, Any] | None:
    """``nvml.gpu_snapshot`` with the reason bits decoded."""
    snap = nvml.gpu_snapshot(handle)
    if snap is not None:
        mask = snap["throttle_mask"]
        snap["throttle_reasons"] = None if mask is None else decode_throttle_reasons(mask)
    return snap


# ---------------------------------------------------------------- CPU


def loadavg_1m() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _cpu_busy_s() -> tuple[float, float] | None:
    """(system-wide busy CPU seconds, this process's CPU seconds) so far."""
    try:
        import psutil

        system = psutil.cpu_times()
        busy = sum(v for k, v in system._asdict().items() if k not in ("idle", "iowait", "steal", "guest", "guest_nice"))
        own = psutil.Process().cpu_times()
        return busy, own.user + own.system
    except Exception:
        return None


def loaded_rule(other_cores: float, cores: int, threads: int, gpu: bool = False) -> bool:
    """Other processes took cycles from us: they kept more cores busy than the run left free
    (``cores - threads`` on CPU; ``cores - 1`` for a GPU job, whose host side is one launching thread)."""
    free = cores - 1 if gpu else cores - threads
    return other_cores > max(MIN_OTHER_CORES, free)


# ---------------------------------------------------------------- the probe


class Probe:
    """Read the machine state at ``start()`` (after warm-up) and at ``finish()`` (right after the timed loop)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.handle, self.mig_uuid = nvml_handle(device)
        self.before: dict[str, Any] | None = None
        self.load_before: float | None = None
        self.cpu_before: tuple[float, float] | None = None
        self.wall_before = 0.0

    def start(self) -> None:
        self.before = gpu_snapshot(self.handle)
        self.load_before = loadavg_1m()
        self.cpu_before = _cpu_busy_s()
        self.wall_before = time.perf_counter()

    def finish(self) -> dict[str, Any]:
        """The record's ``telemetry`` block."""
        wall = time.perf_counter() - self.wall_before
        cpu_after = _cpu_busy_s()
        after = gpu_snapshot(self.handle)
        return {
            **empty_block(),  # every key, also those the runner fills later (host times, energy per image)
            "device": gpu_identity(self.handle, self.mig_uuid),
            "before": self.before,
            "after": after,
            "loop_s": wall,
            **self._throttle(after, wall),
            **self._gpu_use(after),
            **self._load(cpu_after, wall),
        }

    def _throttle(self, after: dict[str, Any] | None, wall: float) -> dict[str, Any]:
        if self.before is None or after is None:
            return {"throttled": None, "throttle_reasons": None, "throttle_time_ms": None, "throttle_share": None,
                    "throttle_basis": None}
        reasons = capping((self.before["throttle_reasons"] or []) + (after["throttle_reasons"] or []))
        held = counter_growth_ms(self.before, after)
        throttled, share = throttle_rule(held, wall * 1e3)
        basis = "clock_event_counters"
        if throttled is None:  # no counters on this driver: the instants' reasons are all there is
            throttled, basis = bool(reasons), "reason_snapshots"
        return {"throttled": throttled, "throttle_reasons": reasons, "throttle_time_ms": held,
                "throttle_share": share, "throttle_basis": basis}

    def _gpu_use(self, after: dict[str, Any] | None) -> dict[str, Any]:
        before = self.before or {}
        after = after or {}
        pids = [p for snap in (before, after) for p in (snap.get("gpu_pids") or [])]
        seen = before.get("gpu_pids") is not None or after.get("gpu_pids") is not None
        e0, e1 = before.get("energy_mJ"), after.get("energy_mJ")
        return {"other_gpu_processes": nvml.count_other_processes(pids, os.getpid()) if seen else None,
                "energy_J": None if e0 is None or e1 is None else (e1 - e0) / 1e3, "energy_per_image_J": None}

    def _load(self, cpu_after: tuple[float, float] | None, wall: float) -> dict[str, Any]:
        cores, threads = os.cpu_count() or 1, torch.get_num_threads()
        other = None
        if self.cpu_before is not None and cpu_after is not None and wall > 0:
            busy, own = (cpu_after[0] - self.cpu_before[0]), (cpu_after[1] - self.cpu_before[1])
            other = max(0.0, busy - own) / wall
        gpu = self.device.type == "cuda"
        return {
            "loadavg_1m_before": self.load_before, "loadavg_1m_after": loadavg_1m(),
            "cpu_cores": cores, "threads": threads, "other_cpu_cores": other,
            "loaded": None if other is None else loaded_rule(other, cores, threads, gpu),
        }


def empty_block() -> dict[str, Any]:
    """The ``telemetry`` block before anything was read (kept when a run fails before its loop)."""
    return {"device": None, "before": None, "after": None, "loop_s": None, "throttled": None,
            "throttle_reasons": None, "throttle_time_ms": None, "throttle_share": None, "throttle_basis": None,
            "other_gpu_processes": None, "energy_J": None, "energy_per_image_J": None, "host_samples_ms": None,
            "host_median_ms": None, "loadavg_1m_before": None, "loadavg_1m_after": None, "cpu_cores": None,
            "threads": None, "other_cpu_cores": None, "loaded": None}
