"""``BenchmarkResult``: a Python-API measurement, one record of ``kind: api`` (see ``medbench.results.record``)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from medbench.analysis import stats
from medbench.results.load import to_record
from medbench.results.record import SCHEMA_VERSION, Latency, Memory, Record
from medbench.results.store import error_block, finite, utc_now
from medbench.run.timing import Measurement
from medbench.text import number


class BenchmarkResult(Record):
    """One API benchmark: a ``Record`` of ``kind: api`` — the same blocks as a CLI run's ``result.json``.

    ``throughput.fps_p50`` / ``fps_mean`` are items per second from the median / mean latency of a call (items per
    call = ``metadata.batch_size``), exactly as for runs; ``throughput.items_per_s`` = items actually delivered /
    timed seconds (a loader's short last batch counts its real size). ``memory.peak_gpu_mem_MB`` is the peak CUDA
    memory allocated during the timed loop, ``memory.reserved_MB`` the caching allocator's hold after it (both
    ``None`` on CPU), ``memory.peak_rss_MB`` the process' peak resident memory. ``metadata.duration_s`` is the total
    timed seconds (sum of the samples, warm-up excluded); ``metadata.unit`` says what an item is.
    """

    kind: Literal["run", "api"] = "api"

    @property
    def duration(self) -> float:
        return self.metadata.duration_s or 0.0

    @property
    def items_per_s(self) -> float | None:
        return self.throughput.items_per_s if self.throughput else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain dict (NaN/inf become null); ``from_dict`` reads it back."""
        return finite(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        """Rebuild a result from ``to_dict()`` output or one entry of a suite file's ``results`` (any version)."""
        data = {"schema_version": SCHEMA_VERSION, "kind": "api", **data}
        return cls.model_validate(to_record(data).to_json())

    @classmethod
    def failed(cls, name: str, exc: BaseException, metadata: dict[str, Any] | None = None) -> BenchmarkResult:
        """The record of a benchmark that raised: no numbers, the error block the CLI JSON uses."""
        return cls(name=name, status="failed", error=error_block(exc),
                   metadata={"timestamp": utc_now(), **(metadata or {})})

    def __str__(self) -> str:
        md = self.metadata
        head = f"{self.name} [{md.device or '?'}]"
        if not self.ok:
            err = self.error
            return f"{head}: FAILED ({err.type if err else '?'}: {err.message if err else ''})"
        unit = md.unit or "items/s"
        batch = f", batch {md.batch_size}" if md.batch_size not in (None, 1) else ""
        lat = self.latency or Latency()
        lines = [
            f"{head}: {md.get('iterations', len(self.samples_ms or []))} timed iterations{batch}, "
            f"{md.warmup or 0} warm-up",
            f"  duration {self.duration:.3f} s   throughput {number(self.items_per_s)} {unit}",
            f"  latency  p50 {number(lat.p50_ms)} ms   p95 {number(lat.p95_ms)} ms   mean {number(lat.mean_ms)} ms",
            f"  memory   {self._memory_text()}",
        ]
        if self.noise is not None and self.noise.warning:
            lines.append(f"  warning: {self.noise.warning}")
        return "\n".join(lines)

    def _memory_text(self) -> str:
        mem = self.memory or Memory()
        if mem.peak_gpu_mem_MB is not None:
            return f"allocated (peak) {mem.peak_gpu_mem_MB:.1f} MB, reserved {number(mem.reserved_MB)} MB"
        rss = mem.peak_rss_MB
        return f"peak RSS {rss:.0f} MB (no GPU memory on {self.metadata.device or 'cpu'})" if rss else "n/a"


def result_from_measurement(name: str, m: Measurement, *, items: int, batch_size: int, unit: str,
                            device: torch.device, metadata: dict[str, Any] | None = None,
                            telemetry: dict[str, Any] | None = None) -> BenchmarkResult:
    """Engine output → ``BenchmarkResult``: statistics by ``stats.summarize``, as the CLI runner does."""
    summary = stats.summarize(m.samples_ms, batch_size)
    duration = sum(m.samples_ms) / 1e3
    memory = m.memory or {}
    md = {"device": str(device), "batch_size": batch_size, "unit": unit, "warmup": m.warmup,
          "iterations": len(m.samples_ms), "items": items, "timer": m.timer, "timestamp": utc_now(),
          "duration_s": duration, **(metadata or {})}
    throughput = {**summary["throughput"], "items_per_s": items / duration if duration > 0 else None,
                  "pipelined_ms": m.pipelined_ms, "fps_pipelined": stats.fps(m.pipelined_ms, batch_size)}
    return BenchmarkResult(name=name, status="ok", metadata=md, latency=summary["latency"], noise=summary["noise"],
                           throughput=throughput, memory=memory, samples_ms=list(m.samples_ms), telemetry=telemetry)
