"""Machine state around the timed loop: NVML GPU telemetry and CPU load.

A benchmark number is only as good as the conditions it was taken under. Before and after the timed
loop we read, through NVML (``nvidia-ml-py``, an Ultralytics dependency), the SM and memory clocks,
temperature, power and the *clock event (throttle) reasons* of the timed GPU, plus NVML's cumulative
power/thermal violation counters. A run whose clocks were capped by power or heat is flagged
``throttled``; reasons that are settings rather than capping (idle, application clocks, sync boost,
display) are reported but do not flag a run.

On every device the 1-minute load average is read before and after, and the CPU time other
processes used during the loop is measured (system-wide busy time minus this process's own). A run
is flagged ``loaded`` when other processes kept more cores busy than the run left free (``cores -
torch threads``, at least half a core): that is when they start taking cycles from the benchmark.
The load average is recorded but does not decide the flag, because in a sweep it mostly measures the
previous point of the same sweep.

Everything degrades to ``None`` when NVML (or psutil) is missing or a query is not supported.
"""

from __future__ import annotations

import logging
import os
import time
from functools import lru_cache
from typing import Any

import torch

log = logging.getLogger("medbench")
MB = 1024 * 1024

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


def decode_throttle_reasons(mask: int) -> list[str]:
    """NVML reason bit mask → names (unknown bits as hex), in bit order."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    return names + ([hex(unknown)] if unknown else [])


def capping(reasons: list[str] | None) -> list[str]:
    """The subset of ``reasons`` that means power or thermal capping."""
    return sorted(set(reasons or ()) & CAPPING_REASONS)


# ---------------------------------------------------------------- NVML


@lru_cache(maxsize=1)
def _nvml() -> Any:
    """The initialised ``pynvml`` module, or None when NVML cannot be used here."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # no library, no driver, no permission: telemetry is simply absent
        log.debug("NVML unavailable: %s", exc)
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_driver_version() -> str | None:
    """The NVIDIA driver version, or None without NVML."""
    nvml = _nvml()
    return None if nvml is None else _query(lambda: _text(nvml.nvmlSystemGetDriverVersion()))


