"""Sweep directory → comparison tables (SPEC §7).

``python -m medbench.collate <dir>`` reads every ``result.json`` below ``dir`` (one per run), reports
and skips unreadable files, lists run directories that have a ``.hydra/overrides.yaml`` but no result
as ``crashed``, and prints two tables: one row per run, and Δ% against the baseline model at the same
imgsz / batch / device / precision. It writes them as CSV (plus ``<name>_delta.csv``), Markdown or
LaTeX. The same function (``run_collation``) runs at the end of every multirun as a Hydra callback
(``CollateCallback``), writing ``comparison.csv`` and ``comparison.md`` into the sweep directory.

Numbers stay floats until rendering; sorting is on numbers, never on formatted strings.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from medbench.errors import MedbenchError, ResultError
from medbench.results.crashes import crashed_record, find_result_files, not_run_records
from medbench.results.store import RESULT_NAME, dig, read_result

log = logging.getLogger("medbench")

SETTING = ["model", "imgsz", "batch", "device", "precision"]
GROUP = ["imgsz", "batch", "device", "precision", "variant"]  # a comparison: same everything but the model
COLUMNS = {  # table column → dotted path in the record
    "model": "metadata.model_name", "imgsz": "metadata.imgsz", "batch": "metadata.batch",
    "device": "metadata.device", "precision": "metadata.precision", "params_M": "model_complexity.params_M",
    "gflops": "model_complexity.gflops", "latency_mean_ms": "latency.mean_ms", "latency_p50_ms": "latency.p50_ms",
    "latency_p95_ms": "latency.p95_ms", "fps": "throughput.fps_p50", "fps_pipelined": "throughput.fps_pipelined",
    "peak_gpu_mem_MB": "memory.peak_gpu_mem_MB", "iqr_pct": "noise.iqr_over_median",
    "throttled": "telemetry.throttled", "status": "status", "error": "error.message",
    "error_type": "error.type", "list_sha256": "metadata.benchmark_list_sha256", "env_gpu_name": "env.gpu_name",
    "env_torch": "env.torch", "env_cpu": "env.cpu",
}
NUMERIC = ["params_M", "gflops", "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "fps", "fps_pipelined",
           "peak_gpu_mem_MB", "iqr_pct", "latency_p5_ms"]
# Kept in the CSV (machine-readable), left out of the terminal / Markdown / LaTeX tables.
HIDDEN = ["run_dir", "list_sha256", "env_gpu_name", "env_torch", "env_cpu", "error_type", "latency_p5_ms"]
DELTAS = {  # Δ% column → table column it is computed from
    "d_params_pct": "params_M", "d_gflops_pct": "gflops", "d_latency_mean_pct": "latency_mean_ms",
    "d_latency_p95_pct": "latency_p95_ms", "d_fps_pct": "fps", "d_peak_gpu_mem_pct": "peak_gpu_mem_MB",
}
DELTA_HEADERS = {"d_params_pct": "params Δ%", "d_gflops_pct": "GFLOPs Δ%", "d_latency_mean_pct": "latency mean Δ%",
                 "d_latency_p95_pct": "latency p95 Δ%", "d_fps_pct": "FPS Δ%", "d_peak_gpu_mem_pct": "GPU mem Δ%"}
ENV_FIELDS = {"list_sha256": "benchmark list (metadata.benchmark_list_sha256)", "env_gpu_name": "GPU (env.gpu_name)",
              "env_torch": "torch version (env.torch)", "env_cpu": "CPU (env.cpu)"}
# Overrides that define the setting or the model: never part of the "variant" (what else a sweep varied).
_NOT_VARIANT = re.compile(r"^(\+*)(model|imgsz|batch|device|runtime\.precision|experiment|hydra|result_file|repeat)(\.|$)")
NOISY_PCT = 10.0  # IQR/median above this (percent) is flagged, as in medbench.analysis.stats.NOISE_WARN
COLUMNS_ORDER_VARIANT = 5  # the variant column goes right after the setting columns
FORMATS = {"csv": ".csv", "md": ".md", "latex": ".tex"}


@dataclass
class Collection:
    """What a directory holds: readable records, broken files, and runs that left no record."""

    records: list[dict[str, Any]] = field(default_factory=list)
    broken: list[tuple[Path, str]] = field(default_factory=list)
    crashed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Collated:
    """Everything one collation produces; rendered by ``render_report`` for every output format."""

    table: pd.DataFrame
    delta: pd.DataFrame
    baseline: str | None
    warnings: list[str]
    found: Collection

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[self.table["status"] != "ok"] if not self.table.empty else self.table


def load_dir(root: Path | str) -> Collection:
    """Read every result below ``root`` (or one file); never raises for a bad file."""
    root = Path(root)
    found = Collection()
    files = [root] if root.is_file() else find_result_files(root)  # also `-m result_file=out.json` points
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
                found.crashed.append(crashed_record(run_dir, root))
        found.crashed.extend(not_run_records(root))  # planned points that never started (sweep_plan.json)
    return found


def _variants(records: list[dict[str, Any]]) -> list[str]:
    """What a sweep varied besides model and setting (e.g. ``runtime.channels_last=true``), per record."""
    parsed = []
    for r in records:
        overrides = dig(r, "metadata.overrides") or r.get("overrides") or []
        kv = dict(o.split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)
        parsed.append({k.lstrip("+~"): v for k, v in kv.items() if not _NOT_VARIANT.match(k)})
    keys = sorted({k for kv in parsed for k in kv})
    differing = [k for k in keys if len({kv.get(k) for kv in parsed}) > 1]
    return [" ".join(f"{k}={kv[k]}" for k in differing if k in kv) for kv in parsed]


def _imgsz_area(value: Any) -> float:
    """Sort key for imgsz: 64 < 96 < 640 (numbers, not strings); ``[h, w]`` / ``"hxw"`` by area."""
    numbers = [int(n) for n in re.findall(r"\d+", str(value))] if value is not None else []
    if not numbers:
        return float("inf")
    return float(numbers[0] * numbers[-1]) if len(numbers) > 1 else float(numbers[0]) ** 2


def _p5(samples: Any) -> float:
    if not isinstance(samples, list) or not samples:
        return float("nan")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), 5))


def results_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run (SPEC §7 first table), sorted by setting (numerically), ok runs by latency, then the rest."""
    rows = [{col: dig(r, path) for col, path in COLUMNS.items()}
            | {"latency_p5_ms": _p5(r.get("samples_ms")), "run_dir": r.get("run_dir")} for r in records]
    df = pd.DataFrame(rows, columns=[*COLUMNS, "latency_p5_ms", "run_dir"])
    if df.empty:
        return df.assign(variant=pd.Series(dtype=str))
    df.insert(COLUMNS_ORDER_VARIANT, "variant", _variants(records))
    df["imgsz"] = df["imgsz"].map(lambda v: "x".join(map(str, v)) if isinstance(v, list) else v)
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["iqr_pct"] = df["iqr_pct"] * 100
    keys = pd.DataFrame({"a": df["imgsz"].map(_imgsz_area), "b": pd.to_numeric(df["batch"], errors="coerce"),
                         "c": df["device"].astype(str), "d": df["precision"].astype(str),
                         "e": df["variant"].astype(str), "f": df["status"] != "ok", "g": df["latency_p50_ms"],
                         "h": df["model"].astype(str)})
    order = keys.sort_values(list("abcdefgh"), na_position="last", kind="stable").index
    return df.loc[order].reset_index(drop=True)



