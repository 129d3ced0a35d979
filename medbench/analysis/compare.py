"""Baseline vs current → verdicts per metric: the regression gate's logic (pure: no files written, no printing).

``medbench compare --baseline A --current B`` (``medbench.cli.compare``) where A and B are each a ``result.json``, a
sweep directory (every ``result.json`` below it) or a suite file written by the Python API. Runs are matched by their
setting — (model, imgsz, batch, device, precision, scope) for results, (name, device) for suite entries; the
replicates of a setting (``-m repeat='range(5)'``) form one group per side. For every metric the better direction is
known (latency and memory lower, FPS / throughput higher). Each latency metric gets Δ% with a 95% interval
(``medbench.analysis.verdicts``; docs/statistics.md):

* regression / improvement — Δ% is beyond the metric's threshold (default 5%) **and** its 95% interval excludes 0;
  with >= 3 runs per side the p50 interval comes from the run medians (run-to-run variance included), otherwise
  from the samples within the runs (block bootstrap; "run-to-run variance not measured");
* ``~`` within noise — beyond the threshold but the interval includes 0, or within it but the interval reaches
  beyond it;
* stable — the whole interval lies within the threshold (metrics without samples: the change is within it);
* unreliable — a side has too few clean runs: a run flagged loaded / throttled / very noisy is never evidence;
  and a ``~`` of the median or mean whose interval includes 0 and a slowdown of twice the threshold (too noisy
  to judge: passing it could let a real slowdown through);
* no_verdict — no verdict: fewer than 20 samples per side give no interval (and so not even "stable"), and
  p95/p99 need 10 samples past the percentile on each side.

Metrics without samples (memory, pipelined FPS) are judged by the threshold alone. Params and (unfused) GFLOPs must be
equal: otherwise the pair is reported as "models differ" and gets no latency verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medbench.analysis.comparison import RULE, ComparisonReport, MetricChange  # noqa: F401 (RULE re-exported)
from medbench.analysis.entries import Entry, load_entries
from medbench.analysis.judging import judge_metric
from medbench.analysis.replicates import Run, epoch_seconds
from medbench.errors import ResultError
from medbench.results.metrics import COMPARED, ENV_FIELDS
from medbench.text import number

DEFAULT_THRESHOLD = 5.0  # percent
KNOWN_METRICS = [m.name for m in COMPARED]


# --- judging --------------------------------------------------------------------------------------------------------

def threshold_for(metric: str, thresholds: dict[str, float], default: float) -> float:
    """The most specific threshold for ``metric``: exact name, else the longest prefix (``latency`` → all latency)."""
    best, best_len = default, -1
    for key, value in thresholds.items():
        if metric == key or metric.startswith(key + ".") or metric.startswith(key + "_"):
            if len(key) > best_len:
                best, best_len = value, len(key)
    return best


def _groups(entries: Iterable[Entry]) -> dict[tuple[Any, ...], list[Entry]]:
    """Entries by setting: the replicates of a setting (runs differing only in ``repeat``) form one group."""
    by_key: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        by_key.setdefault(e.key, []).append(e)
    for group in by_key.values():
        group.sort(key=lambda e: e.timestamp or "")
    return by_key


def _values(group: list[Entry], metric: str) -> list[float | None]:
    """A metric's values over the clean runs of a group (over all of them when none is clean)."""
    clean = [e for e in group if not e.flags] or group
    return [e.metrics.get(metric) for e in clean]


def _runs(entries: list[Entry]) -> list[Run]:
    return [Run(e.metrics["latency.p50_ms"], tuple(e.samples_ms) if e.samples_ms else None, e.flags, e.source,
                {"mean_ms": e.metrics["latency.mean_ms"]} if e.metrics.get("latency.mean_ms") else {},
                e.repeat, epoch_seconds(e.timestamp))
            for e in entries if e.metrics.get("latency.p50_ms")]


def _identity_diff(b: Entry, c: Entry) -> str | None:
    diffs = []
    for k, bv in b.identity.items():
        cv = c.identity.get(k)
        if bv is not None and cv is not None and bv != cv:
            diffs.append(f"{k} {number(bv)} -> {number(cv)}")
    return "; ".join(diffs) or None


def _env_warnings(pairs: list[tuple[Entry, Entry]]) -> list[str]:
    warnings = []
    for f in ENV_FIELDS:
        seen = sorted({(str(b.env.get(f.column)), str(c.env.get(f.column))) for b, c in pairs
                       if b.env.get(f.column) != c.env.get(f.column)})
        if seen:
            what = ", ".join(f"{bv!r} vs {cv!r}" for bv, cv in seen[:3])
            warnings.append(f"baseline and current ran in different environments: {f.path} {what}; "
                            "a change may be the machine, not the code" if f.path.startswith(("env.", "backend.")) else
                            f"baseline and current used different inputs: {f.label} ({f.path}) {what}")
    return warnings


