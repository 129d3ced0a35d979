"""The result of a comparison: one ``MetricChange`` per judged metric of a matched setting, gathered in a
``ComparisonReport`` (numbers, not formatted strings). Built by ``medbench.analysis.compare``; the terminal text is
``medbench.cli.compare.render(report)``, the JSON form ``report.to_dict()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RULE = ("Δ% beyond the threshold and its 95% interval excluding 0 (run-level with >= 3 runs per side, else "
        "within-run block bootstrap); loaded/throttled/very noisy runs are no evidence")


@dataclass
class MetricChange:
    """The verdict on one metric of one matched setting."""

    setting: str
    metric: str
    baseline: float | str | None
    current: float | str | None
    delta_pct: float | None
    threshold: float | None
    verdict: str  # regression | improvement | stable | ~ | unreliable | no_verdict
    p_value: float | None = None  # kept for readers of older reports; verdicts come from the interval
    test: str | None = None  # how the interval was computed
    note: str | None = None
    ci_pct: list[float] | None = None  # interval of delta_pct: 95% (p95/p99: 99%)
    confidence: float | None = None  # the coverage of that interval (3 vs 3 runs: 90%)
    runs: list[int] | None = None  # clean runs used: [baseline, current]


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
    flagged: list[dict[str, Any]] = field(default_factory=list)  # runs left out: loaded, throttled, very noisy

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
    def unreliable(self) -> list[MetricChange]:
        return self._by("unreliable")

    @property
    def no_verdict(self) -> list[MetricChange]:
        return self._by("no_verdict")

    @property
    def has_unreliable(self) -> bool:
        return bool(self.unreliable)

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressions)

    @property
    def unmatched(self) -> int:
        return len(self.missing_in_current) + len(self.new_in_current)

    def counts(self) -> dict[str, int]:
        return {"regressions": len(self.regressions), "improvements": len(self.improvements),
                "stable": len(self.stable), "within_noise": len(self.within_noise),
                "unreliable": len(self.unreliable), "no_verdict": len(self.no_verdict),
                "models_differ": len(self.models_differ), "unmatched": self.unmatched, "failed": len(self.failed),
                "matched_settings": self.matched}

    def summary(self) -> str:
        n = self.counts()

        def plural(k: int, word: str, many: str) -> str:
            return f"{k} {word if k == 1 else many}"

        text = (f"{plural(n['regressions'], 'regression', 'regressions')}, "
                f"{plural(n['improvements'], 'improvement', 'improvements')}, {n['stable']} stable, "
                f"{n['within_noise']} within noise, {n['unreliable']} unreliable, {n['models_differ']} models differ, "
                f"{n['unmatched']} unmatched")
        return text + (f", {n['failed']} failed" if n["failed"] else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_source, "current": self.current_source,
            "default_threshold_pct": self.default_threshold, "thresholds_pct": dict(self.thresholds),
            "rule": RULE, "confidence": 0.95, "has_unreliable": self.has_unreliable,
            "has_regressions": self.has_regressions, "summary": self.counts(), "summary_line": self.summary(),
            "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "within_noise": [asdict(c) for c in self.within_noise],
            "stable": [asdict(c) for c in self.stable],
            "unreliable": [asdict(c) for c in self.unreliable],
            "no_verdict": [asdict(c) for c in self.no_verdict],
            "flagged_runs": self.flagged,
            "models_differ": self.models_differ, "failed": self.failed,
            "unmatched": {"missing_in_current": self.missing_in_current, "new_in_current": self.new_in_current},
            "warnings": self.warnings,
        }
