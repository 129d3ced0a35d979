"""Intervals and verdicts are pure: checked against scipy and on synthetic data with known truth."""

import math

import numpy as np
import pytest
from scipy import stats as st

from medbench.analysis import intervals, stats, verdicts
from medbench.analysis.replicates import Group, Run, run_flags, run_from_record


@pytest.mark.parametrize("n", [6, 7, 10, 11, 30, 60, 101, 500, 2000, 5001])
def test_median_ci_matches_scipy_quantile_test(n):
    x = np.random.default_rng(n).lognormal(0, 0.3, n)
    ref = st.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    ci = intervals.median_ci(x)
    assert (ci.lo, ci.hi) == pytest.approx((ref.low, ref.high))
    assert ci.lo <= ci.estimate <= ci.hi


@pytest.mark.parametrize("n", [6, 9, 20, 47, 200])
def test_median_ci_ranks_are_the_binomial_ranks(n):
    k, j, reached = intervals.median_ci_ranks(n)
    assert j == n + 1 - k
    assert reached == pytest.approx(1 - 2 * st.binom.cdf(k - 1, n, 0.5))
    assert reached >= 0.95 and 1 - 2 * st.binom.cdf(k, n, 0.5) < 0.95  # the narrowest pair that still covers


def test_median_ci_needs_six_samples_at_95():
    assert intervals.median_ci([1, 2, 3, 4, 5]) is None
    assert stats.latency_stats(list(range(1, 7)))["p50_ci95_ms"] == [1.0, 6.0]


def test_latency_block_carries_the_median_interval():
    samples = np.random.default_rng(0).lognormal(2, 0.1, 100).tolist()
    lat = stats.latency_stats(samples)
    lo, hi = lat["p50_ci95_ms"]
    assert lo < lat["p50_ms"] < hi
    assert stats.latency_stats([1.0, 2.0, 3.0])["p50_ci95_ms"] is None


@pytest.mark.parametrize(("m", "n"), [(3, 3), (4, 4), (5, 5), (3, 6), (8, 7)])
def test_shift_ci_inverts_the_exact_mann_whitney_test(m, n):
    rng = np.random.default_rng(m * 10 + n)
    a, b = rng.normal(0, 1, m), rng.normal(0.5, 1, n)
    ci = intervals.shift_ci(a, b)
    diffs = np.sort((b[None, :] - a[:, None]).ravel())
    assert ci.estimate == pytest.approx(np.median(diffs))
    alpha = 1 - ci.confidence
    # a shift inside the interval is not rejected by scipy's exact test at the interval's level; outside, it is
    inside = (ci.lo + ci.hi) / 2
    assert st.mannwhitneyu(a + inside, b, method="exact").pvalue > alpha
    for outside in (ci.lo - 1e-6, ci.hi + 1e-6):
        assert st.mannwhitneyu(a + outside, b, method="exact").pvalue <= alpha + 1e-9
    assert ci.confidence >= (0.95 if min(m, n) >= 4 else 0.9 - 1e-12)


def test_run_level_delta_is_a_ratio_in_percent():
    ci = intervals.run_level_delta_pct([10, 10.2, 9.9, 10.1, 10], [11, 11.1, 10.9, 11.2, 11])
    assert ci.estimate == pytest.approx(10.0)
    assert 0 < ci.lo < 10 < ci.hi


