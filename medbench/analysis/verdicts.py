"""Verdicts between two groups of replicates: Δ% with its 95% interval, then slower / faster / ~ / unreliable.

The rule (docs/statistics.md explains and measures it):

* ``unreliable`` — a side has too few clean runs: a flagged run (loaded, throttled, very noisy) is never
  evidence, and a side needs ``min(3, its runs)`` clean ones;
* ``slower`` / ``faster`` — the estimated change is beyond ``±threshold`` **and** the 95% interval excludes 0;
* ``same`` — the whole 95% interval lies within ±threshold;
* ``~`` — anything else: beyond the threshold but not distinguishable from noise, or an estimate within the
  threshold whose interval still reaches beyond it (not evidence of equality).

With ≥ 3 clean runs per side the p50 interval comes from the run medians: run-to-run variance is in the evidence.
When the two sides ran interleaved (their time spans overlap) and their runs carry replicate indices, run ``r``
of one side is paired with run ``r`` of the other and the interval comes from the pairs' log ratios
(``medbench.analysis.paired``): drift of the machine that is slower than one pair cancels. Otherwise the sides are
compared as two groups (Hodges–Lehmann on log medians, Mann–Whitney interval), and when they ran one after the
other the verdict says that drift between them is not in the interval. Otherwise it comes from the samples within the
runs (moving-block bootstrap) and carries the caveat that run-to-run variance was not measured. The mean is judged
the same way (run means); tail percentiles always use the two-stage bootstrap, and get no verdict when a side has
too few samples past the percentile. Pure: runs in, a ``Judgement`` out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medbench.analysis import intervals, paired
from medbench.analysis.intervals import Interval
from medbench.analysis.replicates import Run

MIN_RUNS = 3  # run-level intervals from this many clean runs per side
HIDDEN_FACTOR = 2.0  # the gate: a ~ whose interval reaches 2x the threshold (slower) is unreliable, not a pass
TAIL_CONFIDENCE = 0.99  # a percentile bootstrapped from a few runs is optimistic: tails are judged at 99%
MIN_SAMPLES = 20  # a within-run (bootstrap) interval needs this many samples per side; fewer give no interval
SLOWER, FASTER, UNDECIDED, SAME, UNRELIABLE, NO_VERDICT = "slower", "faster", "~", "same", "unreliable", "none"
ONE_RUN_CAVEAT = "1 run each: run-to-run variance not measured"
FEW_RUNS_CAVEAT = f"fewer than {MIN_RUNS} runs per side: run-to-run variance not measured"
SEQUENTIAL_CAVEAT = ("the sides ran one after the other: drift of the machine between them is not in the interval "
                     "(interleave the sides' runs)")
STATISTICS = ("median", "mean", "p95", "p99")
MARKS = {SLOWER: "slower", FASTER: "faster", UNDECIDED: "~", SAME: "same", UNRELIABLE: "unreliable",
         NO_VERDICT: ""}


@dataclass(frozen=True)
class Judgement:
    """Δ% of one latency statistic of side ``b`` against side ``a``, its interval and the verdict."""

    statistic: str  # median | mean | pNN
    verdict: str  # slower | faster | ~ | same | unreliable | none
    delta: Interval | None  # Δ% (b/a - 1, percent) with its interval; None when unreliable or not computable
    threshold_pct: float
    runs: tuple[int, int]  # clean runs used per side
    mode: str | None = None  # "paired" (interleaved pairs) | "runs" (run-level groups) | "within-run"
    caveat: str | None = None
    reason: str | None = None  # why unreliable / no verdict

    @property
    def mark(self) -> str:
        return MARKS[self.verdict]


def decide(delta: Interval, threshold_pct: float) -> str:
    """The verdict rule on a Δ% interval (latency: positive is slower).

    ``slower`` / ``faster``: the estimate is beyond the threshold and the interval excludes 0. ``same``: the whole
    interval lies within ±threshold (the data rule out a change that matters). Anything else is ``~``: an
    estimate within the threshold with an interval reaching beyond it is not evidence of equality."""
    if delta.estimate > threshold_pct and delta.lo > 0:
        return SLOWER
    if delta.estimate < -threshold_pct and delta.hi < 0:
        return FASTER
    if -threshold_pct <= delta.lo and delta.hi <= threshold_pct:
        return SAME
    return UNDECIDED


def hidden_slowdown(j: Judgement) -> str | None:
    """Why a ``~`` on the median or mean cannot pass a regression gate: its interval includes 0 and reaches a
    slowdown of ``HIDDEN_FACTOR`` × the threshold — the runs were too noisy to tell no change from a large one.
    None when the judgement is anything else (the gate then reports it as it is)."""
    if j.verdict != UNDECIDED or j.delta is None or j.statistic not in ("median", "mean"):
        return None
    limit = HIDDEN_FACTOR * j.threshold_pct
    if j.delta.lo <= 0.0 and j.delta.hi >= limit:
        return (f"too noisy to judge: the {j.delta.confidence:.0%} interval [{j.delta.lo:+.1f}%, {j.delta.hi:+.1f}%] "
                f"includes no change and a {limit:g}% slowdown (add rounds, or rerun on a quieter machine)")
    return None


def short_flags(runs: Sequence[Run]) -> str:
    """``loaded, very noisy``: the kinds of flags the runs carry (details stay with each run)."""
    return ", ".join(dict.fromkeys(f.split(":")[0].split(" (")[0] for r in runs for f in r.flags))


def _unreliable_reason(side: str, runs: Sequence[Run]) -> str | None:
    clean = [r for r in runs if r.clean]
    if not runs:
        return f"no {side} run"
    if len(clean) >= min(MIN_RUNS, len(runs)):
        return None
    return (f"{side}: {len(runs) - len(clean)} of {len(runs)} run(s) {short_flags(runs)}; "
            f"a verdict needs {min(MIN_RUNS, len(runs))} clean")


def _within_run(a: Sequence[Run], b: Sequence[Run], statistic: str) -> Interval | None:
    if not all(r.samples_ms for r in (*a, *b)):
        return None
    confidence = TAIL_CONFIDENCE if statistic.startswith("p") else intervals.CONFIDENCE
    return intervals.bootstrap_ratio_ci([r.samples_ms for r in a], [r.samples_ms for r in b],  # type: ignore[misc]
                                        statistic, confidence)


def _run_levels(a: Sequence[Run], b: Sequence[Run], statistic: str) -> tuple[list[float], list[float]] | None:
    """One value per run (its median, or its mean) for the run-level interval; None when a run lacks it."""
    if statistic == "median":
        return [r.p50_ms for r in a], [r.p50_ms for r in b]
    va = [r.values.get("mean_ms") or (float(np.mean(r.samples_ms)) if r.samples_ms else None) for r in a]
    vb = [r.values.get("mean_ms") or (float(np.mean(r.samples_ms)) if r.samples_ms else None) for r in b]
    if any(v is None or v <= 0 for v in va + vb):
        return None
    return va, vb  # type: ignore[return-value]


def _too_few_for_tail(a: Sequence[Run], b: Sequence[Run], statistic: str) -> str | None:
    if not statistic.startswith("p"):
        return None
    need = intervals.tail_samples_needed(float(statistic[1:]))
    have = min(sum(len(r.samples_ms or ()) for r in a), sum(len(r.samples_ms or ()) for r in b))
    if have < need:
        return f"{have} samples per side; a {statistic} verdict needs {need} (10 past the percentile)"
    return None


def _sequential(a: Sequence[Run], b: Sequence[Run]) -> bool:
    """True when every run of one side started before every run of the other (both sides timed)."""
    ta, tb = [r.started for r in a], [r.started for r in b]
    if not ta or not tb or None in ta or None in tb:
        return False
    return max(ta) < min(tb) or max(tb) < min(ta)  # type: ignore[type-var]


def judge(a_runs: Sequence[Run], b_runs: Sequence[Run], statistic: str = "median",
          threshold_pct: float = 5.0) -> Judgement:
    """Judge side ``b`` (current / variant) against side ``a`` (baseline) on one latency statistic."""
    if statistic not in STATISTICS:
        intervals.statistic_fn(statistic)  # raises for an unknown name
    reason = _unreliable_reason("baseline", a_runs) or _unreliable_reason("current", b_runs)
    a = [r for r in a_runs if r.clean]
    b = [r for r in b_runs if r.clean]
    if reason:
        return Judgement(statistic, UNRELIABLE, None, threshold_pct, (len(a), len(b)), reason=reason)
    n = (len(a), len(b))
    if statistic in ("median", "mean") and min(n) >= MIN_RUNS:
        matched = paired.pairs(a_runs, b_runs, statistic)
        if len(matched) >= MIN_RUNS and paired.interleaved(a_runs, b_runs):
            delta = paired.paired_delta_pct(matched)
            return Judgement(statistic, decide(delta, threshold_pct), delta, threshold_pct, (len(matched),) * 2,
                             "paired")
        if level := _run_levels(a, b, statistic):
            delta = intervals.run_level_delta_pct(*level)
            return Judgement(statistic, decide(delta, threshold_pct), delta, threshold_pct, n, "runs",
                             SEQUENTIAL_CAVEAT if _sequential(a, b) else None)
    caveat = None if min(n) >= MIN_RUNS else (ONE_RUN_CAVEAT if n == (1, 1) else FEW_RUNS_CAVEAT)
    have = min(sum(len(r.samples_ms or ()) for r in a), sum(len(r.samples_ms or ()) for r in b))
    if 0 < have < MIN_SAMPLES:  # no interval, so no verdict: not even "same" from the point estimate
        return Judgement(statistic, NO_VERDICT, None, threshold_pct, n, "within-run", caveat,
                         f"{have} samples per side: an interval needs {MIN_SAMPLES}")
    delta = _within_run(a, b, statistic)
    if delta is None:
        return Judgement(statistic, NO_VERDICT, None, threshold_pct, n, "within-run", caveat,
                         "no raw samples on both sides: no interval, no verdict")
    few = _too_few_for_tail(a, b, statistic)
    if few:
        return Judgement(statistic, NO_VERDICT, delta, threshold_pct, n, "within-run", caveat, few)
    return Judgement(statistic, decide(delta, threshold_pct), delta, threshold_pct, n,
                     "runs" if min(n) >= MIN_RUNS else "within-run", caveat)
