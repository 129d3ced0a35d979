"""NVML reads of one GPU (``nvidia-ml-py``'s ``pynvml``): identity, clocks, power, memory, the cumulative
clock-event (throttle) counters, the energy counter and the processes using it.

Every read degrades to ``None`` when NVML is missing, the driver does not support a query, or the
process may not see it (containers). Torch and NVML number GPUs differently under
``CUDA_VISIBLE_DEVICES``, so the timed device is found by UUID; a MIG instance (``MIG-…`` UUID) is
found too, and its parent GPU's handle is used for the device-wide figures (clocks, power, counters).
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

# Cumulative time (ns) the clocks were held down, per reason: NVML_FI_DEV_CLOCKS_EVENT_REASON_* field ids
# (nvml.h; SW power cap = PERF_POLICY_POWER = 74). Names match the reason bits in telemetry.py.
CLOCK_EVENT_FIELDS = {"SwPowerCap": 74, "SwThermalSlowdown": 269, "HwThermalSlowdown": 270,
                      "HwPowerBrakeSlowdown": 271}


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


def _query(fn: Any, *args: Any) -> Any:
    """One NVML query; None when the GPU or driver does not support it."""
    try:
        return fn(*args)
    except Exception:
        return None


def nvml_driver_version() -> str | None:
    """The NVIDIA driver version, or None without NVML."""
    nvml = _nvml()
    return None if nvml is None else _query(lambda: _text(nvml.nvmlSystemGetDriverVersion()))


# ---------------------------------------------------------------- identity


def bare_uuid(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").removeprefix("mig-")


def format_uuid(raw: str, mig_uuids: set[str]) -> str:
    """Torch's bare UUID as nvidia-smi prints it: ``MIG-…`` for a MIG instance, else ``GPU-…``."""
    if raw.startswith(("GPU-", "MIG-")):
        return raw
    return f"MIG-{raw}" if bare_uuid(raw) in mig_uuids else f"GPU-{raw}"


def _visible_mig_uuids() -> set[str]:
    """Bare UUIDs of MIG instances named in ``CUDA_VISIBLE_DEVICES`` (how MIG instances are selected)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {bare_uuid(v.strip()) for v in visible.split(",") if v.strip().upper().startswith("MIG-")}


def torch_uuid(index: int) -> str | None:
    """The UUID of torch's CUDA device ``index`` as nvidia-smi prints it (``GPU-…`` or ``MIG-…``), or None."""
    try:
        raw = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None
    mig = _visible_mig_uuids()
    if not mig and not raw.startswith(("GPU-", "MIG-")) and _mig_handle(raw) is not None:
        mig = {bare_uuid(raw)}
    return format_uuid(raw, mig)


def _mig_handle(uuid: str) -> Any:
    """NVML's handle of the MIG instance with this UUID, or None (not MIG, or no NVML)."""
    nvml = _nvml()
    if nvml is None:
        return None
    handle = _query(nvml.nvmlDeviceGetHandleByUUID, f"MIG-{bare_uuid(uuid)}")
    return handle if handle is not None and _query(nvml.nvmlDeviceIsMigDeviceHandle, handle) else None


def nvml_handle(device: torch.device) -> tuple[Any, str | None]:
    """(NVML handle of the GPU behind torch's ``device``, its MIG UUID or None). For a MIG instance the
    handle is the parent GPU's: clocks, power and the clock-event counters are the whole GPU's."""
    nvml = _nvml() if device.type == "cuda" else None
    if nvml is None:
        return None, None
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = torch_uuid(index)
    try:
        if uuid and uuid.startswith("MIG-"):
            mig = _mig_handle(uuid)
            if mig is not None:
                return nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig), uuid
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            if uuid and bare_uuid(_text(nvml.nvmlDeviceGetUUID(handle))) == bare_uuid(uuid):
                return handle, None
        return nvml.nvmlDeviceGetHandleByIndex(torch.cuda._get_nvml_device_index(index)), None
    except Exception as exc:
        log.debug("no NVML handle for %s: %s", device, exc)
        return None, None