def torch_uuid(index: int) -> str | None:
    """The UUID of torch's CUDA device ``index`` as nvidia-smi prints it (``GPU-…``), or None."""
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def _bare_uuid(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").removeprefix("mig-")


def nvml_handle(device: torch.device) -> Any:
    """NVML handle of torch's ``device`` (CUDA_VISIBLE_DEVICES renumbers devices: match by UUID)."""
    nvml = _nvml() if device.type == "cuda" else None
    if nvml is None:
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = torch_uuid(index)
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            if uuid and _bare_uuid(_text(nvml.nvmlDeviceGetUUID(handle))) == _bare_uuid(uuid):
                return handle
        return nvml.nvmlDeviceGetHandleByIndex(torch.cuda._get_nvml_device_index(index))
    except Exception as exc:
        log.debug("no NVML handle for %s: %s", device, exc)
        return None


def _query(fn: Any, *args: Any) -> Any:
    """One NVML query; None when the GPU or driver does not support it."""
    try:
        return fn(*args)
    except Exception:
        return None


def _scaled(value: Any, factor: float) -> float | None:
    return None if value is None else value / factor


def gpu_snapshot(handle: Any) -> dict[str, Any] | None:
    """Clocks, temperature, power, throttle reasons and device memory of one GPU right now."""
    nvml = _nvml()
    if handle is None or nvml is None:
        return None
    mask = _throttle_mask(handle)
    mem = _query(nvml.nvmlDeviceGetMemoryInfo, handle)
    util = _query(nvml.nvmlDeviceGetUtilizationRates, handle)
    return {
        "time": time.time(),
        "sm_clock_MHz": _query(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        "mem_clock_MHz": _query(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        "max_sm_clock_MHz": _query(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM),
        "temperature_C": _query(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        "power_W": _scaled(_query(nvml.nvmlDeviceGetPowerUsage, handle), 1000),
        "power_limit_W": _scaled(_query(nvml.nvmlDeviceGetEnforcedPowerLimit, handle), 1000),
        "utilization_pct": None if util is None else util.gpu,
        "throttle_mask": mask,
        "throttle_reasons": None if mask is None else decode_throttle_reasons(mask),
        "memory_used_MB": None if mem is None else mem.used / MB,
        "memory_total_MB": None if mem is None else mem.total / MB,
        "process_used_MB": _process_memory_mb(handle),
        "violation_ns": _violations(handle),
    }


def _throttle_mask(handle: Any) -> int | None:
    """Current clock event reasons (the newer NVML name first, then the older "throttle" one)."""
    nvml = _nvml()
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nvml, name, None)
        mask = None if fn is None else _query(fn, handle)
        if mask is not None:
            return int(mask)
    return None


def _process_memory_mb(handle: Any) -> float | None:
    """Device memory NVML attributes to this process (None when pids are hidden, e.g. in containers)."""
    nvml = _nvml()
    procs = _query(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    for proc in procs:
        if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
            return proc.usedGpuMemory / MB
    return None


def _violations(handle: Any) -> dict[str, int | None]:
    """NVML's cumulative time (ns) with clocks reduced by the power and the thermal policy."""
    nvml = _nvml()
    out = {}
    for name, policy in (("power", nvml.NVML_PERF_POLICY_POWER), ("thermal", nvml.NVML_PERF_POLICY_THERMAL)):
        status = _query(nvml.nvmlDeviceGetViolationStatus, handle, policy)
        out[name] = None if status is None else int(status.violationTime)
    return out


def gpu_identity(handle: Any) -> dict[str, Any] | None:
    """Name, UUID and NVML index of the timed GPU."""
    nvml = _nvml()
    if handle is None or nvml is None:
        return None
    name, uuid = _query(nvml.nvmlDeviceGetName, handle), _query(nvml.nvmlDeviceGetUUID, handle)
    return {"name": None if name is None else _text(name), "uuid": None if uuid is None else _text(uuid),
            "nvml_index": _query(nvml.nvmlDeviceGetIndex, handle)}


def _violation_ms(before: dict | None, after: dict | None) -> dict[str, float | None] | None:
    if not before or not after:
        return None
    out = {}
    for key in ("power", "thermal"):
        b, a = before["violation_ns"].get(key), after["violation_ns"].get(key)
        out[key] = None if a is None or b is None else (a - b) / 1e6
    return out


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


def loaded_rule(other_cores: float, cores: int, threads: int) -> bool:
    """Other processes took cycles from us: they kept more cores busy than the run left free."""
    return other_cores > max(MIN_OTHER_CORES, cores - threads)


# ---------------------------------------------------------------- the probe


class Probe:
    """Read the machine state at ``start()`` (after warm-up) and at ``finish()`` (after the timed loop)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.handle = nvml_handle(device)
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
            "device": gpu_identity(self.handle),
            "before": self.before,
            "after": after,
            **self._throttle(after),
            **self._load(cpu_after, wall),
        }

    def _throttle(self, after: dict[str, Any] | None) -> dict[str, Any]:
        if self.before is None or after is None:
            return {"throttled": None, "throttle_reasons": None, "throttle_time_ms": None}
        reasons = capping((self.before["throttle_reasons"] or []) + (after["throttle_reasons"] or []))
        violation = _violation_ms(self.before, after)
        capped_ms = [v for v in (violation or {}).values() if v]
        return {"throttled": bool(reasons) or bool(capped_ms), "throttle_reasons": reasons,
                "throttle_time_ms": violation}

    def _load(self, cpu_after: tuple[float, float] | None, wall: float) -> dict[str, Any]:
        cores, threads = os.cpu_count() or 1, torch.get_num_threads()
        other = None
        if self.cpu_before is not None and cpu_after is not None and wall > 0:
            busy, own = (cpu_after[0] - self.cpu_before[0]), (cpu_after[1] - self.cpu_before[1])
            other = max(0.0, busy - own) / wall
        return {
            "loadavg_1m_before": self.load_before, "loadavg_1m_after": loadavg_1m(),
            "cpu_cores": cores, "threads": threads, "other_cpu_cores": other,
            "loaded": None if other is None else loaded_rule(other, cores, threads),
        }


def empty_block() -> dict[str, Any]:
    """The ``telemetry`` block before anything was read (kept when a run fails before its loop)."""
    return {"device": None, "before": None, "after": None, "throttled": None, "throttle_reasons": None,
            "throttle_time_ms": None, "loadavg_1m_before": None, "loadavg_1m_after": None, "cpu_cores": None,
            "threads": None, "other_cpu_cores": None, "loaded": None}
