"""The one loader: every reader (collate, compare, resume, targets, the end-of-sweep callback) goes through here.

A file is parsed, upgraded from an older ``schema_version`` and validated against ``medbench.results.record``.
A file that cannot be used (missing, truncated, nested too deep, a directory, a symlink loop, not a medbench file,
an unknown schema version, a field of the wrong type) is *named with a one-line reason* — as a ``ResultError`` when
one file was asked for, as an entry of ``Loaded.skipped`` when a directory is read — and never crashes the reader.
NaN / Infinity (not JSON, but Python writes them) are read as missing and said so in ``Loaded.notes``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medbench.errors import ResultError
from medbench.results import crashes
from medbench.results.record import READABLE_VERSIONS, SCHEMA_VERSION, SUITE_KIND, Record, Suite

RESULT_NAME = "result.json"


@dataclass
class Loaded:
    """What a path holds: records (ok, failed, crashed, not run), suite files, and what was skipped and why."""

    records: list[Record] = field(default_factory=list)
    suites: list[tuple[Path, Suite]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[Record]:
        """Records read from a result file (not the crashed / not-run points the reader made up)."""
        return [r for r in self.records if r.status not in ("crashed", "not_run")]

    @property
    def crashed(self) -> list[Record]:
        """The points the reader made up: ``crashed`` (a run dir without a record) and ``not_run`` (planned only)."""
        return [r for r in self.records if r.status in ("crashed", "not_run")]


# --- one file -------------------------------------------------------------------------------------------------------

def parse_json(path: Path | str, what: str = "result") -> tuple[Any, list[str]]:
    """JSON text → data and notes on non-finite numbers (read as null); a one-line ``ResultError`` otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ResultError(f"{path} is a directory, not a {what} file") from None
    except OSError as exc:  # a symlink loop, no permission, an I/O error
        raise ResultError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ResultError(f"unreadable {what} file {path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"unreadable {what} file {path}: {exc}") from None
    except RecursionError:
        raise ResultError(f"unreadable {what} file {path}: JSON nested too deeply") from None
    return data, _drop_non_finite(data, path)


def _drop_non_finite(data: Any, path: Path) -> list[str]:
    """Replace NaN / Infinity by None in place (a list of samples with one is dropped whole); say where."""
    where: list[str] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, at = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            name = f"{at}.{key}" if at else str(key)
            if isinstance(value, float) and not math.isfinite(value):
                node[key] = None
                where.append(name)
            elif isinstance(value, (dict, list)):
                stack.append((value, name))
    samples = [w for w in where if w.rsplit(".", 1)[0].endswith("samples_ms")]
    for owner in {s.rsplit(".", 1)[0] for s in samples}:
        _set(data, owner, None)
    if not where:
        return []
    shown = sorted({w.rsplit(".", 1)[0] if w in samples else w for w in where})
    return [f"{path}: NaN/Infinity in {', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''} "
            "read as missing (not valid JSON; medbench writes null)"]


def _set(data: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value


def upgrade(data: dict[str, Any], api: bool = False) -> dict[str, Any]:
    """A version-1 result or (``api``) suite entry → version 2 (a copy); version 2 is returned as is."""
    if data.get("schema_version", 1) != 1:
        return data
    out = {**data, "schema_version": SCHEMA_VERSION}
    top_overrides = out.pop("overrides", None)  # v1 crashed points kept them at the top level
    meta = dict(out.get("metadata") or {}) if isinstance(out.get("metadata"), dict) else out.get("metadata")
    if isinstance(meta, dict) and top_overrides and not meta.get("overrides"):
        meta["overrides"] = top_overrides
    if api or "duration" in out or not isinstance(out.get("throughput"), (dict, type(None))):  # a v1 API entry
        out["kind"] = "api"
        out.setdefault("status", "ok")
        items_per_s = out.get("throughput")
        meta = {**(meta or {}), "duration_s": out.pop("duration", None)}
        latency = out.get("latency") if isinstance(out.get("latency"), dict) else {}
        batch = meta.get("batch_size") if isinstance(meta.get("batch_size"), int) else 1
        fps = (lambda ms: 1000.0 / ms * batch if isinstance(ms, (int, float)) and ms > 0 else None)  # noqa: E731
        throughput = {"items_per_s": items_per_s, "fps_p50": meta.pop("throughput_p50", None) or fps(latency.get("p50_ms")),
                      "fps_mean": fps(latency.get("mean_ms")),
                      "fps_pipelined": meta.pop("throughput_pipelined", None), "pipelined_ms": meta.pop("pipelined_ms", None)}
        memory = {"peak_gpu_mem_MB": out.pop("memory_allocated", None), "reserved_MB": out.pop("memory_reserved", None),
                  "peak_rss_MB": meta.pop("peak_rss_MB", None)}
        meta.pop("peak_gpu_mem_MB", None)
        out["throughput"] = throughput if any(v is not None for v in throughput.values()) else None
        out["memory"] = memory if any(v is not None for v in memory.values()) else None
    if meta is not None:
        out["metadata"] = meta
    return out


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {first['msg']}{more}"


def _version(data: dict[str, Any], path: Path | str) -> None:
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ResultError(f"{path}: unknown schema_version {version!r} (this medbench reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))}): skipped")


def to_record(data: Any, source: Path | str = "<in-memory>") -> Record:
    """A record dict (any readable version) → ``Record``; a one-line ``ResultError`` when it is not one."""
    if not isinstance(data, dict) or "status" not in data or ("schema_version" not in data and "kind" not in data):
        raise ResultError(f"{source} is not a medbench result (no schema_version/status)")
    _version(data, source)
    try:
        return Record.model_validate(upgrade(data))
    except ValidationError as exc:
        raise ResultError(f"{source} is not a valid medbench result: {_one_line(exc)}") from None


def to_suite(data: Any, source: Path | str = "<in-memory>") -> Suite:
    """A suite dict (any readable version) → ``Suite``."""
    if not isinstance(data, dict) or data.get("kind") != SUITE_KIND:
        raise ResultError(f"{source} is not a medbench suite file (kind != {SUITE_KIND!r})")
    _version(data, source)
    results = data.get("results")
    if not isinstance(results, list):
        raise ResultError(f"{source} is not a valid medbench suite file: results is not a list")
    entries = [upgrade({"kind": "api", **r, "schema_version": data["schema_version"]}, api=True)
               if isinstance(r, dict) else r for r in results]
    try:
        return Suite.model_validate({**data, "schema_version": SCHEMA_VERSION, "results": entries})
    except ValidationError as exc:
        raise ResultError(f"{source} is not a valid medbench suite file: {_one_line(exc)}") from None


def read_record(path: Path | str) -> Record:
    data, _ = parse_json(path)
    return to_record(data, path)


def read_suite(path: Path | str) -> Suite:
    data, _ = parse_json(path, "suite")
    return to_suite(data, path)


def read_any(path: Path | str, notes: list[str] | None = None) -> Record | Suite:
    """A result file or a suite file, whichever ``path`` is."""
    data, found = parse_json(path, "results")
    if notes is not None:
        notes += found
    if isinstance(data, dict) and data.get("kind") == SUITE_KIND:
        return to_suite(data, path)
    if isinstance(data, dict) and "schema_version" in data and "status" in data:
        return to_record(data, path)
    raise ResultError(f"{path} is neither a medbench result nor a medbench suite file")


# --- a directory ----------------------------------------------------------------------------------------------------

def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Like ``os.walk`` without following directory symlinks (a link loop cannot make it run forever)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: None):
        dirnames.sort()
        yield Path(dirpath), dirnames, sorted(filenames)


def load_dir(root: Path | str, *, suites: bool = False) -> Loaded:
    """Every result below ``root`` (or one file), the points that left none, and (``suites``) suite files."""
    root = Path(root)
    found = Loaded()
    if not root.is_dir():
        _add(found, root)
        return found
    with_record: set[Path] = set()
    run_dirs: list[Path] = []
    jsons: list[Path] = []
    for dirpath, dirnames, filenames in _walk(root):
        if RESULT_NAME in filenames or RESULT_NAME in dirnames:
            _add(found, dirpath / RESULT_NAME)
            with_record.add(dirpath)
        if ".hydra" in dirnames and (dirpath / ".hydra" / "overrides.yaml").is_file() and dirpath != root:
            run_dirs.append(dirpath)
            other = crashes.result_file_of(dirpath)  # `-m result_file=out.json` points
            if other != RESULT_NAME and other in filenames:
                _add(found, dirpath / other)
                with_record.add(dirpath)
        jsons += [dirpath / f for f in filenames if f.endswith(".json") and f not in (RESULT_NAME, "sweep_plan.json")]
    for run_dir in run_dirs:  # points that left no record: what their run dir still says
        if run_dir not in with_record:
            try:
                found.records.append(crashes.crashed_record(run_dir, root))
            except ValidationError as exc:  # a hand-edited .hydra/config.yaml with values no record can hold
                found.skipped.append((run_dir, f"{run_dir}: no result.json, and its config is unusable: "
                                               f"{_one_line(exc)}"))
    found.records += crashes.not_run_records(root)  # the sweep plan's never-started points
    if suites and not found.records:
        for path in jsons:
            _add_suite(found, path)
    return found


def _add(found: Loaded, path: Path) -> None:
    try:
        data, notes = parse_json(path)
        record = to_record(data, path)
    except ResultError as exc:
        found.skipped.append((path, str(exc)))
        return
    found.notes += notes
    record.run_dir = str(path.parent)
    found.records.append(record)


def _add_suite(found: Loaded, path: Path) -> None:
    try:
        data, notes = parse_json(path, "suite")
    except ResultError as exc:
        found.skipped.append((path, str(exc)))
        return
    if not (isinstance(data, dict) and data.get("kind") == SUITE_KIND):
        return  # another JSON file (a comparison report): not ours to judge
    try:
        found.suites.append((path, to_suite(data, path)))
        found.notes += notes
    except ResultError as exc:
        found.skipped.append((path, str(exc)))


def load_source(source: Path | str | dict[str, Any]) -> Loaded:
    """A result file, a suite file, a directory of either, or an in-memory record / suite dict."""
    found = Loaded()
    if isinstance(source, dict):
        item: Record | Suite = to_suite(source) if source.get("kind") == SUITE_KIND else to_record(source)
    else:
        path = Path(source)
        if path.is_dir():
            return load_dir(path, suites=True)
        if not path.exists() and not path.is_symlink():
            raise ResultError(f"results not found: {path}")
        item = read_any(path, found.notes)
        if isinstance(item, Record):
            item.run_dir = str(path.parent)
    if isinstance(item, Suite):
        found.suites.append((Path(str(source)) if not isinstance(source, dict) else Path("<in-memory>"), item))
    else:
        found.records.append(item)
    return found
