"""``medbench report DIR``: the sweep's self-contained HTML report (``report.html``), also written at the end of
every sweep. Same collation as ``medbench collate`` (tables, intervals, verdicts), plus the Pareto front and the
latency distributions; images are inline, so the page opens offline and can be mailed or attached as one file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medbench.analysis.collate import build
from medbench.analysis.deltas import DEFAULT_THRESHOLD
from medbench.errors import MedbenchError
from medbench.text import usage_error

DESCRIPTION = ("Writes one self-contained HTML page for a sweep directory: settings and environment, the Δ% "
               "comparison with intervals and verdict marks, accuracy vs latency / GFLOPs with the Pareto front, "
               "latency distributions of the raw samples, every run, warnings with the runs they name, and the "
               "points that failed, crashed or never ran. Opens offline (no CDN; images inline).")


def main(argv: list[str] | None = None) -> int:
    from medbench.report.build import REPORT_NAME, write_report

    parser = argparse.ArgumentParser(
        prog="medbench report", description=DESCRIPTION,
        epilog=f"Without --output the page is DIR/{REPORT_NAME}; a sweep writes that file itself when it ends, so "
               "an existing one is kept unless --force is given (or write elsewhere with --output). "
               "Exit status: 0 written, 1 no results found (nothing written), 2 bad arguments or an existing file.")
    parser.add_argument("directory", type=Path, help="sweep directory (or any directory holding result.json files)")
    parser.add_argument("--output", "-o", type=Path, help=f"where to write the page (default: DIR/{REPORT_NAME})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing report")
    parser.add_argument("--baseline", default=None,
                        help="model the comparison is against (default: 'baseline' if present, else the first model)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="PCT",
                        help=f"verdict threshold in percent, as in collate (default {DEFAULT_THRESHOLD:g})")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        return usage_error("medbench report", f"not a directory: {args.directory}")
    output = args.output or args.directory / REPORT_NAME
    if output.exists() and not args.force:
        return usage_error("medbench report", f"{output} exists (the sweep's own report?); use --force to replace "
                                              "it or --output to write elsewhere")
    try:
        c = build(args.directory, args.baseline, args.threshold)
        if c.table.empty:
            print(f"medbench report: no results below {args.directory}; nothing written", file=sys.stderr)
            return 1
        path = write_report(c, output, args.directory)
    except (MedbenchError, OSError) as exc:
        return usage_error("medbench report", exc)
    ok = int((c.table["status"] == "ok").sum())
    print(f"wrote {path} ({len(c.table)} runs, {ok} ok)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
