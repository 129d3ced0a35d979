"""Baseline vs current → verdicts per metric: the regression gate's logic (pure: no files written, no printing).

``medbench compare --baseline A --current B`` (``medbench.cli.compare``) where A and B are each a ``result.json``, a sweep
directory (every ``result.json`` below it) or a suite file written by the Python API. Runs are matched by their
setting — (model, imgsz, batch, device, precision) for results, (name, device) for suite entries. For every
metric the better direction is known (latency and memory lower, FPS / throughput higher):

* regression / improvement — the change is beyond the metric's threshold (default 5%) and, when both sides
  have raw ``samples_ms``, also statistically significant: a two-sided Mann–Whitney U test on the raw
  samples with p < 0.01 (``scipy.stats.mannwhitneyu``; FPS is 1000/latency, so it uses the same test);
* ``~`` within noise — beyond the threshold but not significant (e.g. 3 noisy samples each: the smallest
  possible p for 3 vs 3 is 0.1, so such a change can never be a regression);
* stable — within the threshold.

Metrics without samples (memory, pipelined FPS) are judged by the threshold alone. Params and GFLOPs must be
equal: otherwise the pair is reported as "models differ" and gets no latency verdict. The exit status is the
verdict: with ``--fail-on-regression`` it is 1 when any regression is found; 2 for a missing or unreadable file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medbench.analysis import stats
from medbench.analysis.entries import Entry, load_entries
from medbench.errors import ResultError
from medbench.results.metrics import COMPARED, ENV_FIELDS, Metric
from medbench.text import number

DEFAULT_THRESHOLD = 5.0  # percent
TEST_NAME = f"two-sided Mann-Whitney U on raw samples_ms, p < {stats.SIGNIFICANCE_ALPHA}"
KNOWN_METRICS = [m.name for m in COMPARED]


@dataclass
class MetricChange:
    """The verdict on one metric of one matched setting."""

    setting: str
    metric: str
    baseline: float | str | None
    current: float | str | None
    delta_pct: float | None
    threshold: float | None
    verdict: str  # regression | improvement | stable | ~
    p_value: float | None = None
    test: str | None = None
    note: str | None = None


@dataclass
class ComparisonReport:
    """All verdicts of one comparison; ``has_regressions`` is what the gate exits on."""

    baseline_source: str
    current_source: str
    default_threshold: float
    thresholds: dict[str, float]
    changes: list[MetricChange] = field(default_factory=list)
    models_differ: list[dict[str, Any]] = field(default_factory=list)
    missing_in_current: list[str] = field(default_factory=list)
    new_in_current: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    matched: int = 0

    def _by(self, verdict: str) -> list[MetricChange]:
        return [c for c in self.changes if c.verdict == verdict]

    @property
    def regressions(self) -> list[MetricChange]:
        return self._by("regression")

    @property
    def improvements(self) -> list[MetricChange]:
        return self._by("improvement")

    @property
    def stable(self) -> list[MetricChange]:
        return self._by("stable")

    @property
    def within_noise(self) -> list[MetricChange]:
        return self._by("~")

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressions)

    @property
    def unmatched(self) -> int:
        return len(self.missing_in_current) + len(self.new_in_current)

    def counts(self) -> dict[str, int]:
        return {"regressions": len(self.regressions), "improvements": len(self.improvements),
                "stable": len(self.stable), "within_noise": len(self.within_noise),
                "models_differ": len(self.models_differ), "unmatched": self.unmatched, "failed": len(self.failed),
                "matched_settings": self.matched}

    def summary(self) -> str:
        n = self.counts()

        def plural(k: int, word: str, many: str) -> str:
            return f"{k} {word if k == 1 else many}"

        text = (f"{plural(n['regressions'], 'regression', 'regressions')}, "
                f"{plural(n['improvements'], 'improvement', 'improvements')}, {n['stable']} stable, "
                f"{n['within_noise']} within noise, {n['models_differ']} models differ, {n['unmatched']} unmatched")
        return text + (f", {n['failed']} failed" if n["failed"] else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_source, "current": self.current_source,
            "default_threshold_pct": self.default_threshold, "thresholds_pct": dict(self.thresholds),
            "significance": TEST_NAME, "alpha": stats.SIGNIFICANCE_ALPHA,
            "has_regressions": self.has_regressions, "summary": self.counts(), "summary_line": self.summary(),
            "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "within_noise": [asdict(c) for c in self.within_noise],
            "stable": [asdict(c) for c in self.stable],
            "models_differ": self.models_differ, "failed": self.failed,
            "unmatched": {"missing_in_current": self.missing_in_current, "new_in_current": self.new_in_current},
            "warnings": self.warnings,
        }

    def render(self) -> str:
        """The terminal report (``medbench.cli.compare.render``)."""
        from medbench.cli.compare import render

        return render(self)


# --- judging --------------------------------------------------------------------------------------------------------

def threshold_for(metric: str, thresholds: dict[str, float], default: float) -> float:
    """The most specific threshold for ``metric``: exact name, else the longest prefix (``latency`` → all latency)."""
    best, best_len = default, -1
    for key, value in thresholds.items():
        if metric == key or metric.startswith(key + ".") or metric.startswith(key + "_"):
            if len(key) > best_len:
                best, best_len = value, len(key)
    return best


def judge_metric(spec: Metric, base: float, cur: float, threshold: float, base_samples: list[float] | None,
                 cur_samples: list[float] | None) -> tuple[str, float | None, float | None, str | None]:
    """(verdict, Δ%, p, note) for one metric: pure, so the gate's logic is testable without files."""
    delta = (cur - base) / base * 100.0 if base != 0 else (0.0 if cur == base else math.inf)
    if abs(delta) <= threshold:
        return "stable", delta, None, None
    worse = delta > 0 if spec.lower_is_better else delta < 0
    verdict = "regression" if worse else "improvement"
    if not spec.sampled:
        return verdict, delta, None, None
    if base_samples is None or cur_samples is None:
        return verdict, delta, None, "no usable raw samples on both sides: judged by threshold only"
    p = stats.significance(base_samples, cur_samples)
    if p >= stats.SIGNIFICANCE_ALPHA:
        return "~", delta, p, f"not significant at p < {stats.SIGNIFICANCE_ALPHA}"
    slower = float(np.median(cur_samples)) > float(np.median(base_samples))
    latency_up = delta > 0 if spec.lower_is_better else delta < 0  # FPS down means latency up
    if slower != latency_up:
        return "~", delta, p, "the samples shifted the other way"
    return verdict, delta, p, None


