"""``medbench suite`` (also ``python -m medbench.suite``): run the built-in suites (``medbench.api.suite``) into one
suite file, print their table, optionally check targets."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medbench.api.suite import SUITES, Settings, build_suite
from medbench.text import display_path



def render_table(results: Sequence[Any]) -> str:
    """Plain-text table: name, device, throughput (fps_p50), p50/p95 latency, noise, status."""
    from medbench.text import number, table

    header = ("benchmark", "device", "throughput", "unit", "p50 ms", "p95 ms", "IQR/med", "status")
    rows = []
    for r in results:
        if r.ok:
            iqr = r.get("noise.iqr_over_median")
            rows.append((r.name, r.metadata.device or "", number(r.get("throughput.fps_p50")), r.metadata.unit or "",
                         number(r.get("latency.p50_ms")), number(r.get("latency.p95_ms")),
                         f"{iqr:.0%}" if iqr is not None else "", "ok" + (" (noisy)" if r.get("noise.warning") else "")))
        else:
            rows.append((r.name, r.metadata.device or "", "", "", "", "", "",
                         f"FAILED {r.get('error.type')}: {r.get('error.message')}"))
    return table(header, rows)


def _progress_line(result: Any) -> None:
    from medbench.text import number

    if result.ok:
        print(f"  {result.name:<24} {number(result.get('throughput.fps_p50')):>10} {result.metadata.unit or ''}",
              flush=True)
    else:
        print(f"  {result.name:<24} FAILED: {result.get('error.message')}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="medbench suite",
                                description="Run the built-in benchmark suites on generated workloads (nothing is "
                                            "downloaded), print their table and save them as one suite file, a valid "
                                            "input of medbench compare and medbench targets.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="suites: data (loading uncached vs cached, num_workers 0/2), preprocess "
                                       "(resize, normalize, flip, colour jitter ops/s), model (resnet50, vit_b_16 "
                                       "samples/s)")
    p.add_argument("--tests", nargs="+", choices=SUITES, default=list(SUITES), help="suites to run (default: all)")
    p.add_argument("--output", default="benchmarks/current.json",
                   help="suite file to write (default: benchmarks/current.json); an existing file is kept unless --force")
    p.add_argument("--force", action="store_true", help="replace --output when it exists")
    p.add_argument("--device", default="auto", help="device for the model suite (auto, cpu, 0, cuda:0)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run in well under 2 minutes")
    p.add_argument("--batch-size", type=int, help="model batch size (default 8, 1 with --quick)")
    p.add_argument("--iters", type=int, help="timed model iterations")
    p.add_argument("--name", default="builtin", help="suite name recorded in the file")
    p.add_argument("--targets", metavar="YAML", help="check performance targets afterwards ('default' = shipped)")
    p.add_argument("--fail-on-miss", action="store_true", help="with --targets: exit 1 when a target is missed")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args = parse_args(argv)
    from medbench.errors import MedbenchError
    from medbench.text import usage_error

    try:
        return _run(args)
    except MedbenchError as exc:
        return usage_error("medbench suite", exc)


def _run(args: argparse.Namespace) -> int:
    tests = list(dict.fromkeys(args.tests))
    settings = Settings.make(quick=args.quick, device=args.device, batch_size=args.batch_size, iters=args.iters)
    output = Path(args.output)
    if output.exists() and not args.force:  # checked before anything runs: never replaced silently
        from medbench.errors import OutputError

        raise OutputError(f"{output} exists: pass --force to replace it, or --output another file")
    with tempfile.TemporaryDirectory(prefix="medbench-suite-") as tmp:
        suite = build_suite(tests, settings, Path(tmp) / "images", name=args.name,
                            output_dir=output.parent if str(output.parent) else ".")
        print(f"medbench suite: {', '.join(tests)} on {settings.device}{' (quick)' if settings.quick else ''}: "
              f"{len(suite.benchmarks)} benchmarks", flush=True)
        results = suite.run_all(progress=_progress_line)
        path = suite.save_results(output.name)
    print()
    print(render_table(results))
    print(f"\nwrote {display_path(path)}")
    failed = [r.name for r in results if not r.ok]
    code = 1 if failed else 0
    if failed:
        print(f"{len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
    if args.targets:
        from medbench.analysis.targets import check_targets, load_targets
        from medbench.cli.targets import render_report

        report = check_targets(load_targets(args.targets), suite.to_dict())
        print()
        print(render_report(report))
        if args.fail_on_miss and report.missed:
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
