"""Performance targets: declared in YAML, checked against a suite file, a sweep or one result.

    medbench targets benchmarks/current.json                 # the shipped targets (default_targets.yaml)
    medbench targets outputs/multirun/<stamp> --targets my_targets.yaml --fail-on-miss

A target is ``{component, device, metric, op, bound, unit}``, e.g. resnet50 on cuda, throughput > 500 samples/s.
Every target gets one row: ``met``, ``missed``, or ``not measured`` (no successful result of that component on
that device type — e.g. a GPU target checked on a CPU-only machine). When several results match (num_workers 0
and 2, batch 1 and 8, ...), the best one counts and the row names it. ``--fail-on-miss`` exits 1 when any target
is missed; "not measured" never fails. A target's metric is a row of the metric table (``medbench.results.metrics``,
``target=`` names): ``throughput`` is ``throughput.fps_p50`` for CLI runs and API entries alike. Pure functions;
the command line and the text are ``medbench.cli.targets``.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medbench.errors import ConfigError
from medbench.results.load import load_source
from medbench.results.metrics import TARGETS
from medbench.results.record import Record
from medbench.text import first_line

OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                   "<=": operator.le}
MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"
DEVICE_TYPES = ("cpu", "cuda", "mps")

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
        if e["metric"] not in TARGETS:
            raise ConfigError(f"{where}: metric {e['metric']!r} is not one of {', '.join(TARGETS)}")
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
        raise ConfigError(f"targets file {p} is not valid YAML: {first_line(exc)}") from None
    return parse_targets(data, str(p))


# --- what was measured ----------------------------------------------------------------------------------------

def device_type(device: Any) -> str:
    """``cuda:0`` / ``0`` / ``cuda`` → ``cuda``; ``cpu`` → ``cpu``; ``mps`` → ``mps``."""
    text = str(device).strip().lower()
    if text.isdigit():
        return "cuda"
    return text.split(":", 1)[0]


def _measured(rec: Record, source: str) -> Measured:
    meta = rec.metadata
    component = str(meta.model_extra.get("component") or rec.name) if rec.kind == "api" else str(meta.model_name)
    return Measured(component, device_type(meta.device or "cpu"), {k: m.value(rec) for k, m in TARGETS.items()},
                    source)


def measurements(source: dict[str, Any] | str | os.PathLike) -> list[Measured]:
    """Successful measurements in a suite dict or file, a ``result.json`` or a directory (through the one loader)."""
    found = load_source(source if isinstance(source, dict) else Path(source))
    root = None if isinstance(source, dict) or not Path(source).is_dir() else Path(source)
    out = []
    for rec in found.records:
        if rec.ok:
            where = Path(rec.run_dir or ".")
            label = str(where.relative_to(root)) if root is not None and where != root else (
                "run" if isinstance(source, dict) else Path(str(source)).name)
            out.append(_measured(rec, f"{label} (imgsz={rec.metadata.imgsz} batch={rec.metadata.batch})"))
    for path, suite in found.suites:
        label = suite.name if isinstance(source, dict) else (
            str(path.relative_to(root)) if root is not None else path.name)
        out += [_measured(r, f"{label}:{r.name}") for r in suite.results if r.ok]
    return out


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