def _ar1(rng, n, phi=0.8, level=10.0, sd=0.3):
    e = rng.normal(0, sd, n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return level * np.exp(x / level)


def test_block_bootstrap_holds_its_level_on_autocorrelated_samples():
    # one run each of the same AR(1) process: iid methods reject far too often, the block bootstrap does not
    excluded = naive = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        a, b = _ar1(rng, 200), _ar1(rng, 200)
        excluded += intervals.bootstrap_ratio_ci([a], [b], reps=500).excludes(0.0)
        naive += st.mannwhitneyu(a, b).pvalue < 0.05
    assert excluded <= 4  # ≈ 5% expected; the naive test rejects several times as often
    assert naive > 2 * max(excluded, 2)


def _runs(rng, k, shift=1.0, n=100, flags=(), run_sd=0.02):
    out = []
    for _ in range(k):
        level = 10.0 * shift * math.exp(rng.normal(0, run_sd))  # run-to-run variation
        s = _ar1(rng, n, level=level)
        out.append(Run(float(np.median(s)), tuple(s), tuple(flags)))
    return out


def test_synthetic_aa_with_replicates_gives_no_verdict():
    alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        j = verdicts.judge(_runs(rng, 5), _runs(rng, 5), threshold_pct=5.0)
        assert j.mode == "runs" and j.caveat is None
        alarms += j.verdict in (verdicts.SLOWER, verdicts.FASTER)
    assert alarms <= 1


def test_ten_percent_slowdown_with_five_replicates_is_detected():
    hits = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        j = verdicts.judge(_runs(rng, 5), _runs(rng, 5, shift=1.10), threshold_pct=5.0)
        hits += j.verdict == verdicts.SLOWER
        assert j.delta.lo <= 10.0 + 8 and j.delta.hi >= 10.0 - 8
    assert hits >= 38
    j = verdicts.judge(_runs(np.random.default_rng(1), 5, shift=1.2), _runs(np.random.default_rng(2), 5))
    assert j.verdict == verdicts.FASTER and j.mark == "faster"


def test_one_run_each_carries_the_caveat():
    rng = np.random.default_rng(3)
    j = verdicts.judge(_runs(rng, 1), _runs(rng, 1, shift=1.3))
    assert j.caveat == verdicts.ONE_RUN_CAVEAT and j.mode == "within-run"
    assert j.verdict == verdicts.SLOWER and j.delta.lo > 0


def test_a_loaded_side_is_unreliable():
    rng = np.random.default_rng(4)
    loaded = _runs(rng, 1, shift=1.5, flags=("loaded: other processes kept 1.6 of 2 cores busy",))
    j = verdicts.judge(_runs(rng, 1), loaded)
    assert j.verdict == verdicts.UNRELIABLE and j.delta is None and "loaded" in j.reason
    # with replicates, a flagged run is dropped while 3 clean ones remain; fewer is unreliable
    b = _runs(rng, 4) + _runs(rng, 1, flags=("throttled (SwPowerCap)",))
    assert verdicts.judge(_runs(rng, 5), b).runs == (5, 4)
    b = _runs(rng, 2) + _runs(rng, 3, flags=("very noisy",))
    j = verdicts.judge(_runs(rng, 5), b)
    assert j.verdict == verdicts.UNRELIABLE and j.reason.startswith("current: 3 of 5 run(s) very noisy")


def test_tails_need_enough_samples_for_a_verdict():
    rng = np.random.default_rng(5)
    j = verdicts.judge(_runs(rng, 1, n=200), _runs(rng, 1, n=200, shift=1.3), "p99")
    assert j.verdict == verdicts.NO_VERDICT and "1000" in j.reason and j.delta is not None
    j = verdicts.judge(_runs(rng, 5, n=200), _runs(rng, 5, n=200, shift=1.3), "p95")
    assert j.verdict == verdicts.SLOWER and j.mode == "runs"


def test_decide_rule():
    iv = intervals.Interval
    assert verdicts.decide(iv(2.0, -1.0, 4.5, .95, ""), 5.0) == verdicts.SAME  # the whole interval within ±5%
    assert verdicts.decide(iv(4.0, 1.0, 7.0, .95, ""), 5.0) == verdicts.UNDECIDED  # within, but may be beyond it
    assert verdicts.decide(iv(0.0, -30.0, 30.0, .95, ""), 5.0) == verdicts.UNDECIDED  # a wide interval is no "same"
    assert verdicts.decide(iv(8.0, 1.0, 15.0, .95, ""), 5.0) == verdicts.SLOWER
    assert verdicts.decide(iv(8.0, -1.0, 15.0, .95, ""), 5.0) == verdicts.UNDECIDED
    assert verdicts.decide(iv(-8.0, -15.0, -1.0, .95, ""), 5.0) == verdicts.FASTER


def test_flags_from_a_record():
    rec = {"latency": {"p50_ms": 10.0, "mean_ms": 11.0}, "samples_ms": [10.0, 11.0],
           "telemetry": {"loaded": True, "other_cpu_cores": 1.4, "cpu_cores": 2, "throttled": False},
           "noise": {"iqr_over_median": 0.3}}
    run = run_from_record(rec)
    assert run.p50_ms == 10.0 and run.samples_ms == (10.0, 11.0) and not run.clean
    assert run.flags[0].startswith("loaded: other processes kept 1.4 of 2")
    assert run.flags[1].startswith("very noisy: IQR 30%")
    assert run_flags({"loaded": False, "throttled": None}, {"iqr_over_median": 0.05}) == ()
    g = Group((Run(10.0), Run(11.0), Run(12.0, flags=("loaded",))))
    assert g.median_of_medians() == 10.5 and g.spread_pct() == pytest.approx(100 / 10.5)
