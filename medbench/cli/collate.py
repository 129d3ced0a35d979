"""``medbench collate DIR`` (also ``python -m medbench.collate``) and the end-of-sweep callback: tables → files.

Reads every ``result.json`` below ``DIR`` (skipped files are named, points that left no record are listed as
``crashed`` / ``not run``) and prints two tables: one row per run, and Δ% against the baseline model at the same
imgsz / batch / device / precision (``medbench.cli.rendering``). Prints or writes them as CSV (plus
``<name>_delta.csv``), Markdown or LaTeX (both led by the ablation table), atomically; never replaces the sweep's
own files with tables of other options.
The same code (``collate_sweep``) runs at the end of every multirun as a Hydra callback (``CollateCallback``),
writing ``comparison.csv`` and ``comparison.md`` into the sweep directory. The tables are computed by
``medbench.analysis.collate``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from medbench.analysis.collate import Collated, build
from medbench.analysis.deltas import DEFAULT_THRESHOLD
from medbench.cli.rendering import render, render_delta, render_report
from medbench.errors import MedbenchError
from medbench.results.store import write_text_atomic
from medbench.text import display_path, first_line, usage_error

log = logging.getLogger("medbench")
__all__ = ["CollateCallback", "collate_sweep", "main", "render", "render_delta", "render_report", "run_collation",
           "write_output"]
FORMATS = {"csv": ".csv", "md": ".md", "latex": ".tex"}
DESCRIPTION = ("Reads every result.json below a sweep directory and prints two tables: one row per run, and "
               "each model against the baseline model at the same setting, replicates aggregated: p50 Δ% with "
               "its 95% interval and a verdict (slower / faster / ~ / same / unreliable). Loaded, throttled or "
               "very noisy runs are flagged and never used for a verdict. Writes CSV, Markdown or LaTeX.")


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
        from medbench.analysis import backend_delta

        c.backend_delta = backend_delta.backend_delta_table(c.table, backend_delta.runs_by_dir(c.found.records),
                                                            baseline_backend, threshold)
        c.caveats = [*(c.caveats or []), *backend_delta.caveats(c.backend_delta)]
    written = [p for output, fmt in outputs for p in write_output(c, output, fmt)]
    if plot_dir is not None:
        from medbench.cli.plots import write_plots

        written += write_plots(c.table, plot_dir, x=plot_x)
    return c, written


def collate_sweep(sweep_dir: Path, baseline: str | None = None, plot: bool = False,
                  baseline_backend: str | None = None) -> Collated | None:
    """What the end of a sweep does (also after a sweep that stopped): write comparison.csv / .md into the sweep dir
    and print the tables. Returns None when collation failed (said in one line: the sweep itself ran)."""
    outputs = [(sweep_dir / "comparison.csv", "csv"), (sweep_dir / "comparison.md", "md")]
    try:
        c, written = run_collation(sweep_dir, outputs, baseline, sweep_dir if plot else None,
                                   baseline_backend=baseline_backend)
    except (MedbenchError, OSError) as exc:  # --plot without matplotlib, a full disk: the points themselves ran
        log.error("medbench: collation failed: %s", first_line(exc))
        return None
    print(render_report(c, "text"))
    written += _html_report(c, sweep_dir)
    log.info("comparison tables → %s", ", ".join(display_path(p) for p in written))
    return c


def _html_report(c: Collated, sweep_dir: Path) -> list[Path]:
    """The sweep's report.html (medbench.report); a failure to draw it is one line, never the sweep's failure."""
    try:
        from medbench.report.build import REPORT_NAME, write_report

        return [write_report(c, sweep_dir / REPORT_NAME, sweep_dir)]
    except Exception as exc:  # matplotlib missing or failing, a full disk: the tables are written already
        log.error("medbench: report.html not written: %s", first_line(exc))
        return []


class CollateCallback(Callback):
    """At the end of a multirun, write comparison.csv and comparison.md into the sweep dir (same code as the command).

    Options (``hydra.callbacks.collate.baseline=ghost``, ``hydra.callbacks.collate.plot=true``,
    ``hydra.callbacks.collate.baseline_backend=pytorch``) are passed by Hydra.
    The sweep's exit status is computed by ``medbench.cli.app`` from the records written, not passed from here.
    """

    def __init__(self, baseline: str | None = None, plot: bool = False, baseline_backend: str | None = None) -> None:
        self.baseline = baseline
        self.plot = plot
        self.baseline_backend = baseline_backend

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        collate_sweep(Path(config.hydra.sweep.dir), self.baseline, self.plot, self.baseline_backend)


OWN_FILES = ("comparison.csv", "comparison_delta.csv", "comparison_backend_delta.csv", "comparison.md")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _stem(args: argparse.Namespace) -> str:
    """``comparison`` for the sweep's own options; another name when the options change the tables."""
    parts = [f"-vs-{_safe(args.baseline)}" if args.baseline else "",
             f"-threshold-{args.threshold:g}" if args.threshold != DEFAULT_THRESHOLD else "",
             f"-backend-vs-{_safe(args.baseline_backend)}" if args.baseline_backend else ""]
    return "comparison" + "".join(parts)


