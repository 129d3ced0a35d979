"""The metric table: every metric medbench reports, declared once.

Collate's columns and Δ% columns, compare's judged metrics and thresholds, performance targets and the printouts
all read ``METRICS``. Adding a metric = one row here plus the code that computes it into the record (a field of a
block in ``medbench.results.record``).

A row says: ``name`` (the dotted path in the record, also the name ``compare`` and ``--threshold`` use), ``unit``,
which way is better, whether the raw ``samples_ms`` back it (then a verdict also needs the samples to agree, not
just the threshold), its table ``column`` (CSV header) and display ``label``, and where it appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medbench.results.record import Record


@dataclass(frozen=True)
class Metric:
    name: str  # dotted path in the record: "latency.p50_ms"
    unit: str
    lower_is_better: bool
    sampled: bool  # derived from samples_ms (latency, FPS): a verdict also needs the samples to differ
    column: str  # collate's column (CSV header): "latency_p50_ms"
    label: str  # for people: "latency p50"
    table: bool = True  # a column of collate's runs table
    delta: bool = False  # a Δ% column in collate's Δ% table (d_<column>_pct)
    compared: bool = True  # judged by compare (a regression gate metric)
    target: str | None = None  # the name a performance target uses
    scale: float = 1.0  # record value x scale = column value (a ratio shown in percent)

    @property
    def delta_column(self) -> str:
        return f"d_{self.column.removesuffix('_ms').removesuffix('_M').removesuffix('_MB')}_pct"

    @property
    def delta_label(self) -> str:
        return f"{self.label} Δ%"

    def value(self, record: Record) -> float | None:
        """The metric of ``record`` (scaled), or None when missing or not a finite number."""
        return number(record.get(self.name), self.scale)


def number(value: Any, scale: float = 1.0) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value) * scale
    return out if out == out and abs(out) != float("inf") else None


METRICS: tuple[Metric, ...] = (
    Metric("model_complexity.params_M", "M", True, False, "params_M", "params", delta=True, compared=False),
    Metric("model_complexity.gflops", "GFLOPs", True, False, "gflops", "GFLOPs", delta=True, compared=False),
    Metric("latency.mean_ms", "ms", True, True, "latency_mean_ms", "latency mean", delta=True,
           target="latency_mean_ms"),
    Metric("latency.p50_ms", "ms", True, True, "latency_p50_ms", "latency p50", target="latency_p50_ms"),
    Metric("latency.p95_ms", "ms", True, True, "latency_p95_ms", "latency p95", delta=True, target="latency_p95_ms"),
    Metric("latency.p99_ms", "ms", True, True, "latency_p99_ms", "latency p99", table=False),
    Metric("throughput.fps_mean", "items/s", False, True, "fps_mean", "FPS mean", table=False),
    Metric("throughput.fps_p50", "items/s", False, True, "fps", "FPS", delta=True, target="throughput"),
    Metric("throughput.fps_pipelined", "items/s", False, False, "fps_pipelined", "FPS pipelined"),
    Metric("throughput.items_per_s", "items/s", False, True, "items_per_s", "items/s", table=False),
    Metric("memory.peak_gpu_mem_MB", "MB", True, False, "peak_gpu_mem_MB", "GPU mem", delta=True,
           target="memory_MB"),
    Metric("memory.reserved_MB", "MB", True, False, "reserved_MB", "GPU reserved", table=False),
    Metric("noise.iqr_over_median", "%", True, False, "iqr_pct", "IQR % of median", compared=False, scale=100.0),
    # Validation accuracy of the weights (the record's accuracy block, fractions) shown in percent; blank for
    # random-init models. Context for the speed numbers and the Pareto front, never judged by the gate.
    *(Metric(f"accuracy.{key}", "%", False, False, f"{key}_pct", label, compared=False, scale=100.0)
      for key, label in (("map50_95", "mAP50-95"), ("map50", "mAP50"), ("precision", "P"), ("recall", "R"),
                         ("top1", "top-1"), ("top5", "top-5"))),
)
ACCURACY = tuple(m for m in METRICS if m.name.startswith("accuracy."))
BY_NAME = {m.name: m for m in METRICS}
COMPARED = tuple(m for m in METRICS if m.compared)
TABLE = tuple(m for m in METRICS if m.table)
DELTAS = tuple(m for m in METRICS if m.delta)
TARGETS = {m.target: m for m in METRICS if m.target}


@dataclass(frozen=True)
class Field:
    """A non-metric field that tables show or that must match for a like-for-like comparison."""

    column: str
    path: str
    label: str


# Runs compared with each other should agree on these; collate and compare warn when they do not.
ENV_FIELDS: tuple[Field, ...] = (
    Field("list_sha256", "metadata.benchmark_list_sha256", "benchmark list"),
    Field("env_gpu_name", "env.gpu_name", "GPU"),
    Field("env_cpu", "env.cpu", "CPU"),
    Field("env_torch", "env.torch", "torch version"),
    Field("env_cuda", "env.cuda", "CUDA version"),
    Field("backend_version", "backend.version", "backend version"),
)
