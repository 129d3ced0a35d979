"""``medbench collate DIR`` (also ``python -m medbench.collate``) and the end-of-sweep callback: tables → files.

Reads every ``result.json`` below ``DIR`` (skipped files are named, points that left no record are listed as
``crashed`` / ``not run``) and prints two tables: one row per run, and Δ% against the baseline model at the same
imgsz / batch / device / precision. Writes them as CSV (plus ``<name>_delta.csv``), Markdown or LaTeX, atomically.
The same code (``collate_sweep``) runs at the end of every multirun as a Hydra callback (``CollateCallback``),
writing ``comparison.csv`` and ``comparison.md`` into the sweep directory. The tables are computed by
``medbench.analysis.collate``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from medbench.analysis.collate import DELTA_HEADERS, HIDDEN, Collated, build, setting_label
from medbench.analysis.deltas import DEFAULT_THRESHOLD
from medbench.errors import MedbenchError
from medbench.results.store import write_text_atomic
from medbench.text import display_path, first_line, usage_error

log = logging.getLogger("medbench")
FORMATS = {"csv": ".csv", "md": ".md", "latex": ".tex"}
DESCRIPTION = ("Reads every result.json below a sweep directory and prints two tables: one row per run, and "
               "each model against the baseline model at the same setting, replicates aggregated: p50 Δ% with "
               "its 95% interval and a verdict (slower / faster / ~ / same / unreliable). Loaded, throttled or "
               "very noisy runs are flagged and never used for a verdict. Writes CSV, Markdown or LaTeX.")


def _fmt_table(df: pd.DataFrame, fmt: str) -> str:
    df = df.copy()
    for col in df.columns[df.dtypes == object]:  # None / NaN in text columns show as blanks
        df[col] = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else v)
    if fmt == "latex":
        return df.to_latex(index=False, float_format="%.2f", na_rep="")
    blanked = df.astype(object).where(df.notna(), None)  # tabulate prints NaN as "nan", None as missingval
    return blanked.to_markdown(index=False, floatfmt=".2f", missingval="", tablefmt="github" if fmt == "md" else "simple")


def render(df: pd.DataFrame, fmt: str = "text") -> str:
    """Format the runs table: text (terminal), csv, md (GitHub Markdown) or latex; numbers stay floats until here."""
    if fmt == "csv":
        return df.to_csv(index=False)
    shown = df.drop(columns=HIDDEN, errors="ignore")
    if "variant" in shown and not shown["variant"].astype(bool).any():
        shown = shown.drop(columns="variant")
    for col in ("repeat", "flag"):  # replicate index and flags: only when a sweep has them
        if col in shown and not shown[col].fillna(0).astype(bool).any():
            shown = shown.drop(columns=col)
    return _fmt_table(shown, fmt)


def render_delta(delta: pd.DataFrame, fmt: str = "text") -> str:
    """Format the Δ% table (headers like ``latency p95 Δ%``)."""
    if fmt == "csv":
        return delta.to_csv(index=False)
    shown = delta.drop(columns="baseline", errors="ignore").rename(columns=DELTA_HEADERS)  # baseline: in the title
    shown = shown.drop(columns=[c for c in shown.columns if shown[c].dtype == float and shown[c].isna().all()])
    if "variant" in shown and not shown["variant"].astype(bool).any():
        shown = shown.drop(columns="variant")
    if "note" in shown and not shown["note"].astype(bool).any():
        shown = shown.drop(columns="note")
    return _fmt_table(shown, fmt)


def _failed_lines(c: Collated) -> list[str]:
    lines = []
    for _, r in c.failed.iterrows():
        where = r["run_dir"] or ""
        lines.append(f"{r['status']}: {r['model']} {setting_label(r)}: {r['error_type'] or 'error'}: {r['error']}"
                     f"  ({where})")
    return lines


def render_report(c: Collated, fmt: str = "text") -> str:
    """Both tables, warnings, failed runs and skipped files in one document (text, md or latex)."""
    if fmt == "csv":
        return render(c.table, "csv")
    base = c.baseline or "baseline"
    blocks: list[tuple[str, str]] = [("Runs", render(c.table, fmt) if not c.table.empty else "(no runs found)")]
    if not c.delta.empty:
        blocks.append((f"Δ% vs {base} (same imgsz, batch, device, precision, backend; replicates aggregated; p50 Δ% "
                       f"with its 95% interval; verdict: beyond ±{c.threshold:g}% and the interval excludes 0)",
                       render_delta(c.delta, fmt)))
    if c.backend_delta is not None and not c.backend_delta.empty:
        from medbench.analysis.backend_delta import HEADERS

        blocks.append((f"Δ% vs backend {c.backend_delta.attrs.get('base')} (same model, imgsz, batch, device, "
                       "precision; medians over runs)", render_delta(c.backend_delta.rename(columns=HEADERS), fmt)))
    notes = [("Verdicts", [f"note: {line}" for line in c.caveats or []]),
             ("Warnings", [f"warning: {w}" for w in c.warnings]), ("Failed runs", _failed_lines(c)),
             ("Skipped files", [f"skipped {p}: {why}" for p, why in c.found.skipped])]
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
    written = [write_text_atomic(output, render_report(c, fmt))]
    if fmt == "csv":
        written.append(write_text_atomic(output.with_name(f"{output.stem}_delta.csv"), render_delta(c.delta, "csv")))
        if c.backend_delta is not None:
            written.append(write_text_atomic(output.with_name(f"{output.stem}_backend_delta.csv"),
                                             c.backend_delta.to_csv(index=False)))
    return written


def run_collation(root: Path | str, outputs: list[tuple[Path, str]], baseline: str | None = None,
                  plot_dir: Path | None = None, plot_x: str = "params_M",
                  threshold: float = DEFAULT_THRESHOLD,
                  baseline_backend: str | None = None) -> tuple[Collated, list[Path]]:
    """The one code path of the command and the end-of-sweep callback: collate, write, optionally plot."""
    c = build(root, baseline, threshold)
    if baseline_backend:
        from medbench.analysis.backend_delta import backend_delta_table

        c.backend_delta = backend_delta_table(c.table, baseline_backend)
    written = [p for output, fmt in outputs for p in write_output(c, output, fmt)]
    if plot_dir is not None:
        from medbench.cli.plots import write_plots

        written += write_plots(c.table, plot_dir, x=plot_x)
    return c, written


def collate_sweep(sweep_dir: Path, baseline: str | None = None, plot: bool = False) -> Collated | None:
    """What the end of a sweep does (also after a sweep that stopped): write comparison.csv / .md into the sweep dir
    and print the tables. Returns None when collation failed (said in one line: the sweep itself ran)."""
    outputs = [(sweep_dir / "comparison.csv", "csv"), (sweep_dir / "comparison.md", "md")]
    try:
        c, written = run_collation(sweep_dir, outputs, baseline, sweep_dir if plot else None)
    except (MedbenchError, OSError) as exc:  # --plot without matplotlib, a full disk: the points themselves ran
        log.error("medbench: collation failed: %s", first_line(exc))
        return None
    print(render_report(c, "text"))
    log.info("comparison tables → %s", ", ".join(display_path(p) for p in written))
    return c


class CollateCallback(Callback):
    """At the end of a multirun, write comparison.csv and comparison.md into the sweep dir (same code as the command).

    Options (``hydra.callbacks.collate.baseline=ghost``, ``hydra.callbacks.collate.plot=true``) are passed by Hydra.
    The sweep's exit status is computed by ``medbench.cli.app`` from the records written, not passed from here.
    """

    def __init__(self, baseline: str | None = None, plot: bool = False) -> None:
        self.baseline = baseline
        self.plot = plot

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        collate_sweep(Path(config.hydra.sweep.dir), self.baseline, self.plot)


def _default_outputs(directory: Path, output: Path | None, fmt: str | None) -> list[tuple[Path, str]]:
    if output is not None:
        return [(output, fmt or {".md": "md", ".tex": "latex"}.get(output.suffix, "csv"))]
    if not directory.is_dir():
        return []
    if fmt is not None:
        return [(directory / f"comparison{FORMATS[fmt]}", fmt)]
    return [(directory / "comparison.csv", "csv"), (directory / "comparison.md", "md")]


def main(argv: list[str] | None = None) -> int:
    """``medbench collate`` / ``python -m medbench.collate``."""
    parser = argparse.ArgumentParser(
        prog="medbench collate", description=DESCRIPTION,
        epilog="Without --output, a directory gets comparison.csv (+ comparison_delta.csv) and comparison.md, "
               "exactly what the end-of-sweep callback writes. Exit status: 0 when runs were collated "
               "(failed runs and skipped files are reported), 1 when none were found, 2 for a missing path.")
    parser.add_argument("directory", type=Path, help="sweep directory (or a single result.json)")
    parser.add_argument("--output", "-o", type=Path, help="write the tables here (format from --format or the suffix)")
    parser.add_argument("--format", choices=list(FORMATS), default=None,
                        help="output format (default: from the --output suffix, else csv + md)")
    parser.add_argument("--baseline", default=None,
                        help="model the Δ%% table compares against (default: 'baseline' if present, else the first model)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="PCT",
                        help="a variant is marked slower/faster only when its p50 Δ%% is beyond ±PCT and its 95%% "
                             f"interval excludes 0 (default {DEFAULT_THRESHOLD:g})")
    parser.add_argument("--baseline-backend", default=None, metavar="BACKEND",
                        help="also show each backend's Δ%% against this backend (e.g. pytorch) for the same model "
                             "and setting, and write <output>_backend_delta.csv")
    parser.add_argument("--plot", action="store_true",
                        help="also write latency_vs_params.png and latency_by_setting.png (needs matplotlib)")
    parser.add_argument("--plot-x", choices=["params", "gflops"], default="params",
                        help="x axis of the scatter plot (default: params)")
    args = parser.parse_args(argv)
    if not args.directory.exists():
        return usage_error("medbench collate", f"no such file or directory: {args.directory}")
    outputs = _default_outputs(args.directory, args.output, args.format)
    plot_dir = None
    if args.plot:
        plot_dir = args.output.parent if args.output else (args.directory if args.directory.is_dir()
                                                           else args.directory.parent)
    try:
        c, written = run_collation(args.directory, outputs, args.baseline, plot_dir,
                                   "gflops" if args.plot_x == "gflops" else "params_M", args.threshold,
                                   args.baseline_backend)
    except MedbenchError as exc:
        return usage_error("medbench collate", exc)
    print(render_report(c, "text"))
    for path in written:
        print(f"wrote {path}")
    return 0 if not c.table.empty else 1


if __name__ == "__main__":
    sys.exit(main())
