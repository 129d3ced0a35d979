"""Every result states its precision: the median's 95% interval (order statistics) and iters=auto's stop rule."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.stats import binom, quantile_test

from conftest import QUICK
from medbench.analysis.intervals import median_ci
from medbench.analysis.stats import ci_halfwidth_pct
from medbench.config.schema import to_job
from medbench.errors import ConfigError
from medbench.run.runner import run_job
from medbench.run.timing import measure


@pytest.mark.parametrize("n", [6, 7, 10, 31, 50, 101, 300])
def test_median_ci_matches_scipys_quantile_test(n: int) -> None:
    x = np.random.default_rng(n).lognormal(size=n)  # skewed, like latencies
    ref = quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    ci = median_ci(x, 0.95)
    assert (ci.lo, ci.hi) == pytest.approx((ref.low, ref.high))


@pytest.mark.parametrize("n", [6, 20, 57, 400])
def test_median_ci_ranks_give_at_least_the_level_and_are_the_tightest(n: int) -> None:
    ci = median_ci(list(range(n)), 0.95)
    lo, hi = ci.lo, ci.hi  # samples 0..n-1: the values are the 0-based ranks
    j = int(lo)
    assert hi == n - 1 - j
    assert 1 - 2 * binom.cdf(j, n, 0.5) >= 0.95  # coverage of [x_(j+1), x_(n-j)] (1-based)
    assert 1 - 2 * binom.cdf(j + 1, n, 0.5) < 0.95  # one rank tighter would not cover


def test_median_ci_needs_enough_samples() -> None:
    assert median_ci([1.0] * 5) is None and ci_halfwidth_pct([1.0] * 5) is None
    assert median_ci([]) is None
    assert (median_ci([5.0] * 6).lo, median_ci([5.0] * 6).hi) == (5.0, 5.0) and ci_halfwidth_pct([5.0] * 6) == 0.0


def _work() -> torch.Tensor:
    return torch.ones(64, 64) @ torch.ones(64, 64)


def test_stop_rule_runs_between_rounds_until_it_holds() -> None:
    seen: list[int] = []

    def rule(samples: list[float]) -> bool:
        seen.append(len(samples))
        return len(samples) >= 37

    m = measure(_work, warmup=2, iters=10, stop=rule, max_iters=10_000)
    assert m.stopped_by == "target"
    assert 37 <= len(m.samples_ms) <= 37 * 1.25 + 1
    assert seen[0] == 10 and seen[-1] == len(m.samples_ms)
    # each round adds a quarter of what is there: the rule runs a logarithmic number of times
    assert all(b - a == max(1, a // 4) for a, b in zip(seen, seen[1:]))
    assert m.warmup_ms is not None and m.warmup_ms > 0


def test_stop_rule_gives_up_at_the_iteration_and_time_caps() -> None:
    m = measure(_work, warmup=0, iters=10, stop=lambda s: False, max_iters=40)
    assert (m.stopped_by, len(m.samples_ms)) == ("cap", 40)
    m = measure(lambda: time.sleep(0.002), warmup=0, iters=5, stop=lambda s: False, max_iters=100_000,
                max_time_s=0.1)
    assert m.stopped_by == "cap"
    assert 0.1 <= sum(m.samples_ms) / 1e3 < 0.1 * 2  # the last round is trimmed to the time that was left


def test_without_a_rule_the_count_decides() -> None:
    assert measure(_work, warmup=0, iters=12).stopped_by == "iters"
    m = measure(lambda: time.sleep(0.001), warmup=0, iters=3, min_time_s=10.0, max_iters=6)
    assert (m.stopped_by, len(m.samples_ms)) == ("cap", 6)  # min_time_s not reached: the cap stopped it


def test_iters_auto_preset_and_its_checks(compose_cfg) -> None:
    it = to_job(compose_cfg("iters=auto")).iters
    assert (it.target_ci_pct, it.max_time_s, it.iters) == (1.0, 60.0, 50)
    assert to_job(compose_cfg()).iters.target_ci_pct is None
    with pytest.raises(ConfigError, match="iters.target_ci_pct must be > 0"):
        to_job(compose_cfg("iters=auto", "iters.target_ci_pct=0"))


def test_auto_run_records_what_it_reached_and_why_it_stopped(compose_cfg, tmp_path) -> None:
    job = to_job(compose_cfg(*QUICK, "device=cpu", "iters=auto", "iters.warmup=2", "iters.iters=10",
                             "iters.target_ci_pct=3", "iters.max_time_s=4"))
    rec = run_job(job, list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    reached, why = rec["noise"]["ci95_halfwidth_pct"], rec["metadata"]["stopped_by"]
    assert reached == pytest.approx(ci_halfwidth_pct(rec["samples_ms"]))
    assert why in ("target", "cap")
    if why == "target":
        assert reached <= 3.0
        assert not any("short of the" in w for w in rec["warnings"])
    else:  # a loaded machine: the cap stopped it and the record says so
        assert sum(rec["samples_ms"]) >= 4000 and any("short of the ±3% target" in w for w in rec["warnings"])
