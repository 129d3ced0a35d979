"""Paired replicates: run r of the baseline against run r of the current side when the sides ran interleaved."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from medbench.analysis import paired, verdicts
from medbench.analysis.intervals import Interval
from medbench.analysis.replicates import Run, epoch_seconds, run_from_record

# a shared host's drift: each round of the machine's life is up to 40% slower than another (what a sweep sees)
DRIFT = [1.0, 1.4, 0.95, 1.25, 1.1, 1.35]


def side(levels: list[float], start: float, step: float = 2.0, noise: float = 0.005, seed: int = 0,
         flags: dict[int, str] | None = None) -> list[Run]:
    rng = np.random.default_rng(seed)
    return [Run(30.0 * lv * float(np.exp(rng.normal(0, noise))), None, ((flags or {})[i],) if i in (flags or {})
                else (), f"r{i}", {}, i, start + step * i) for i, lv in enumerate(levels)]


def test_below_five_pairs_the_interval_is_students_paired_t():
    base = side(DRIFT[:4], 0.0, seed=1)
    cur = side([1.07 * d for d in DRIFT[:4]], 1.0, seed=2)
    values = paired.pairs(base, cur)
    got = paired.paired_delta_pct(values)
    log_b, log_c = np.log([v for v, _ in values]), np.log([v for _, v in values])
    ref = stats.ttest_rel(log_c, log_b).confidence_interval(0.95)  # scipy's paired t interval, independently
    assert got.lo == pytest.approx(100 * math.expm1(ref.low)) and got.hi == pytest.approx(100 * math.expm1(ref.high))
    assert got.estimate == pytest.approx(100 * math.expm1(np.mean(log_c - log_b)))
    assert got.lo < got.estimate < got.hi and got.estimate == pytest.approx(7.0, abs=1.0)
    assert got.confidence == 0.95 and got.method == paired.METHOD


@pytest.mark.parametrize("n", [5, 7, 10, 15])
def test_from_five_pairs_the_interval_is_the_trimmed_t(n):
    """20% trimmed mean of the log ratios with its Tukey–McLaughlin interval, as scipy computes it."""
    from scipy.stats import mstats
    rng = np.random.default_rng(n)
    d = rng.normal(0.07, 0.03, n)
    values = [(30.0, 30.0 * math.exp(x)) for x in d]
    got = paired.paired_delta_pct(values)
    lo, hi = mstats.trimmed_mean_ci(d, limits=(0.2, 0.2), alpha=0.05)
    assert got.lo == pytest.approx(100 * math.expm1(lo)) and got.hi == pytest.approx(100 * math.expm1(hi))
    assert got.estimate == pytest.approx(100 * math.expm1(stats.trim_mean(d, 0.2)))


def test_one_spoiled_pair_in_ten_does_not_hide_a_slowdown():
    """A process that ran 30% slow from start to end (seen on this host: nothing flags it) spoils one pair."""
    rng = np.random.default_rng(7)
    d = list(rng.normal(math.log(1.10), 0.03, 10))
    d[3] = math.log(1.10) - 0.35  # the baseline run of round 3 was the slow one
    values = [(30.0, 30.0 * math.exp(x)) for x in d]
    got = paired.paired_delta_pct(values)
    assert verdicts.decide(got, 5.0) == verdicts.SLOWER and got.lo > 5.0
    mean_t = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)  # what the plain mean and t interval would say
    assert 100 * math.expm1(mean_t.low) < 0 < got.lo  # not distinguishable: the spoiled pair hid the slowdown
    aa = [x - math.log(1.10) for x in d]  # and an A/A pair set with the same spoiled round is not "faster"
    assert verdicts.decide(paired.paired_delta_pct([(30.0, 30.0 * math.exp(x)) for x in aa]), 5.0) != verdicts.FASTER


def test_pairs_match_by_replicate_index_and_skip_flagged_or_unindexed_runs():
    base = side(DRIFT[:5], 0.0, flags={1: "loaded"})
    cur = side(DRIFT[:5], 1.0)
    assert [round(b / a, 6) for a, b in paired.pairs(base, cur)] == [round(b.p50_ms / a.p50_ms, 6) for a, b in
                                                                     zip(base, cur) if a.clean]
    assert len(paired.pairs(base, cur)) == 4
    no_index = [Run(r.p50_ms, started=r.started) for r in base]
    assert paired.pairs(no_index, cur) == []
    twice = [*cur[:2], Run(cur[2].p50_ms, repeat=0, started=5.0)]  # index 0 twice: not matchable
    assert paired.pairs(base, twice) == []


def test_interleaved_needs_overlapping_time_spans():
    assert paired.interleaved(side(DRIFT, 0.0), side(DRIFT, 1.0))
    assert not paired.interleaved(side(DRIFT, 0.0), side(DRIFT, 100.0))  # one sweep after the other
    assert not paired.interleaved(side(DRIFT, 0.0), [Run(30.0, repeat=i) for i in range(6)])  # no start times


def test_drift_cancels_when_interleaved():
    """The drift that made separate sweeps cry wolf: paired, an A/A pair is `same` and +8% is `slower`."""
    base = side(DRIFT, 0.0, seed=3)
    same = verdicts.judge(base, side(DRIFT, 1.0, seed=4))
    slower = verdicts.judge(base, side([1.08 * d for d in DRIFT], 1.0, seed=5))
    assert same.mode == slower.mode == "paired" and same.verdict == verdicts.SAME
    assert slower.verdict == verdicts.SLOWER and slower.delta.lo > 5.0 and slower.runs == (6, 6)
    # the same +8% judged as two groups (no replicate indices) drowns in the drift: not distinguishable
    unpaired = verdicts.judge([Run(r.p50_ms, started=r.started) for r in base],
                              [Run(r.p50_ms * 1.08, started=r.started + 1) for r in base])
    assert unpaired.mode == "runs" and unpaired.verdict == verdicts.UNDECIDED


def test_sides_run_one_after_the_other_carry_the_drift_caveat():
    j = verdicts.judge(side(DRIFT, 0.0), side(DRIFT, 500.0))
    assert j.mode == "runs" and j.caveat == verdicts.SEQUENTIAL_CAVEAT


def test_a_loaded_run_drops_its_pair_and_too_few_pairs_fall_back():
    base = side(DRIFT[:3], 0.0, flags={0: "loaded"})
    j = verdicts.judge(base, side(DRIFT[:3], 1.0))
    assert j.verdict == verdicts.UNRELIABLE  # 2 of 3 clean on one side: no verdict at all


def test_records_carry_the_replicate_index_and_start_time():
    rec = {"status": "ok", "latency": {"p50_ms": 12.0}, "metadata": {"repeat": 3},
           "provenance": {"started_at": "2026-11-24T20:00:01.500000+00:00"}}
    run = run_from_record(rec)
    assert run.repeat == 3 and run.started == pytest.approx(epoch_seconds("2026-11-24T20:00:00+00:00") + 1.5)
    assert epoch_seconds("yesterday") is None and run_from_record({**rec, "metadata": {"repeat": True}}).repeat is None


def test_the_gate_does_not_pass_a_verdict_too_noisy_to_hide_no_slowdown():
    """A `~` whose interval includes 0 and twice the threshold (slower) is `unreliable` at the gate, not a pass."""
    from medbench.analysis.judging import judge_metric
    from medbench.results.metrics import METRICS

    p50 = next(m for m in METRICS if m.name == "latency.p50_ms")
    base = side([1.0] * 10, 0.0, noise=0.01, seed=11)
    noisy = side([1.0] * 10, 1.0, noise=0.12, seed=12)  # one noisy spell: the pairs scatter by 12%
    j = verdicts.judge(base, noisy)
    assert j.verdict == verdicts.UNDECIDED and j.delta.lo <= 0 and j.delta.hi >= 10.0
    reason = verdicts.hidden_slowdown(j)
    assert reason and "too noisy to judge" in reason and "10% slowdown" in reason
    v = judge_metric(p50, base, noisy, [r.p50_ms for r in base], [r.p50_ms for r in noisy], 5.0)
    assert v.verdict == "unreliable" and "too noisy to judge" in v.note and v.ci_pct is not None
    quiet = side([1.0] * 10, 1.0, noise=0.02, seed=13)  # a quiet A/A: stable or ~, never unreliable
    jq = verdicts.judge(base, quiet)
    assert verdicts.hidden_slowdown(jq) is None
    assert judge_metric(p50, base, quiet, [r.p50_ms for r in base], [r.p50_ms for r in quiet], 5.0).verdict in {
        "stable", "~"}
    faster_only = verdicts.Judgement("median", verdicts.UNDECIDED, Interval(-8.0, -25.0, 4.0, 0.95, "x"), 5.0, (9, 9))
    assert verdicts.hidden_slowdown(faster_only) is None  # cannot hide a slowdown of 10%: the gate reports ~