def pick_baseline(table: pd.DataFrame, baseline: str | None = None) -> str | None:
    """``baseline`` if given, else the model named ``baseline`` if present, else the first model (sorted)."""
    ok = table[table["status"] == "ok"] if not table.empty else table
    models = sorted({str(m) for m in ok["model"].dropna()}) if not ok.empty else []
    if baseline is not None:
        return baseline
    if "baseline" in models:
        return "baseline"
    return models[0] if models else None


def _pct(value: float, base: float) -> float:
    if not (np.isfinite(value) and np.isfinite(base)) or base == 0:
        return float("nan")
    return (value - base) / base * 100.0


def delta_table(table: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Δ% of every ok run against the baseline model's run at the same setting (the baseline's own row is 0)."""
    cols = [*SETTING, "variant", "baseline", *DELTAS, "note"]
    base_name = pick_baseline(table, baseline)
    if table.empty or base_name is None:
        return pd.DataFrame(columns=cols)
    ok = table[table["status"] == "ok"]
    rows = []
    for _, group in ok.groupby(GROUP, sort=False, dropna=False):
        base_rows = group[group["model"] == base_name]
        base = base_rows.iloc[0] if len(base_rows) else None
        note = "" if base is not None else f"no {base_name} run at this setting"
        if len(base_rows) > 1:
            note = f"{len(base_rows)} {base_name} runs at this setting; the first is the reference"
        for _, row in group.iterrows():
            deltas = {d: (_pct(row[c], base[c]) if base is not None else float("nan")) for d, c in DELTAS.items()}
            rows.append({**{k: row[k] for k in [*SETTING, "variant"]}, "baseline": base_name if base is not None else None,
                         **deltas, "note": note})
    df = pd.DataFrame(rows, columns=cols)
    for col in DELTAS:
        df[col] = df[col].astype(float)
    return df


def _setting_label(row: pd.Series) -> str:
    label = f"imgsz={row['imgsz']} batch={row['batch']} {row['device']} {row['precision']}"
    return f"{label} {row['variant']}" if row.get("variant") else label


def comparison_warnings(table: pd.DataFrame, delta: pd.DataFrame, baseline: str | None) -> list[str]:
    """Why a Δ% may not be a fair comparison: different image lists, environments, precisions; noisy runs."""
    if table.empty:
        return []
    ok = table[table["status"] == "ok"]
    warnings = []
    for col, what in ENV_FIELDS.items():
        hits: dict[tuple[str, ...], list[str]] = {}
        for _, group in ok.groupby(GROUP, sort=False, dropna=False):
            values = tuple(sorted({str(v) for v in group[col]}))
            if len(values) > 1:
                hits.setdefault(values, []).append(_setting_label(group.iloc[0]))
        for values, settings in hits.items():
            more = f" and {len(settings) - 1} more" if len(settings) > 1 else ""
            warnings.append(f"runs compared with each other differ in {what}: {' vs '.join(values)} "
                            f"(at {settings[0]}{more}); their Δ% is not a like-for-like comparison")
    precisions = sorted({str(p) for p in ok["precision"].dropna()})
    if len(precisions) > 1:
        warnings.append(f"runs use several precisions ({', '.join(precisions)}); Δ% only compares runs of one precision")
    if baseline is not None and not ok.empty and baseline not in set(ok["model"]):
        warnings.append(f"baseline model {baseline!r} has no ok run here; no Δ% computed "
                        f"(models: {', '.join(sorted(map(str, set(ok['model']))))})")
    elif not delta.empty and (delta["note"] != "").any():
        missing = delta[delta["note"].str.startswith("no ")].drop_duplicates(GROUP)
        if len(missing):
            warnings.append(f"{len(missing)} setting(s) have no {baseline} run: their Δ% is blank "
                            f"(e.g. {_setting_label(missing.iloc[0])})")
    noisy = ok[ok["iqr_pct"] > NOISY_PCT]
    if len(noisy):
        warnings.append(f"{len(noisy)} of {len(ok)} runs are noisy (IQR > {NOISY_PCT:.0f}% of the median): "
                        "small differences between them are not meaningful")
    throttled = ok[ok["throttled"] == True]  # noqa: E712 (a column of True/False/None)
    if len(throttled):
        warnings.append(f"{len(throttled)} runs were clock-throttled (telemetry.throttled): "
                        + ", ".join(f"{r['model']} {_setting_label(r)}" for _, r in throttled.iterrows()))
    return warnings


def build(root: Path | str, baseline: str | None = None) -> Collated:
    """Load ``root`` and compute both tables and the warnings (pure apart from reading the files)."""
    found = load_dir(root)
    table = results_table(found.records + found.crashed)
    base = pick_baseline(table, baseline)
    delta = delta_table(table, base)
    return Collated(table, delta, base, comparison_warnings(table, delta, base), found)


def _fmt_table(df: pd.DataFrame, fmt: str) -> str:
    df = df.copy()
    for col in df.columns[df.dtypes == object]:  # None / NaN in text columns show as blanks
        df[col] = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else v)
    if fmt == "md":
        blanked = df.astype(object).where(df.notna(), None)  # tabulate prints NaN as "nan", None as missingval
        return blanked.to_markdown(index=False, floatfmt=".2f", missingval="")
    if fmt == "latex":
        return df.to_latex(index=False, float_format="%.2f", na_rep="")
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 60):
        return df.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="")


def render(df: pd.DataFrame, fmt: str = "text") -> str:
    """Format the runs table: text (terminal), csv, md (GitHub Markdown) or latex; numbers stay floats until here."""
    if fmt == "csv":
        return df.to_csv(index=False)
    shown = df.drop(columns=HIDDEN, errors="ignore")
    if "variant" in shown and not shown["variant"].astype(bool).any():
        shown = shown.drop(columns="variant")
    return _fmt_table(shown, fmt)


def render_delta(delta: pd.DataFrame, fmt: str = "text") -> str:
    """Format the Δ% table (headers like ``latency p95 Δ%``)."""
    if fmt == "csv":
        return delta.to_csv(index=False)
    shown = delta.rename(columns=DELTA_HEADERS)
    if "variant" in shown and not shown["variant"].astype(bool).any():
        shown = shown.drop(columns="variant")
    if "note" in shown and not shown["note"].astype(bool).any():
        shown = shown.drop(columns="note")
    return _fmt_table(shown, fmt)


def _failed_lines(c: Collated) -> list[str]:
    lines = []
    for _, r in c.failed.iterrows():
        where = r["run_dir"] or ""
        lines.append(f"{r['status']}: {r['model']} {_setting_label(r)}: {r['error_type'] or 'error'}: {r['error']}"
                     f"  ({where})")
    return lines


def render_report(c: Collated, fmt: str = "text") -> str:
    """Both tables, warnings, failed runs and skipped files in one document (text, md or latex)."""
    if fmt == "csv":
        return render(c.table, "csv")
    base = c.baseline or "baseline"
    blocks: list[tuple[str, str]] = [("Runs", render(c.table, fmt) if not c.table.empty else "(no runs found)")]
    if not c.delta.empty:
        blocks.append((f"Δ% vs {base} (same imgsz, batch, device, precision)", render_delta(c.delta, fmt)))
    notes = [("Warnings", [f"warning: {w}" for w in c.warnings]), ("Failed runs", _failed_lines(c)),
             ("Skipped files", [f"skipped {p}: {why}" for p, why in c.found.broken])]
    if fmt == "md":
        out = [f"## {title}\n\n{body}" for title, body in blocks]
        out += [f"## {title}\n\n" + "\n".join(f"- {ln}" for ln in lines) for title, lines in notes if lines]
        return "\n\n".join(out) + "\n"
    if fmt == "latex":
        out = [f"% {title}\n{body}" for title, body in blocks]
        out += [f"% {title}\n" + "\n".join(f"% {ln}" for ln in lines) for title, lines in notes if lines]
        return "\n".join(out)
    out = [body if title == "Runs" else f"{title}:\n{body}" for title, body in blocks]
    out += ["\n".join(lines) for _, lines in notes if lines]
    if len(c.failed):
        out.append(f"{len(c.failed)} of {len(c.table)} runs did not finish ok")
    return "\n\n".join(out)


def write_output(c: Collated, output: Path | str, fmt: str = "csv") -> list[Path]:
    """Write one output file; CSV holds the runs table and gets a ``<stem>_delta.csv`` sibling for Δ%."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_report(c, fmt))
    written = [output]
    if fmt == "csv":
        sibling = output.with_name(f"{output.stem}_delta.csv")
        sibling.write_text(render_delta(c.delta, "csv"))
        written.append(sibling)
    return written