def _written_by(output: Path, fmt: str) -> list[Path]:
    if fmt != "csv":
        return [output]
    return [output, output.with_name(f"{output.stem}_delta.csv"), output.with_name(f"{output.stem}_backend_delta.csv")]


def _outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """Where the tables go (empty: to stdout). Raises when ``--output`` would replace the sweep's own files."""
    directory = args.directory
    if args.output is not None:
        fmt = args.format or {".md": "md", ".tex": "latex"}.get(args.output.suffix, "csv")
        sweep = directory if directory.is_dir() else directory.parent
        own = {(sweep / name).resolve() for name in OWN_FILES}
        clash = [p for p in _written_by(args.output, fmt) if p.resolve() in own and p.exists()]
        if clash and not args.force:
            raise MedbenchError(f"{clash[0]} is the sweep's own table (written at its end); give another --output, "
                                "or --force to replace it")
        return [(args.output, fmt)]
    if args.format is not None or not directory.is_dir():
        return []
    stem = _stem(args)
    return [(directory / f"{stem}.csv", "csv"), (directory / f"{stem}.md", "md")]


def main(argv: list[str] | None = None) -> int:
    """``medbench collate`` / ``python -m medbench.collate``."""
    parser = argparse.ArgumentParser(
        prog="medbench collate", description=DESCRIPTION,
        epilog="Where the tables go: --format md|latex|csv prints that format to stdout (nothing written); "
               "--output PATH writes there (format from --format or the suffix: .md, .tex, else csv; csv also "
               "writes <stem>_delta.csv). Without either, the text tables are printed and the directory gets "
               "comparison.csv (+ comparison_delta.csv) and comparison.md, exactly what the end of the sweep wrote; "
               "with --baseline, --threshold or --baseline-backend they are written beside those under a name "
               "that says so (comparison-vs-ghost.csv, ...): the sweep's own files are never replaced by other "
               "options, and --output onto them is refused without --force. Exit status: 0 when runs were "
               "collated (failed runs and skipped files are reported), 1 when none were found, 2 for a missing "
               "path or a refused output.")
    parser.add_argument("directory", type=Path, help="sweep directory (or a single result.json)")
    parser.add_argument("--output", "-o", type=Path, help="write the tables here (format from --format or the suffix)")
    parser.add_argument("--format", choices=list(FORMATS), default=None,
                        help="md, latex or csv: printed to stdout, or written to --output (md and latex start with "
                             "the ablation table: one row per model and setting, p50 with its interval, Δ%% and "
                             "verdict)")
    parser.add_argument("--force", action="store_true",
                        help="let --output replace the sweep's own comparison.csv / comparison.md")
    parser.add_argument("--baseline", default=None,
                        help="model the Δ%% table compares against (default: 'baseline' if present, else the first "
                             "model); the tables go beside the sweep's own, named comparison-vs-MODEL.*")
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
    plot_dir = None
    if args.plot:
        plot_dir = args.output.parent if args.output else (args.directory if args.directory.is_dir()
                                                           else args.directory.parent)
    try:
        outputs = _outputs(args)
        c, written = run_collation(args.directory, outputs, args.baseline, plot_dir,
                                   "gflops" if args.plot_x == "gflops" else "params_M", args.threshold,
                                   args.baseline_backend)
    except MedbenchError as exc:
        return usage_error("medbench collate", exc)
    to_stdout = args.format is not None and args.output is None
    print(render_report(c, args.format if to_stdout else "text"), end="\n" if not to_stdout else "")
    for path in written:
        print(f"wrote {path}", file=sys.stderr if to_stdout else sys.stdout)
    return 0 if not c.table.empty else 1


if __name__ == "__main__":
    sys.exit(main())
