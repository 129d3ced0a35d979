"""``medbench compare`` (also ``python -m medbench.compare``): the regression gate's command line and report text.

The verdicts are computed by ``medbench.analysis.compare``; this module parses arguments and thresholds, prints the
report and turns it into the exit status.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import yaml

from medbench.analysis import compare as _compare
from medbench.analysis.compare import (DEFAULT_THRESHOLD, KNOWN_METRICS, RULE, ComparisonReport, MetricChange,
                                       compare_sources, threshold_for)
from medbench.errors import MedbenchError, ResultError
from medbench.results.store import write_json_atomic
from medbench.text import first_line, number, usage_error

compare_doc = _compare.__doc__ or ""
DESCRIPTION = "Baseline vs current: verdicts per metric, and a regression gate."
EXIT_UNRELIABLE = 3  # --fail-on-unreliable: no regression, but the runs cannot tell (more rounds may)


def _plain(doc: str) -> str:
    """A docstring for --help: no reST markup (``code``, **bold**), module paths named as the docs name them."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", doc.replace("``", ""))
    return text.replace(" (medbench.cli.compare)", "").replace("medbench.analysis.verdicts; ", "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _counted(changes: list[MetricChange]) -> str:
    """``3 metrics in 1 setting``: what a section counts, said."""
    return f"{_plural(len(changes), 'metric')} in {_plural(len({c.setting for c in changes}), 'setting')}"


def one_line_error(text: object) -> str:
    """An error as one clean line: the exception's type and the first line of its message, never a traceback
    (also for error texts that carry one, or literal ``\\n`` from an older file)."""
    lines = [ln.strip() for ln in str(text).replace("\\n", "\n").splitlines() if ln.strip()]
    if lines and lines[0].startswith("Traceback"):
        lines = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln)][-1:] or lines[-1:]
    return lines[0] if lines else ""


def _summary(report: ComparisonReport) -> str:
    """The last line: verdicts counted in metrics, matching counted in settings (each said)."""
    n = report.counts()
    metrics = (f"{_plural(n['regressions'], 'regression')}, {_plural(n['improvements'], 'improvement')}, "
               f"{n['stable']} stable, {n['within_noise']} within noise, {n['unreliable']} unreliable"
               + (f", {n['no_verdict']} without verdict" if n["no_verdict"] else ""))
    settings = (f"{n['matched_settings']} matched, {n['models_differ']} models differ, {n['unmatched']} unmatched"
                + (f", {n['failed']} failed" if n["failed"] else ""))
    return f"metrics: {metrics}; settings: {settings}"


def render(report: ComparisonReport) -> str:
    """A terminal report: sections of verdicts with baseline / current / Δ% (each heading says how many metrics in
    how many settings), failed settings as one clean line each, then the summary line."""
    thresholds = ", ".join(f"{k} {v:g}%" for k, v in sorted(report.thresholds.items()))
    lines = [f"baseline: {report.baseline_source}", f"current:  {report.current_source}",
             f"threshold {report.default_threshold:g}%" + (f" ({thresholds})" if thresholds else "")
             + f"; verdict: {RULE}"]
    lines += [f"WARNING: {w}" for w in report.warnings]
    for pair in report.models_differ:
        lines.append(f"MODELS DIFFER: {pair['setting']}: {pair['why']} — latency not judged, "
                     f"this is not the same model")
    for title, changes in (("Regressions", report.regressions), ("Improvements", report.improvements),
                           ("Within noise (~): beyond the threshold, but the 95% interval includes 0",
                            report.within_noise),
                           ("UNRELIABLE: loaded, throttled or very noisy runs, or too noisy to judge; no verdict",
                            report.unreliable),
                           ("No verdict (interval only)", report.no_verdict)):
        if changes or title in ("Regressions", "Improvements"):
            lines += ["", f"{title}: {_counted(changes)}"]
            lines += [_change_line(c) for c in changes]
    lines += ["", f"Stable (within the threshold): {_counted(report.stable)}"] + _stable_lines(report.stable)
    if report.failed:
        lines += ["", f"Failed: {_plural(len(report.failed), 'setting')} (tracebacks in the --output JSON)"]
        lines += [f"   {pair['setting']}: {'; '.join(one_line_error(w) for w in str(pair['why']).split('; '))}"
                  for pair in report.failed]
    if report.missing_in_current:
        lines += ["", f"Only in baseline: {_plural(len(report.missing_in_current), 'setting')}"]
        lines += [f"  {s}" for s in report.missing_in_current]
    if report.new_in_current:
        lines += ["", f"Only in current: {_plural(len(report.new_in_current), 'setting')}"]
        lines += [f"  {s}" for s in report.new_in_current]
    lines += ["", _summary(report)]
    return "\n".join(lines)


def _stable_lines(changes: list[MetricChange]) -> list[str]:
    """One line per setting: how many metrics stayed within their thresholds and the largest change."""
    by_setting: dict[str, list[MetricChange]] = {}
    for c in changes:
        by_setting.setdefault(c.setting, []).append(c)
    lines = []
    for setting, group in by_setting.items():
        worst = max(group, key=lambda c: abs(c.delta_pct or 0.0))
        lines.append(f"   {setting:<48} {_plural(len(group), 'metric')} within threshold; largest {worst.metric} "
                     f"{(worst.delta_pct or 0.0):+.1f}%")
    return lines


