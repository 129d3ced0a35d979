"""Result files, sweep directories and suite files → comparable ``Entry`` objects (SPEC §8).

Every source is reduced to the same shape: a match key (the setting: model, imgsz, batch, device,
precision, scope for results; name and device for suite entries), the metrics with their better
direction (``MetricSpec``), the raw samples when they really describe the recorded statistics, and
what must be identical on both sides (params and GFLOPs, or a suite entry's batch size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medbench.errors import ResultError
from medbench.results.store import SUITE_KIND, dig, read_json

SAMPLES_TOLERANCE = 0.005  # recorded mean/median must agree with the samples within 0.5%, else samples are unused


@dataclass(frozen=True)
class MetricSpec:
    """A compared metric: its dotted name, which way is better, and whether the raw samples test it."""

    name: str
    lower_is_better: bool
    sampled: bool  # derived from samples_ms (latency, FPS): a verdict also needs a significant U test


RESULT_METRICS = (
    MetricSpec("latency.mean_ms", True, True), MetricSpec("latency.p50_ms", True, True),
    MetricSpec("latency.p95_ms", True, True), MetricSpec("latency.p99_ms", True, True),
    MetricSpec("throughput.fps_mean", False, True), MetricSpec("throughput.fps_p50", False, True),
    MetricSpec("throughput.fps_pipelined", False, False), MetricSpec("memory.peak_gpu_mem_MB", True, False),
)
SUITE_METRICS = (
    MetricSpec("latency.mean_ms", True, True), MetricSpec("latency.p50_ms", True, True),
    MetricSpec("latency.p95_ms", True, True), MetricSpec("latency.p99_ms", True, True),
    MetricSpec("throughput", False, True), MetricSpec("memory_allocated", True, False),
    MetricSpec("memory_reserved", True, False), MetricSpec("duration", True, False),
)
KNOWN_METRICS = sorted({m.name for m in RESULT_METRICS + SUITE_METRICS})


@dataclass
class Entry:
    """One comparable measurement: a result record or one suite entry, reduced to what comparison needs."""

    key: tuple[Any, ...]
    label: str
    kind: str  # "result" | "suite"
    status: str
    error: str | None
    metrics: dict[str, float | None]
    samples_ms: list[float] | None  # None when absent or when they do not match the recorded statistics
    identity: dict[str, Any]  # must be equal on both sides (params, GFLOPs; suite batch size)
    env: dict[str, Any]
    list_sha256: str | None
    source: str
    timestamp: str | None = None
    notes: list[str] = field(default_factory=list)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def _close(a: float | None, b: float | None) -> bool:
    return a is None or b is None or abs(a - b) <= SAMPLES_TOLERANCE * max(abs(a), abs(b), 1e-12)


def _usable_samples(samples: Any, latency: dict[str, Any] | None, fps: list[tuple[float | None, int]]) -> tuple[
        list[float] | None, str | None]:
    """The raw samples if they describe the recorded numbers; a hand-edited record makes them unusable."""
    if not isinstance(samples, list) or not samples or not all(_number(s) is not None for s in samples):
        return None, None
    a = np.asarray(samples, dtype=np.float64)
    mean, median = float(a.mean()), float(np.median(a))
    lat = latency or {}
    ok = _close(_number(lat.get("mean_ms")), mean) and _close(_number(lat.get("p50_ms", lat.get("median_ms"))), median)
    for value, batch in fps:  # (recorded fps_mean, batch): must be 1000/mean*batch
        ok = ok and _close(_number(value), 1000.0 / mean * batch if mean > 0 else None)
    if not ok:
        return None, "samples_ms do not match the recorded statistics (edited by hand?): judged by threshold only"
    return [float(s) for s in a], None


def _imgsz(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, list) else str(v)


def _result_entry(rec: dict[str, Any], source: str) -> Entry:
    meta = rec.get("metadata") or {}
    scope = meta.get("scope") or "forward"
    key = ("result", str(meta.get("model_name")), _imgsz(meta.get("imgsz")), str(meta.get("batch")),
           str(meta.get("device")), str(meta.get("precision")), scope)
    label = (f"{meta.get('model_name')} imgsz={_imgsz(meta.get('imgsz'))} batch={meta.get('batch')} "
             f"{meta.get('device')} {meta.get('precision')}" + ("" if scope == "forward" else f" {scope}"))
    batch = meta.get("batch") if isinstance(meta.get("batch"), int) else 1
    thr = rec.get("throughput") or {}
    samples, note = _usable_samples(rec.get("samples_ms"), rec.get("latency"),
                                    [(thr.get("fps_mean"), batch)] if thr.get("fps_mean") is not None else [])
    cx = rec.get("model_complexity") or {}
    error = rec.get("error") or {}
    return Entry(key=key, label=label, kind="result", status=str(rec.get("status")),
                 error=f"{error.get('type')}: {error.get('message')}" if error else None,
                 metrics={m.name: _number(dig(rec, m.name)) for m in RESULT_METRICS}, samples_ms=samples,
                 identity={"params": cx.get("params"), "GFLOPs": cx.get("gflops")}, env=rec.get("env") or {},
                 list_sha256=meta.get("benchmark_list_sha256"), source=source, timestamp=meta.get("timestamp"),
                 notes=[note] if note else [])


def _suite_entries(suite: dict[str, Any], source: str) -> list[Entry]:
    entries = []
    for item in suite.get("results") or []:
        if not isinstance(item, dict):
            continue
        meta = item.get("metadata") or {}
        device = str(meta.get("device", ""))
        samples, note = _usable_samples(item.get("samples_ms"), item.get("latency"), [])
        metrics = {m.name: _number(dig(item, m.name)) for m in SUITE_METRICS}
        if item.get("latency"):
            metrics["duration"] = None  # total time depends on the iteration count; latency says it better
        error = item.get("error")
        entries.append(Entry(
            key=("suite", str(item.get("name")), device), label=f"{item.get('name')} [{device or '?'}]", kind="suite",
            status=str(item.get("status", "ok")), error=str(error) if error else None, metrics=metrics,
            samples_ms=samples, identity={"batch_size": meta.get("batch_size"), "unit": meta.get("unit")},
            env=suite.get("env") or {}, list_sha256=None, source=source, timestamp=suite.get("created"),
            notes=[note] if note else []))
    return entries


def _entries_from_data(data: Any, source: str) -> list[Entry]:
    if isinstance(data, dict) and data.get("kind") == SUITE_KIND:
        return _suite_entries(data, source)
    if isinstance(data, dict) and "schema_version" in data and "status" in data:
        return [_result_entry(data, source)]
    raise ResultError(f"{source} is neither a medbench result nor a medbench suite file")


def _load_directory(root: Path, warnings: list[str]) -> list[Entry]:
    from medbench.analysis.collate import load_dir

    found = load_dir(root)
    entries = [_result_entry(r, r.get("run_dir", str(root))) for r in found.records]
    entries += [_result_entry(r, r["run_dir"]) for r in found.crashed]
    warnings += [f"skipped {p}: {why}" for p, why in found.broken]
    if not found.records and not found.crashed:  # a directory of suite files (BenchmarkSuite output_dir)
        for path in sorted(root.rglob("*.json")):
            try:
                data = read_json(path, "results")
            except ResultError as exc:
                warnings.append(f"skipped {exc}")
                continue
            if isinstance(data, dict) and data.get("kind") == SUITE_KIND:
                entries += _suite_entries(data, str(path))
    if not entries:
        raise ResultError(f"no medbench results or suite files under {root}")
    return entries


def load_entries(source: str | Path | dict[str, Any], warnings: list[str] | None = None) -> list[Entry]:
    """A result JSON, a directory of them, a suite file, or an in-memory record/suite dict → entries.

    A missing or unreadable file raises ``ResultError`` (one line). Broken files inside a directory are skipped
    and described in ``warnings`` (when given).
    """
    warnings = warnings if warnings is not None else []
    if isinstance(source, dict):
        return _entries_from_data(source, "<in-memory>")
    path = Path(source)
    if path.is_dir():
        return _load_directory(path, warnings)
    return _entries_from_data(read_json(path, "results"), str(path))