def gpu_identity(handle: Any, mig_uuid: str | None = None) -> dict[str, Any] | None:
    """Name, UUID and NVML index of the timed GPU (and the MIG instance's UUID on MIG)."""
    nvml = _nvml()
    if handle is None or nvml is None:
        return None
    name, uuid = _query(nvml.nvmlDeviceGetName, handle), _query(nvml.nvmlDeviceGetUUID, handle)
    return {"name": None if name is None else _text(name), "uuid": None if uuid is None else _text(uuid),
            "nvml_index": _query(nvml.nvmlDeviceGetIndex, handle), "mig_uuid": mig_uuid}


# ---------------------------------------------------------------- counters


def _field_value(value: Any) -> int | float | None:
    """One ``c_nvmlFieldValue_t`` as a number (None when NVML returned an error for it)."""
    if value.nvmlReturn != 0:
        return None
    kind = value.valueType
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(kind)
    return None if attr is None else getattr(value.value, attr)


def clock_event_ns(handle: Any) -> dict[str, int | None] | None:
    """Cumulative ns per clock-event reason (``nvmlDeviceGetFieldValues``); falls back to the power and
    thermal violation counters (``nvmlDeviceGetViolationStatus``) on drivers without those fields."""
    nvml = _nvml()
    values = _query(nvml.nvmlDeviceGetFieldValues, handle, list(CLOCK_EVENT_FIELDS.values()))
    if values is not None:
        out = {name: _field_value(v) for name, v in zip(CLOCK_EVENT_FIELDS, values)}
        if any(v is not None for v in out.values()):
            return out
    out = {}
    for name, policy in (("SwPowerCap", "NVML_PERF_POLICY_POWER"), ("SwThermalSlowdown", "NVML_PERF_POLICY_THERMAL")):
        status = _query(nvml.nvmlDeviceGetViolationStatus, handle, getattr(nvml, policy, None))
        out[name] = None if status is None else int(status.violationTime)
    return out if any(v is not None for v in out.values()) else None


def energy_mj(handle: Any) -> int | None:
    """The GPU's energy counter since the driver loaded, in mJ (Volta and newer), or None."""
    nvml = _nvml()
    return None if handle is None or nvml is None else _query(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)


def count_other_processes(pids: list[int], own_pid: int) -> int:
    """Processes on the GPU besides this one. In a container NVML shows host pids, so this process's pid
    is not among them: one unmatched process is then taken to be this one."""
    others = [p for p in set(pids) if p != own_pid]
    return len(others) if own_pid in pids or not others else len(others) - 1


def gpu_processes(handle: Any) -> list[int] | None:
    """Pids NVML lists on the GPU (compute and graphics), or None when it cannot tell."""
    nvml = _nvml()
    if handle is None or nvml is None:
        return None
    compute = _query(nvml.nvmlDeviceGetComputeRunningProcesses, handle)
    graphics = _query(nvml.nvmlDeviceGetGraphicsRunningProcesses, handle)
    if compute is None and graphics is None:
        return None
    return sorted({p.pid for p in (compute or []) + (graphics or [])})


def _process_memory_mb(handle: Any) -> float | None:
    """Device memory NVML attributes to this process (None when pids are hidden, e.g. in containers)."""
    nvml = _nvml()
    for proc in _query(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []:
        if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
            return proc.usedGpuMemory / MB
    return None


def _scaled(value: Any, factor: float) -> float | None:
    return None if value is None else value / factor


def _throttle_mask(handle: Any) -> int | None:
    """Current clock event reasons (the newer NVML name first, then the older "throttle" one)."""
    nvml = _nvml()
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nvml, name, None)
        mask = None if fn is None else _query(fn, handle)
        if mask is not None:
            return int(mask)
    return None


def gpu_snapshot(handle: Any) -> dict[str, Any] | None:
    """Clocks, temperature, power, reasons, counters and device memory of one GPU right now."""
    nvml = _nvml()
    if handle is None or nvml is None:
        return None
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
        "throttle_mask": _throttle_mask(handle),
        "memory_used_MB": None if mem is None else mem.used / MB,
        "memory_total_MB": None if mem is None else mem.total / MB,
        "process_used_MB": _process_memory_mb(handle),
        "clock_event_ns": clock_event_ns(handle),
        "energy_mJ": energy_mj(handle),
        "gpu_pids": gpu_processes(handle),
    }
