"""Sweep directory → comparison tables (SPEC §7).

``python -m medbench.collate <dir> [--output comparison.csv]`` reads every ``result.json`` below
``dir`` (one per run), reports and skips unreadable files, lists run directories that have a
``.hydra/overrides.yaml`` but no result as ``crashed``, and writes one row per run. The same code
runs at the end of every multirun as a Hydra callback (``CollateCallback``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from medbench.errors import ResultError
from medbench.result import RESULT_NAME, read_result

log = logging.getLogger("medbench")

SETTING = ["model", "imgsz", "batch", "device", "precision"]
COLUMNS = {  # table column → dotted path in the record
    "model": "metadata.model_name", "imgsz": "metadata.imgsz", "batch": "metadata.batch",
    "device": "metadata.device", "precision": "metadata.precision", "params_M": "model_complexity.params_M",
    "gflops": "model_complexity.gflops", "latency_mean_ms": "latency.mean_ms", "latency_p50_ms": "latency.p50_ms",
    "latency_p95_ms": "latency.p95_ms", "fps": "throughput.fps_p50", "fps_pipelined": "throughput.fps_pipelined",
    "peak_gpu_mem_MB": "memory.peak_gpu_mem_MB", "iqr_pct": "noise.iqr_over_median", "status": "status",
    "error": "error.message", "list_sha256": "metadata.benchmark_list_sha256",
}


@dataclass
class Collection:
    """What a directory holds: readable records, broken files, and runs that left no record."""

    records: list[dict[str, Any]] = field(default_factory=list)
    broken: list[tuple[Path, str]] = field(default_factory=list)
    crashed: list[dict[str, Any]] = field(default_factory=list)


def _dig(record: dict[str, Any], dotted: str) -> Any:
    node: Any = record
    for key in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _crashed_row(run_dir: Path) -> dict[str, Any]:
    """A run dir with Hydra's overrides but no result.json: the job died before writing."""
    try:
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        overrides = []
    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    return {"status": "crashed", "error": {"type": "crash", "message": "no result.json (killed, timed out or crashed)"},
            "overrides": overrides, "run_dir": str(run_dir),
            "metadata": {"model_name": values.get("model.name", values.get("model")), "imgsz": values.get("imgsz"),
                         "batch": values.get("batch"), "device": values.get("device"),
                         "precision": values.get("runtime.precision")}}


def load_dir(root: Path | str) -> Collection:
    """Read every result below ``root`` (or one file); never raises for a bad file."""
    root = Path(root)
    found = Collection()
    files = [root] if root.is_file() else sorted(root.rglob(RESULT_NAME))
    for path in files:
        try:
            record = read_result(path)
        except ResultError as exc:
            found.broken.append((path, str(exc)))
            continue
        record["run_dir"] = str(path.parent)
        found.records.append(record)
    if root.is_dir():
        have = {Path(r["run_dir"]) for r in found.records} | {p.parent for p, _ in found.broken}
        for overrides in sorted(root.rglob(".hydra/overrides.yaml")):
            run_dir = overrides.parent.parent
            if run_dir not in have and run_dir != root:
                found.crashed.append(_crashed_row(run_dir))
    return found


def results_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run (SPEC §7 first table), sorted by setting then latency."""
    rows = [{col: _dig(r, path) for col, path in COLUMNS.items()} | {"run_dir": r.get("run_dir")} for r in records]
    df = pd.DataFrame(rows, columns=[*COLUMNS, "run_dir"])
    if df.empty:
        return df
    df["imgsz"] = df["imgsz"].map(lambda v: "x".join(map(str, v)) if isinstance(v, list) else v)
    df["iqr_pct"] = df["iqr_pct"] * 100
    return df.sort_values(["imgsz", "batch", "device", "precision", "latency_p50_ms"],
                          key=lambda s: s.astype(str) if s.name != "latency_p50_ms" else s,
                          na_position="last", ignore_index=True)


def render(df: pd.DataFrame, fmt: str = "text") -> str:
    """Format a table: text (terminal), csv, md (GitHub Markdown) or latex; numbers stay floats until here."""
    if fmt == "csv":
        return df.to_csv(index=False)
    shown = df.drop(columns=["run_dir", "list_sha256"], errors="ignore")
    if fmt == "md":
        return shown.to_markdown(index=False, floatfmt=".2f") if _has_tabulate() else shown.to_string(index=False)
    if fmt == "latex":
        return shown.to_latex(index=False, float_format="%.2f")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        return shown.to_string(index=False, float_format=lambda v: f"{v:.2f}")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def collate(root: Path | str, output: Path | str | None = None, fmt: str = "csv") -> tuple[pd.DataFrame, Collection]:
    """Load ``root``, build the table, write it to ``output`` (if given); return both."""
    found = load_dir(root)
    df = results_table(found.records + found.crashed)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(render(df, fmt))
    return df, found


def _report(df: pd.DataFrame, found: Collection, out: Any = sys.stdout) -> None:
    print(render(df, "text") if not df.empty else "(no runs found)", file=out)
    for path, why in found.broken:
        print(f"skipped {path}: {why}", file=out)
    failed = df[df["status"] != "ok"] if not df.empty else df
    if len(failed):
        print(f"{len(failed)} of {len(df)} runs did not finish ok", file=out)


class CollateCallback(Callback):
    """At the end of a multirun, write comparison.csv into the sweep dir (same code as the command)."""

    failed_points: int = 0  # read by medbench.app.main to set the sweep's exit status

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        df, found = collate(sweep_dir, sweep_dir / "comparison.csv")
        _report(df, found)
        type(self).failed_points = int((df["status"] != "ok").sum()) if not df.empty else 0
        log.info("comparison table → %s", sweep_dir / "comparison.csv")


def main(argv: list[str] | None = None) -> int:
    """``python -m medbench.collate``."""
    parser = argparse.ArgumentParser(prog="python -m medbench.collate", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="sweep directory (or a single result.json)")
    parser.add_argument("--output", "-o", type=Path, help="write the table here (default: <dir>/comparison.csv)")
    parser.add_argument("--format", choices=["csv", "md", "latex"], default=None,
                        help="output format (default: from the --output suffix, else csv)")
    args = parser.parse_args(argv)
    if not args.directory.exists():
        print(f"medbench.collate: error: no such directory: {args.directory}", file=sys.stderr)
        return 2
    output = args.output or (args.directory / "comparison.csv" if args.directory.is_dir() else None)
    fmt = args.format or {".md": "md", ".tex": "latex"}.get(output.suffix if output else "", "csv")
    df, found = collate(args.directory, output, fmt)
    _report(df, found)
    if output is not None:
        print(f"table → {output}")
    return 0 if not df.empty else 1


if __name__ == "__main__":
    sys.exit(main())
