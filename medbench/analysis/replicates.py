"""Replicates — the unit of evidence: one ``Run`` per record, and why a run cannot be evidence.

A run is *flagged* (kept in tables, never used for a verdict) when its record says the machine was loaded
(``telemetry.loaded``), the GPU clocks were capped (``telemetry.throttled``) or its own samples are very
noisy (``noise.iqr_over_median`` above ``stats.NOISE_LOUD``). Pure: records in, small frozen values out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from medbench.analysis.stats import NOISE_LOUD
from medbench.results.record import dig


@dataclass(frozen=True)
class Run:
    """One replicate: its per-iteration samples (time order), its median, and what disqualifies it."""

    p50_ms: float
    samples_ms: tuple[float, ...] | None = None
    flags: tuple[str, ...] = ()
    source: str = ""
    values: Mapping[str, float] = field(default_factory=dict)  # recorded statistics (mean_ms, p95_ms, ...)
    repeat: int | None = None  # the replicate index (``repeat``): pairs run r of one side with run r of the other
    started: float | None = None  # start time, seconds since the epoch: were two sides interleaved?

    @property
    def clean(self) -> bool:
        return not self.flags


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def run_flags(telemetry: Any, noise: Any,
              loud: float = NOISE_LOUD) -> tuple[str, ...]:
    """Reasons (short phrases) why a run is not evidence: loaded, throttled, very noisy; () when it is.

    ``telemetry`` / ``noise`` are the record's blocks (dicts or typed blocks: anything with ``.get``)."""
    tel, noi = telemetry or {}, noise or {}
    flags = []
    if tel.get("loaded") is True:
        other, cores = _number(tel.get("other_cpu_cores")), tel.get("cpu_cores")
        busy = f": other processes kept {other:.1f} of {cores} cores busy" if other is not None and cores else ""
        flags.append(f"loaded{busy}")
    if tel.get("throttled") is True:
        reasons = ", ".join(tel.get("throttle_reasons") or []) or "NVML violation counters"
        flags.append(f"throttled ({reasons})")
    ratio = _number(noi.get("iqr_over_median"))
    if ratio is not None and ratio > loud:
        flags.append(f"very noisy: IQR {ratio:.0%} of the median (> {loud:.0%})")
    return tuple(flags)


def epoch_seconds(timestamp: Any) -> float | None:
    """An ISO-8601 timestamp (as records write them) → seconds since the epoch; None when absent or unreadable."""
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        stamp = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def replicate_index(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_from_record(record: Any, source: str = "") -> Run | None:
    """A ``Run`` from an ok result record (a typed ``Record`` or its dict; None when it has no usable median)."""
    p50 = _number(dig(record, "latency.p50_ms"))
    if p50 is None or p50 <= 0:
        return None
    samples = dig(record, "samples_ms")
    clean_samples = None
    if isinstance(samples, list) and samples and all(_number(s) is not None for s in samples):
        clean_samples = tuple(float(s) for s in samples)
    values = {k: v for k in ("mean_ms", "p95_ms", "p99_ms") if (v := _number(dig(record, f"latency.{k}"))) is not None}
    started = epoch_seconds(dig(record, "provenance.started_at") or dig(record, "metadata.timestamp"))
    return Run(p50, clean_samples, run_flags(dig(record, "telemetry"), dig(record, "noise")), source, values,
               replicate_index(dig(record, "metadata.repeat")), started)


@dataclass(frozen=True)
class Group:
    """The replicates of one setting on one side, with their aggregate (median of run medians, spread)."""

    runs: tuple[Run, ...]

    @property
    def clean(self) -> tuple[Run, ...]:
        return tuple(r for r in self.runs if r.clean)

    @property
    def flagged(self) -> tuple[Run, ...]:
        return tuple(r for r in self.runs if not r.clean)

    def median_of_medians(self, clean_only: bool = True) -> float | None:
        runs = self.clean if clean_only else self.runs
        return float(np.median([r.p50_ms for r in runs])) if runs else None

    def spread_pct(self, clean_only: bool = True) -> float | None:
        """(max - min) of the run medians relative to their median, in percent (None below 2 runs)."""
        runs = self.clean if clean_only else self.runs
        if len(runs) < 2:
            return None
        p50s = [r.p50_ms for r in runs]
        return 100.0 * (max(p50s) - min(p50s)) / float(np.median(p50s))


def group(runs: Sequence[Run]) -> Group:
    return Group(tuple(runs))