def _failed_runs(b: list[Entry], c: list[Entry], label: str,
                 report: ComparisonReport) -> tuple[list[Entry], list[Entry]]:
    """The ok runs of each side; failed runs are reported (no current run ok where the baseline ran: regression)."""
    b_ok, c_ok = [e for e in b if e.status == "ok"], [e for e in c if e.status == "ok"]
    bad = [e for e in b + c if e.status != "ok"]
    if bad and (not b_ok or not c_ok):
        why = "; ".join(dict.fromkeys(f"{'baseline' if e in b else 'current'} {e.status}" + (f" ({e.error})" if e.error
                                      else "") for e in bad))
        report.failed.append({"setting": label, "why": why, "errors": [  # the full story, for the JSON report
            {"side": "baseline" if e in b else "current", "status": e.status, "error": e.error,
             "traceback": e.traceback, "source": e.source} for e in bad]})
        if b_ok and not c_ok:  # it ran before and fails now: that is a regression
            report.changes.append(MetricChange(label, "status", "ok", c[-1].status, None, None, "regression",
                                               note=c[-1].error))
    elif bad:
        report.warnings.append(f"{label}: {len(bad)} run(s) did not finish ok and are left out "
                               f"({', '.join(sorted({e.source for e in bad}))})")
    return b_ok, c_ok


def _compare_pair(b_all: list[Entry], c_all: list[Entry], report: ComparisonReport, thresholds: dict[str, float],
                  default: float) -> None:
    label = c_all[-1].label
    b, c = _failed_runs(b_all, c_all, label, report)
    if not b or not c:
        return
    differ = _identity_diff(b[-1], c[-1])
    if differ:
        info = {m: (b[-1].metrics.get(m), c[-1].metrics.get(m)) for m in ("latency.p50_ms", "throughput.fps_p50")
                if b[-1].metrics.get(m) is not None}
        report.models_differ.append({"setting": label, "why": differ,
                                     "info": {m: {"baseline": bv, "current": cv} for m, (bv, cv) in info.items()}})
        return
    for side, group in (("baseline", b), ("current", c)):
        for e in group:
            if e.flags:
                report.flagged.append({"setting": label, "side": side, "source": e.source, "why": "; ".join(e.flags)})
    note = "; ".join(dict.fromkeys(n for e in b + c for n in e.notes)) or None
    b_runs, c_runs = _runs(b), _runs(c)
    for spec in COMPARED:
        threshold = threshold_for(spec.name, thresholds, default)
        v = judge_metric(spec, b_runs, c_runs, _values(b, spec.name), _values(c, spec.name), threshold)
        if v is None:
            continue
        report.changes.append(MetricChange(
            label, spec.name, v.baseline, v.current, v.delta_pct, threshold, v.verdict, None, v.method,
            "; ".join(x for x in (v.note, note if spec.sampled else None) if x) or None,
            list(v.ci_pct) if v.ci_pct else None, v.confidence, list(v.runs)))


def compare_entries(baseline: list[Entry], current: list[Entry], thresholds: dict[str, float] | None = None,
                    default_threshold: float = DEFAULT_THRESHOLD, baseline_source: str = "baseline",
                    current_source: str = "current", warnings: list[str] | None = None) -> ComparisonReport:
    """Match entries by setting and judge every metric; the report holds numbers, not formatted strings."""
    thresholds = dict(thresholds or {})
    report = ComparisonReport(baseline_source, current_source, default_threshold, thresholds,
                              warnings=list(warnings or []))
    base, cur = _groups(baseline), _groups(current)
    pairs = [(base[k], cur[k]) for k in base if k in cur]
    report.matched = len(pairs)
    report.missing_in_current = [base[k][-1].label for k in base if k not in cur]
    report.new_in_current = [cur[k][-1].label for k in cur if k not in base]
    report.warnings += _env_warnings([(b[-1], c[-1]) for b, c in pairs])
    if not pairs:
        report.warnings.append("no setting of the baseline matches one of the current: nothing was compared")
    for b, c in pairs:
        _compare_pair(b, c, report, thresholds, default_threshold)
    if report.flagged:
        report.warnings.append(f"{len(report.flagged)} run(s) were loaded, throttled or very noisy and are not used "
                               "for a verdict: " + "; ".join(f"{f['side']} {f['source']} ({f['why']})"
                                                              for f in report.flagged[:5])
                               + (" ..." if len(report.flagged) > 5 else ""))
    if report.models_differ:
        report.warnings.append(f"{len(report.models_differ)} matched setting(s) compare different models "
                               "(params/GFLOPs differ): see MODELS DIFFER")
    return report


def compare_sources(baseline: str | Path | dict[str, Any], current: str | Path | dict[str, Any],
                    thresholds: dict[str, float] | None = None,
                    default_threshold: float = DEFAULT_THRESHOLD) -> ComparisonReport:
    """Load both sides (files, directories, suite files or dicts) and compare them (``ResultError`` if unreadable)."""
    warnings: list[str] = []
    entries = []
    for side, source in (("baseline", baseline), ("current", current)):
        try:
            entries.append(load_entries(source, warnings))
        except ResultError as exc:
            raise ResultError(f"{side}: {exc}") from None
    name = (lambda s: "<in-memory>" if isinstance(s, dict) else str(s))
    return compare_entries(entries[0], entries[1], thresholds, default_threshold, name(baseline), name(current),
                           warnings)
