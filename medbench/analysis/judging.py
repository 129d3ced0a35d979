"""One metric of one setting, baseline group vs current group → a gate verdict with its Δ% interval.

The gate's words for ``medbench.analysis.verdicts``' judgements: latency slower → ``regression``, faster →
``improvement``, an interval within ±threshold → ``stable``, otherwise ``~`` (not distinguishable), a side
without enough clean runs → ``unreliable``, and so is a ``~`` of the median or mean whose interval includes 0 and a
slowdown of twice the threshold (``verdicts.hidden_slowdown``: the runs were too noisy to judge, not a pass), no
interval or an interval without a verdict (fewer than 20 samples, a tail with too few samples, no raw samples) →
``no_verdict``. Throughput metrics are 1000/latency × batch, so they are judged by the latency statistic they are
computed from (fps_p50 by the median, fps_mean and items/s by the mean), with the interval inverted. Metrics
without samples (memory, pipelined FPS) are judged by the threshold on the median of the runs' values. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medbench.analysis import verdicts
from medbench.analysis.intervals import Interval
from medbench.analysis.replicates import Run
from medbench.results.metrics import Metric

# metric → (latency statistic that decides it, True when the metric is latency itself, False when 1/latency)
STATISTIC_OF = {
    "latency.p50_ms": ("median", True), "latency.mean_ms": ("mean", True), "latency.p95_ms": ("p95", True),
    "latency.p99_ms": ("p99", True), "throughput.fps_p50": ("median", False), "throughput.fps_mean": ("mean", False),
    "throughput.items_per_s": ("mean", False),
}
GATE_WORDS = {verdicts.SLOWER: "regression", verdicts.FASTER: "improvement", verdicts.SAME: "stable",
              verdicts.UNDECIDED: "~", verdicts.UNRELIABLE: "unreliable", verdicts.NO_VERDICT: "no_verdict"}


@dataclass(frozen=True)
class Verdict:
    """What the gate reports for one metric: values (median over runs), Δ% with its interval, the verdict."""

    baseline: float | None
    current: float | None
    delta_pct: float | None
    ci_pct: tuple[float, float] | None
    confidence: float | None
    verdict: str  # regression | improvement | stable | ~ | unreliable | no_verdict
    runs: tuple[int, int]  # clean runs used per side
    method: str | None
    note: str | None


def _median(values: Sequence[float | None]) -> float | None:
    vs = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vs)) if vs else None


def _inverted(delta: Interval) -> Interval:
    """Δ% of latency → Δ% of 1/latency (throughput); the interval's ends swap."""
    def inv(p: float) -> float:
        return 100.0 * (100.0 / (100.0 + p) - 1.0) if p > -100.0 else math.inf

    return Interval(inv(delta.estimate), inv(delta.hi), inv(delta.lo), delta.confidence, delta.method)


def judge_metric(metric: Metric, base: Sequence[Run], cur: Sequence[Run], base_values: Sequence[float | None],
                 cur_values: Sequence[float | None], threshold: float) -> Verdict | None:
    """The verdict on ``metric`` (None when a side has no value for it)."""
    bv, cv = _median(base_values), _median(cur_values)
    if bv is None or cv is None:
        return None
    n = (len(base), len(cur))
    if not metric.sampled or metric.name not in STATISTIC_OF:
        delta = (cv - bv) / bv * 100.0 if bv != 0 else (0.0 if cv == bv else math.inf)
        if abs(delta) <= threshold:
            word = "stable"
        else:
            word = "regression" if (delta > 0) == metric.lower_is_better else "improvement"
        return Verdict(bv, cv, delta if math.isfinite(delta) else None, None, None, word, n, "threshold only",
                       None)
    statistic, is_latency = STATISTIC_OF[metric.name]
    j = verdicts.judge(base, cur, statistic, threshold)
    if j.delta is None:  # no interval: the change of the recorded values, for the reader
        plain = (cv - bv) / bv * 100.0 if bv != 0 else None
        note = "; ".join(x for x in (j.caveat, j.reason) if x) or None
        return Verdict(bv, cv, plain, None, None, GATE_WORDS[j.verdict], j.runs, None, note)
    delta = j.delta if is_latency else _inverted(j.delta)
    hidden = verdicts.hidden_slowdown(j)  # a gate never passes a ~ that could hide a slowdown of 2x the threshold
    word = "unreliable" if hidden else GATE_WORDS[j.verdict]
    note = "; ".join(x for x in (j.caveat, j.reason, hidden) if x) or None
    return Verdict(bv, cv, delta.estimate, (delta.lo, delta.hi), delta.confidence, word, j.runs, delta.method, note)