def _dedupe(entries: Iterable[Entry], side: str, warnings: list[str]) -> dict[tuple[Any, ...], Entry]:
    by_key: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        by_key.setdefault(e.key, []).append(e)
    out = {}
    for key, group in by_key.items():
        if len(group) > 1:
            group.sort(key=lambda e: (e.status == "ok", e.timestamp or ""))
            warnings.append(f"{len(group)} {side} runs for {group[-1].label}; using the newest ok one "
                            f"({group[-1].source})")
        out[key] = group[-1]
    return out


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
                            "a change may be the machine, not the code" if f.path.startswith("env.") else
                            f"baseline and current used different inputs: {f.label} ({f.path}) {what}")
    return warnings


def _compare_pair(b: Entry, c: Entry, report: ComparisonReport, thresholds: dict[str, float], default: float) -> None:
    if b.status != "ok" or c.status != "ok":
        why = f"baseline {b.status}" + (f" ({b.error})" if b.error else "") + f", current {c.status}" + (
            f" ({c.error})" if c.error else "")
        report.failed.append({"setting": c.label, "why": why})
        if b.status == "ok":  # it ran before and fails now: that is a regression
            report.changes.append(MetricChange(c.label, "status", "ok", c.status, None, None, "regression",
                                               note=c.error))
        return
    differ = _identity_diff(b, c)
    if differ:
        info = {m: (b.metrics.get(m), c.metrics.get(m)) for m in ("latency.p50_ms", "throughput.fps_p50")
                if b.metrics.get(m) is not None}
        report.models_differ.append({"setting": c.label, "why": differ,
                                     "info": {m: {"baseline": bv, "current": cv} for m, (bv, cv) in info.items()}})
        return
    note = "; ".join(dict.fromkeys(b.notes + c.notes)) or None
    for spec in COMPARED:
        bv, cv = b.metrics.get(spec.name), c.metrics.get(spec.name)
        if bv is None or cv is None:
            continue
        threshold = threshold_for(spec.name, thresholds, default)
        verdict, delta, p, why = judge_metric(spec, bv, cv, threshold, b.samples_ms, c.samples_ms)
        report.changes.append(MetricChange(
            c.label, spec.name, bv, cv, delta if delta is not None and math.isfinite(delta) else None, threshold,
            verdict, p, "mann-whitney-u" if p is not None else None,
            "; ".join(x for x in (why, note if spec.sampled else None) if x) or None))


def compare_entries(baseline: list[Entry], current: list[Entry], thresholds: dict[str, float] | None = None,
                    default_threshold: float = DEFAULT_THRESHOLD, baseline_source: str = "baseline",
                    current_source: str = "current", warnings: list[str] | None = None) -> ComparisonReport:
    """Match entries by setting and judge every metric; the report holds numbers, not formatted strings."""
    thresholds = dict(thresholds or {})
    report = ComparisonReport(baseline_source, current_source, default_threshold, thresholds,
                              warnings=list(warnings or []))
    base = _dedupe(baseline, "baseline", report.warnings)
    cur = _dedupe(current, "current", report.warnings)
    pairs = [(base[k], cur[k]) for k in base if k in cur]
    report.matched = len(pairs)
    report.missing_in_current = [base[k].label for k in base if k not in cur]
    report.new_in_current = [cur[k].label for k in cur if k not in base]
    report.warnings += _env_warnings(pairs)
    if not pairs:
        report.warnings.append("no setting of the baseline matches one of the current: nothing was compared")
    for b, c in pairs:
        _compare_pair(b, c, report, thresholds, default_threshold)
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
