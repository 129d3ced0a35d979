"""``medbench targets`` (also ``python -m medbench.targets``): check performance targets, print the table.

The checks are ``medbench.analysis.targets``; this module parses arguments, renders and sets the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medbench.analysis.targets import MISSED, TargetReport, check_targets, load_targets
from medbench.errors import MedbenchError
from medbench.results.store import write_json_atomic
from medbench.text import number, table, usage_error


def render_report(report: TargetReport, markdown: bool = False) -> str:
    header = ("component", "device", "target", "measured", "status", "from")
    rows = []
    for c in report.checks:
        status = c.status.upper() if c.status == MISSED else c.status
        source = c.source or c.note or ""
        if c.source and c.note:
            source = f"{c.source} ({c.note})"
        rows.append((c.target.component, c.target.device, c.target.describe(), number(c.measured), status, source))
    summary = f"targets: {len(report.met)} met, {len(report.missed)} missed, {len(report.not_measured)} not measured"
    return "\n".join([table(header, rows, "md" if markdown else "text"), "", summary])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medbench targets",
                                description="Check performance targets against a suite file, a sweep directory "
                                            "or a result.json.")
    p.add_argument("results", help="suite file (medbench suite), sweep directory, or result.json")
    p.add_argument("--targets", default="default", help="targets YAML (default: medbench/default_targets.yaml)")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when any target is missed")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--output", help="also write the report as JSON here")
    args = p.parse_args(argv)
    try:
        report = check_targets(load_targets(args.targets), args.results)
    except MedbenchError as exc:
        return usage_error("medbench targets", exc)
    print(render_report(report, markdown=args.markdown))
    if args.output:
        write_json_atomic(args.output, report.to_dict())
    return 1 if args.fail_on_miss and report.missed else 0


if __name__ == "__main__":
    sys.exit(main())