def run_collation(root: Path | str, outputs: list[tuple[Path, str]], baseline: str | None = None,
                  plot_dir: Path | None = None, plot_x: str = "params_M") -> tuple[Collated, list[Path]]:
    """The one code path of the command and the end-of-sweep callback: collate, write, optionally plot."""
    c = build(root, baseline)
    written = [p for output, fmt in outputs for p in write_output(c, output, fmt)]
    if plot_dir is not None:
        from medbench.analysis.plots import write_plots

        written += write_plots(c.table, plot_dir, x=plot_x)
    return c, written


class CollateCallback(Callback):
    """At the end of a multirun, write comparison.csv and comparison.md into the sweep dir (same code as the command).

    Options (``hydra.callbacks.collate.baseline=ghost``, ``hydra.callbacks.collate.plot=true``) are passed by Hydra.
    """

    failed_points: int = 0  # read by medbench.cli.app.main to set the sweep's exit status

    def __init__(self, baseline: str | None = None, plot: bool = False) -> None:
        self.baseline = baseline
        self.plot = plot

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        outputs = [(sweep_dir / "comparison.csv", "csv"), (sweep_dir / "comparison.md", "md")]
        try:
            c, written = run_collation(sweep_dir, outputs, self.baseline, sweep_dir if self.plot else None)
        except MedbenchError as exc:  # e.g. --plot without matplotlib: the sweep itself succeeded
            log.error("medbench: collation failed: %s", exc)
            return
        print(render_report(c, "text"))
        type(self).failed_points = len(c.failed)
        log.info("comparison tables → %s", ", ".join(str(p) for p in written))


