"""Performance targets (SPEC §9): declared in YAML, checked against a suite file, a sweep or one result.

    python -m medbench.targets benchmarks/current.json                 # the shipped targets (default_targets.yaml)
    python -m medbench.targets outputs/multirun/<stamp> --targets my_targets.yaml --fail-on-miss

A target is ``{component, device, metric, op, bound, unit}``, e.g. resnet50 on cuda, throughput > 500 samples/s.
Every target gets one row: ``met``, ``missed``, or ``not measured`` (no successful result of that component on
that device type — e.g. a GPU target checked on a CPU-only machine). When several results match (num_workers 0
and 2, batch 1 and 8, ...), the best one counts and the row names it. ``--fail-on-miss`` exits 1 when any target
is missed; "not measured" never fails. Pure functions on plain dicts; only ``main`` prints.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medbench.errors import ConfigError, MedbenchError, ResultError

OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                   "<=": operator.le}
MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"
DEVICE_TYPES = ("cpu", "cuda", "mps")

# metric name → how to read it from a suite entry (BenchmarkResult.to_dict()) and from a CLI result.json
SUITE_METRICS: dict[str, Callable[[dict], Any]] = {
    "throughput": lambda r: r.get("throughput"),
    "latency_p50_ms": lambda r: (r.get("latency") or {}).get("p50_ms"),
    "latency_p95_ms": lambda r: (r.get("latency") or {}).get("p95_ms"),
    "latency_mean_ms": lambda r: (r.get("latency") or {}).get("mean_ms"),
    "memory_MB": lambda r: r.get("memory_allocated"),
}
RUN_METRICS: dict[str, Callable[[dict], Any]] = {
    "throughput": lambda r: (r.get("throughput") or {}).get("fps_p50"),
    "latency_p50_ms": lambda r: (r.get("latency") or {}).get("p50_ms"),
    "latency_p95_ms": lambda r: (r.get("latency") or {}).get("p95_ms"),
    "latency_mean_ms": lambda r: (r.get("latency") or {}).get("mean_ms"),
    "memory_MB": lambda r: (r.get("memory") or {}).get("peak_gpu_mem_MB"),
}


@dataclass(frozen=True)
class Target:
    component: str
    device: str
    metric: str
    op: str
    bound: float
    unit: str | None = None

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}" + (f" {self.unit}" if self.unit else "")


@dataclass(frozen=True)
class Measured:
    """One successful measurement: what it is, where it ran, its metrics, and where it came from."""

    component: str
    device: str
    values: dict[str, float | None]
    source: str


@dataclass
class TargetCheck:
    target: Target
    status: str
    measured: float | None = None
    source: str | None = None
    note: str | None = None


@dataclass
class TargetReport:
    checks: list[TargetCheck] = field(default_factory=list)
    source: str | None = None

    def _with(self, status: str) -> list[TargetCheck]:
        return [c for c in self.checks if c.status == status]

    @property
    def met(self) -> list[TargetCheck]:
        return self._with(MET)

    @property
    def missed(self) -> list[TargetCheck]:
        return self._with(MISSED)

    @property
    def not_measured(self) -> list[TargetCheck]:
        return self._with(NOT_MEASURED)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "summary": {"met": len(self.met), "missed": len(self.missed),
                                                    "not_measured": len(self.not_measured)},
                "checks": [{**asdict(c.target), "status": c.status, "measured": c.measured, "source": c.source,
                            "note": c.note} for c in self.checks]}

    def render(self, markdown: bool = False) -> str:
        return render_report(self, markdown=markdown)


# --- loading --------------------------------------------------------------------------------------------------

def default_targets_path() -> Path:
    return Path(str(resources.files("medbench").joinpath("default_targets.yaml")))


def parse_targets(data: Any, origin: str = "targets") -> list[Target]:
    """``{"targets": [ {...}, ... ]}`` (or the bare list) → Targets; a bad entry is a one-line ConfigError."""
    entries = data.get("targets") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: expected a 'targets:' list")
    out = []
    for i, e in enumerate(entries):
        where = f"{origin}: target #{i + 1}"
        if not isinstance(e, dict):
            raise ConfigError(f"{where} is not a mapping")
        missing = [k for k in ("component", "device", "metric", "op", "bound") if k not in e]
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}")
        if e["op"] not in OPS:
            raise ConfigError(f"{where}: op {e['op']!r} is not one of {' '.join(OPS)}")
        if e["metric"] not in SUITE_METRICS:
            raise ConfigError(f"{where}: metric {e['metric']!r} is not one of {', '.join(SUITE_METRICS)}")
        device = device_type(e["device"])
        if device not in DEVICE_TYPES:
            raise ConfigError(f"{where}: device {e['device']!r} is not one of {', '.join(DEVICE_TYPES)}")
        try:
            bound = float(e["bound"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: bound {e['bound']!r} is not a number") from None
        out.append(Target(str(e["component"]), device, e["metric"], e["op"], bound, e.get("unit")))
    return out


def load_targets(path: str | os.PathLike | None = None) -> list[Target]:
    """Targets from a YAML file; ``None`` or ``"default"`` means the shipped ``default_targets.yaml``."""
    import yaml

    p = default_targets_path() if path in (None, "default") else Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"targets file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"targets file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_targets(data, str(p))


# --- what was measured ----------------------------------------------------------------------------------------

def device_type(device: Any) -> str:
    """``cuda:0`` / ``0`` / ``cuda`` → ``cuda``; ``cpu`` → ``cpu``; ``mps`` → ``mps``."""
    text = str(device).strip().lower()
    if text.isdigit():
        return "cuda"
    return text.split(":", 1)[0]


def _from_suite(data: dict[str, Any], label: str) -> list[Measured]:
    out = []
    for r in data.get("results") or []:
        if not isinstance(r, dict) or r.get("status", "ok") != "ok":
            continue
        md = r.get("metadata") or {}
        values = {k: get(r) for k, get in SUITE_METRICS.items()}
        out.append(Measured(str(md.get("component") or r.get("name")), device_type(md.get("device", "cpu")),
                            values, f"{label}:{r.get('name')}"))
    return out


def _from_run(data: dict[str, Any], label: str) -> list[Measured]:
    if data.get("status") != "ok":
        return []
    md = data.get("metadata") or {}
    values = {k: get(data) for k, get in RUN_METRICS.items()}
    setting = f"imgsz={md.get('imgsz')} batch={md.get('batch')}"
    return [Measured(str(md.get("model_name")), device_type(md.get("device", "cpu")), values, f"{label} ({setting})")]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def measurements(source: dict[str, Any] | str | os.PathLike) -> list[Measured]:
    """Successful measurements in a suite dict, a suite file, a ``result.json`` or a sweep directory."""
    if isinstance(source, dict):
        return _from_suite(source, source.get("name", "suite")) if "results" in source else _from_run(source, "run")
    path = Path(source)
    if path.is_dir():
        found = []
        for file in sorted(path.rglob("*.json")):
            data = _read_json(file)
            if data is None:
                continue
            label = str(file.parent.relative_to(path)) if file.parent != path else file.name
            if data.get("kind") == "medbench-suite":
                found += _from_suite(data, str(file.relative_to(path)))
            elif file.name == "result.json" and "schema_version" in data:
                found += _from_run(data, label)
        return found
    if not path.exists():
        raise ResultError(f"results not found: {path}")
    data = _read_json(path)
    if data is None:
        raise ResultError(f"unreadable results file {path}")
    if data.get("kind") == "medbench-suite":
        return _from_suite(data, path.name)
    if "schema_version" in data and "status" in data:
        return _from_run(data, path.name)
    raise ResultError(f"{path} is neither a medbench suite file nor a result.json")


# --- checking -------------------------------------------------------------------------------------------------

def check_target(target: Target, found: Iterable[Measured]) -> TargetCheck:
    """The best matching measurement decides (max for > / >=, min for < / <=)."""
    candidates = [(m.values.get(target.metric), m) for m in found
                  if m.component == target.component and m.device == target.device]
    candidates = [(v, m) for v, m in candidates if v is not None]
    if not candidates:
        return TargetCheck(target, NOT_MEASURED, note=f"no {target.component} result on {target.device}")
    pick = max if target.op.startswith(">") else min
    value, best = pick(candidates, key=lambda vm: vm[0])
    status = MET if OPS[target.op](value, target.bound) else MISSED
    note = f"best of {len(candidates)}" if len(candidates) > 1 else None
    return TargetCheck(target, status, float(value), best.source, note)


def check_targets(targets: Sequence[Target], source: dict[str, Any] | str | os.PathLike) -> TargetReport:
    found = measurements(source)
    label = source.get("name") if isinstance(source, dict) else str(source)
    return TargetReport([check_target(t, found) for t in targets], source=label)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def render_report(report: TargetReport, markdown: bool = False) -> str:
    header = ("component", "device", "target", "measured", "status", "from")
    rows = []
    for c in report.checks:
        status = c.status.upper() if c.status == MISSED else c.status
        source = c.source or c.note or ""
        if c.source and c.note:
            source = f"{c.source} ({c.note})"
        rows.append((c.target.component, c.target.device, c.target.describe(), _fmt(c.measured), status, source))
    summary = f"targets: {len(report.met)} met, {len(report.missed)} missed, {len(report.not_measured)} not measured"
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
        return "\n".join([*lines, "", summary])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows), summary])


# --- command line ---------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medbench.targets",
                                description="Check performance targets against a suite file, a sweep directory "
                                            "or a result.json.")
    p.add_argument("results", help="suite file (python -m medbench.suite), sweep directory, or result.json")
    p.add_argument("--targets", default="default", help="targets YAML (default: medbench/default_targets.yaml)")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when any target is missed")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--output", help="also write the report as JSON here")
    args = p.parse_args(argv)
    try:
        report = check_targets(load_targets(args.targets), args.results)
    except MedbenchError as exc:
        print(f"medbench.analysis.targets: error: {exc}", file=sys.stderr)
        return 2
    print(render_report(report, markdown=args.markdown))
    if args.output:
        from medbench.results.store import write_json_atomic

        write_json_atomic(args.output, report.to_dict())
    return 1 if args.fail_on_miss and report.missed else 0


if __name__ == "__main__":
    sys.exit(main())
