"""Records → comparable ``Entry`` objects: what ``compare`` matches and judges.

A CLI run is matched by its setting (model, imgsz, batch, device, precision, scope), an API / suite entry by
(name, device). Metrics come from the metric table (``medbench.results.metrics``); the raw samples are kept only
when they really describe the recorded statistics; ``identity`` must be equal on both sides (params and GFLOPs,
or an API entry's batch size and unit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medbench.analysis.replicates import replicate_index, run_flags
from medbench.errors import ResultError
from medbench.results.load import Loaded, load_source
from medbench.results.metrics import COMPARED, ENV_FIELDS, number
from medbench.results.record import Record, dig

SAMPLES_TOLERANCE = 0.005  # recorded mean/median must agree with the samples within 0.5%, else samples are unused


@dataclass
class Entry:
    """One comparable measurement, reduced to what comparison needs."""

    key: tuple[Any, ...]
    label: str
    kind: str  # "run" | "api"
    status: str
    error: str | None
    metrics: dict[str, float | None]
    samples_ms: list[float] | None  # None when absent or when they do not match the recorded statistics
    identity: dict[str, Any]  # must be equal on both sides
    env: dict[str, Any]  # ENV_FIELDS' values: GPU, CPU, torch, CUDA, benchmark list
    source: str
    timestamp: str | None = None  # when the run started (provenance.started_at, else metadata.timestamp)
    repeat: int | None = None  # the replicate index: pairs run r of the baseline with run r of the current side
    notes: list[str] = field(default_factory=list)
    flags: tuple[str, ...] = ()  # why this run is no evidence: loaded, throttled, very noisy (replicates.run_flags)
    traceback: str | None = None  # a failed run's full traceback (bugs only): for the JSON report, never printed


def _close(a: float | None, b: float | None) -> bool:
    return a is None or b is None or abs(a - b) <= SAMPLES_TOLERANCE * max(abs(a), abs(b), 1e-12)


def usable_samples(rec: Record) -> tuple[list[float] | None, str | None]:
    """The raw samples if they describe the recorded numbers; a hand-edited record makes them unusable."""
    samples = rec.samples_ms
    if not samples:
        return None, None
    a = np.asarray(samples, dtype=np.float64)
    mean, median = float(a.mean()), float(np.median(a))
    batch = rec.metadata.batch if isinstance(rec.metadata.batch, int) else rec.metadata.batch_size or 1
    ok = (_close(number(rec.get("latency.mean_ms")), mean) and _close(number(rec.get("latency.p50_ms")), median)
          and _close(number(rec.get("throughput.fps_mean")), 1000.0 / mean * batch if mean > 0 else None))
    if not ok:
        return None, "samples_ms do not match the recorded statistics (edited by hand?): judged by threshold only"
    return [float(s) for s in a], None


def _imgsz(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, list) else str(v)


def to_entry(rec: Record, source: str, env: Any = None) -> Entry:
    """One record as an entry; ``env`` is the suite's env block for API entries (the entries carry none)."""
    meta = rec.metadata
    if rec.kind == "api":
        device = str(meta.device or "")
        key: tuple[Any, ...] = ("api", str(rec.name), device)
        label = f"{rec.name} [{device or '?'}]"
        identity = {"batch_size": meta.batch_size, "unit": meta.unit}
    else:
        scope = meta.scope or "forward"
        backend = rec.get("metadata.backend") or "pytorch"  # records from before deployment backends: eager
        key = ("run", str(meta.model_name), _imgsz(meta.imgsz), str(meta.batch), str(meta.device),
               str(meta.precision), scope, backend)
        label = (f"{meta.model_name} imgsz={_imgsz(meta.imgsz)} batch={meta.batch} {meta.device} {meta.precision}"
                 + ("" if scope == "forward" else f" {scope}") + ("" if backend == "pytorch" else f" {backend}"))
        # the architecture: unfused GFLOPs where recorded (fusing is how it runs, not what it is; older records
        # counted before fusing), so a run that stopped fusing is judged as a slower run, not a different model
        identity = {"params": rec.get("model_complexity.params"),
                    "GFLOPs": rec.get("model_complexity.gflops_unfused") or rec.get("model_complexity.gflops")}
    samples, note = usable_samples(rec)
    return Entry(key=key, label=label, kind=rec.kind, status=rec.status,
                 error=f"{rec.error.type}: {rec.error.message}" if rec.error else None,
                 metrics={m.name: m.value(rec) for m in COMPARED}, samples_ms=samples, identity=identity,
                 env={f.column: rec.get(f.path) if env is None or not f.path.startswith("env.")
                      else dig(env, f.path.removeprefix("env.")) for f in ENV_FIELDS}, source=source,
                 timestamp=rec.get("provenance.started_at") or meta.timestamp, repeat=replicate_index(rec.get("metadata.repeat")),
                 notes=[note] if note else [],
                 flags=run_flags(rec.telemetry, rec.noise),
                 traceback=rec.error.traceback if rec.error else None)


def entries_of(found: Loaded) -> list[Entry]:
    entries = [to_entry(r, r.run_dir or "?") for r in found.records]
    for path, suite in found.suites:
        entries += [to_entry(r, f"{path}:{r.name}", suite.env) for r in suite.results]
    return entries


def load_entries(source: str | Path | dict[str, Any], warnings: list[str] | None = None) -> list[Entry]:
    """A result JSON, a directory of them, a suite file, or an in-memory record/suite dict → entries.

    A missing or unreadable file raises ``ResultError`` (one line). Files skipped inside a directory, and NaN
    read as missing, are described in ``warnings`` (when given).
    """
    found = load_source(source)
    if warnings is not None:
        warnings += [f"skipped {p}: {why}" for p, why in found.skipped] + found.notes
    entries = entries_of(found)
    if not entries:
        raise ResultError(f"no medbench results or suite files under {source}")
    return entries