def _change_line(c: MetricChange) -> str:
    mark = {"regression": "+", "improvement": "-", "~": "~", "stable": " ", "unreliable": "!",
            "no_verdict": "?"}.get(c.verdict, "!")
    delta = f"{c.delta_pct:+.1f}%" if c.delta_pct is not None else ""
    ci = f"[{c.ci_pct[0]:+.1f}, {c.ci_pct[1]:+.1f}]" if c.ci_pct else ""
    if ci and c.confidence is not None and round(c.confidence, 3) != 0.95:
        ci += f" {c.confidence:.0%}"
    runs = f"runs {c.runs[0]}/{c.runs[1]}" if c.runs else ""
    note = f"  ({one_line_error(c.note)})" if c.note else ""
    return (f" {mark} {c.setting:<48} {c.metric:<22} {number(c.baseline):>10} -> {number(c.current):<10} "
            f"{delta:>8} {ci:<18} {runs}{note}")


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a threshold must be a percentage >= 0, not {text!r}")
    return value


def _check_metric(name: str) -> str:
    if name == "default" or any(threshold_for(m, {name: 0.0}, -1.0) == 0.0 for m in KNOWN_METRICS):
        return name
    raise ResultError(f"threshold for unknown metric {name!r} (known: {', '.join(KNOWN_METRICS)})")


def parse_thresholds(items: list[str], files: list[Path]) -> tuple[float, dict[str, float]]:
    """``--threshold 5`` / ``--threshold latency.p95_ms=3`` (repeatable) and ``--thresholds file.yaml``."""
    default, per_metric = DEFAULT_THRESHOLD, {}
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ResultError(f"cannot read thresholds file {path}: {first_line(exc)}") from None
        if not isinstance(data, dict):
            raise ResultError(f"thresholds file {path} must map metric -> percent")
        for k, v in data.items():
            try:
                value = _percent(str(v))
            except argparse.ArgumentTypeError as exc:
                raise ResultError(f"{path}: {k}: {exc}") from None
            if _check_metric(str(k)) == "default":
                default = value
            else:
                per_metric[str(k)] = value
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            pct = _percent(value)
        except argparse.ArgumentTypeError as exc:
            raise ResultError(f"--threshold {item}: {exc}") from None
        if not sep or _check_metric(name) == "default":
            default = pct
        else:
            per_metric[name] = pct
    return default, per_metric


def main(argv: list[str] | None = None) -> int:
    """``python -m medbench.compare``."""
    parser = argparse.ArgumentParser(
        prog="medbench compare", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_plain("\n\n".join(compare_doc.split("\n\n")[1:])) + "\n\nMetrics: " + ", ".join(KNOWN_METRICS)
        + ".\nExit status: 0 ok; 1 regressions with --fail-on-regression (or mismatches with --fail-on-mismatch); "
          f"{EXIT_UNRELIABLE} unreliable verdicts with --fail-on-unreliable and nothing else failing (too few clean "
          "runs, or too noisy to judge: add rounds, or rerun); 2 missing/unreadable input or bad arguments.")
    parser.add_argument("--baseline", required=True, help="result.json, sweep directory or suite file")
    parser.add_argument("--current", required=True, help="result.json, sweep directory or suite file")
    parser.add_argument("--threshold", action="append", default=[], metavar="PCT|METRIC=PCT",
                        help=f"default threshold in percent (default {DEFAULT_THRESHOLD:g}), or a per-metric one "
                             "such as latency.p95_ms=3 or throughput=10; a prefix (latency=3) covers a group. "
                             "Repeatable")
    parser.add_argument("--thresholds", action="append", default=[], type=Path, metavar="YAML",
                        help="YAML file mapping metric -> percent (key 'default' sets the default)")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any regression is found")
    parser.add_argument("--fail-on-unreliable", action="store_true",
                        help=f"exit {EXIT_UNRELIABLE} when a verdict is unreliable (a loaded, throttled or very noisy "
                             "side, or too noisy to judge) and nothing else fails: for CI that must not pass on a bad "
                             "machine; a workflow can add rounds on this status and ask again")
    parser.add_argument("--fail-on-mismatch", action="store_true",
                        help="also exit 1 when models differ, a setting is unmatched, or a run failed")
    parser.add_argument("--output", "-o", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        default, per_metric = parse_thresholds(args.threshold, args.thresholds)
        report = compare_sources(args.baseline, args.current, per_metric, default)
    except MedbenchError as exc:
        return usage_error("medbench compare", exc)
    print(render(report))
    if args.output is not None:
        write_json_atomic(args.output, report.to_dict())
        print(f"report → {args.output}")
    if args.fail_on_regression and report.has_regressions:
        return 1
    if args.fail_on_mismatch and (report.models_differ or report.unmatched or report.failed or not report.matched):
        return 1
    if args.fail_on_unreliable and report.has_unreliable:
        return EXIT_UNRELIABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