def _default_outputs(directory: Path, output: Path | None, fmt: str | None) -> list[tuple[Path, str]]:
    if output is not None:
        return [(output, fmt or {".md": "md", ".tex": "latex"}.get(output.suffix, "csv"))]
    if not directory.is_dir():
        return []
    if fmt is not None:
        return [(directory / f"comparison{FORMATS[fmt]}", fmt)]
    return [(directory / "comparison.csv", "csv"), (directory / "comparison.md", "md")]


def main(argv: list[str] | None = None) -> int:
    """``python -m medbench.collate``."""
    parser = argparse.ArgumentParser(
        prog="python -m medbench.collate", description=__doc__.split("\n\n")[1],
        epilog="Without --output, a directory gets comparison.csv (+ comparison_delta.csv) and comparison.md, "
               "exactly what the end-of-sweep callback writes. Exit status: 0 when runs were collated "
               "(failed runs and skipped files are reported), 1 when none were found, 2 for a missing path.")
    parser.add_argument("directory", type=Path, help="sweep directory (or a single result.json)")
    parser.add_argument("--output", "-o", type=Path, help="write the tables here (format from --format or the suffix)")
    parser.add_argument("--format", choices=list(FORMATS), default=None,
                        help="output format (default: from the --output suffix, else csv + md)")
    parser.add_argument("--baseline", default=None,
                        help="model the Δ%% table compares against (default: 'baseline' if present, else the first model)")
    parser.add_argument("--plot", action="store_true",
                        help="also write latency_vs_params.png and latency_by_setting.png (needs matplotlib)")
    parser.add_argument("--plot-x", choices=["params", "gflops"], default="params",
                        help="x axis of the scatter plot (default: params)")
    args = parser.parse_args(argv)
    if not args.directory.exists():
        print(f"medbench.analysis.collate: error: no such file or directory: {args.directory}", file=sys.stderr)
        return 2
    outputs = _default_outputs(args.directory, args.output, args.format)
    plot_dir = None
    if args.plot:
        plot_dir = args.output.parent if args.output else (args.directory if args.directory.is_dir()
                                                           else args.directory.parent)
    try:
        c, written = run_collation(args.directory, outputs, args.baseline, plot_dir,
                                   "gflops" if args.plot_x == "gflops" else "params_M")
    except MedbenchError as exc:
        print(f"medbench.analysis.collate: error: {exc}", file=sys.stderr)
        return 2
    print(render_report(c, "text"))
    for path in written:
        print(f"wrote {path}")
    return 0 if not c.table.empty else 1


if __name__ == "__main__":
    sys.exit(main())
