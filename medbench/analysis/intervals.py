"""Confidence intervals for latency: pure functions over raw samples (no I/O, no printing).

* ``median_ci`` — the distribution-free interval of one run's median from order statistics: with ``n``
  samples the number below the true median is Binomial(n, ½), so ``[x_(k), x_(n+1-k)]`` covers it with
  probability ``1 - 2·P(B ≤ k-1)``. Exact for every n; no assumption about the shape of the distribution.
* ``shift_ci`` — Hodges–Lehmann estimate of the shift between two small groups (run-level log medians)
  with the distribution-free interval obtained by inverting the exact Mann–Whitney test (Lehmann 1963).
* ``bootstrap_ratio_ci`` — ratio of a statistic (median, mean, a percentile) between two sides by a
  two-stage bootstrap: runs are resampled (when a side has several), then *blocks* of consecutive samples
  within each run (the moving-block bootstrap), so autocorrelated iterations are not taken as independent.

All intervals are returned with the confidence they really reach (``confidence``): a small sample can
make 95% impossible, and the caller must see that instead of a silently narrower interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240613  # fixed: the same records always give the same interval


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval and the coverage that interval really has."""

    estimate: float
    lo: float
    hi: float
    confidence: float  # achieved coverage (≥ the requested one unless the sample is too small to reach it)
    method: str

    def excludes(self, value: float) -> bool:
        return not (self.lo <= value <= self.hi)


# --- one run: the median and its order-statistic interval ---------------------------------------------------------

def _binom_cdf_half(k: int, n: int) -> float:
    """P(B ≤ k) for B ~ Binomial(n, ½), exact (integers) for any n this code meets."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n <= 1000:
        return math.fsum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    # larger n: the same sum in log space, from ten standard deviations below the mean (what lies below is < 1e-22)
    log_half_n, log_n_fact = n * math.log(0.5), math.lgamma(n + 1)
    start = max(0, int(n / 2 - 10 * math.sqrt(n) / 2))
    return math.fsum(math.exp(log_n_fact - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
                     for i in range(start, k + 1))


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float] | None:
    """1-based ranks ``(k, n+1-k)`` of the order statistics bounding the median, and the coverage they reach.

    The narrowest symmetric pair whose coverage is at least ``confidence``; None when even ``(1, n)`` falls short
    (fewer than 6 samples for 95%).
    """
    alpha = 1.0 - confidence
    if n < 1 or 2.0 * _binom_cdf_half(0, n) > alpha:
        return None
    lo, hi = 1, n // 2 + 1  # the largest k with 2·P(B ≤ k-1) ≤ alpha, by bisection (the CDF is monotone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if 2.0 * _binom_cdf_half(mid - 1, n) <= alpha:
            lo = mid
        else:
            hi = mid
    k = lo
    return k, n + 1 - k, 1.0 - 2.0 * _binom_cdf_half(k - 1, n)


def median_ci(samples: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The distribution-free ``confidence`` interval of the median of ``samples`` (None below 6 samples at 95%).

    medbench's one median interval: a record's ``latency.p50_ci95_ms``, ``noise.ci95_halfwidth_pct`` and the
    ``iters.target_ci_pct`` stop rule (``stats``) and the verdicts all use it. It equals
    ``scipy.stats.quantile_test(x, q=median, p=0.5).confidence_interval(confidence)``. Assumes independent samples:
    on a loaded or drifting machine consecutive iterations are not, and run-to-run variance needs replicates."""
    a = np.sort(np.asarray(samples, dtype=np.float64))
    if not 0 < confidence < 1:
        return None
    ranks = median_ci_ranks(a.size, confidence)
    if ranks is None:
        return None
    k, j, reached = ranks
    return Interval(float(np.median(a)), float(a[k - 1]), float(a[j - 1]), reached, "order statistics (binomial)")


def _u_distribution(m: int, n: int) -> np.ndarray:
    """Counts of arrangements with U = 0..m·n under the null (coefficients of the Gaussian binomial [m+n, m]_q)."""
    m, n = min(m, n), max(m, n)
    poly = np.zeros(m * n + 1)
    poly[0] = 1.0
    for i in range(1, m + 1):
        shifted = poly.copy()  # multiply by (1 - q^(n+i)) ...
        shifted[n + i:] -= poly[: len(poly) - (n + i)]
        for r in range(i):  # ... then divide by (1 - q^i): a running sum per residue class (exact quotient)
            shifted[r::i] = np.cumsum(shifted[r::i])
        poly = shifted
    return poly


# --- several runs per side: Hodges–Lehmann shift with the Mann–Whitney interval ----------------------------------

def shift_ci(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Shift of ``b`` relative to ``a`` (location of ``b - a``): Hodges–Lehmann with the exact distribution-free CI.

    The estimate is the median of all ``m·n`` pairwise differences ``b_j - a_i``; the interval is
    ``[d_(k), d_(mn+1-k)]`` with ``k`` the largest rank for which ``2·P(U ≤ k-1) ≤ 1 - confidence`` under the exact
    null distribution of U. When no ``k`` reaches ``confidence`` (3 vs 3 runs: 90% at most) the widest interval
    ``[min, max]`` is returned with the coverage it really has. Assumes the two sides differ by a shift only.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("shift_ci needs at least one value on each side")
    diffs = np.sort((y[None, :] - x[:, None]).ravel())
    mn = diffs.size
    counts = _u_distribution(x.size, y.size)
    cdf = np.cumsum(counts) / counts.sum()  # P(U ≤ u), u = 0..mn
    alpha = 1.0 - confidence
    ok = np.nonzero(2.0 * cdf <= alpha + 1e-12)[0]  # u = k-1 values that keep the tails within alpha
    k = int(ok[-1]) + 1 if ok.size else 1
    k = min(k, (mn + 1) // 2)
    reached = 1.0 - 2.0 * float(cdf[k - 1]) if k >= 1 else 0.0
    return Interval(float(np.median(diffs)), float(diffs[k - 1]), float(diffs[mn - k]), reached,
                    "Hodges-Lehmann, Mann-Whitney interval")


def ratio_from_log_shift(shift: Interval) -> Interval:
    """A shift of log values → the ratio ``b / a`` minus one, in percent."""
    def pct(v: float) -> float:
        return 100.0 * math.expm1(v)

    return Interval(pct(shift.estimate), pct(shift.lo), pct(shift.hi), shift.confidence, shift.method)


def run_level_delta_pct(a_medians: Sequence[float], b_medians: Sequence[float],
                        confidence: float = CONFIDENCE) -> Interval:
    """Δ% of ``b`` against ``a`` from one median per run: Hodges–Lehmann on log medians (ratio scale)."""
    return ratio_from_log_shift(shift_ci(np.log(a_medians), np.log(b_medians), confidence))


# --- a statistic's ratio by a two-stage (runs, then blocks) bootstrap ----------------------------------------------

def block_length(n: int) -> int:
    """Block length of the moving-block bootstrap: ⌈√n⌉ (about √n blocks, as in batch means; spans a stall)."""
    return max(1, math.ceil(math.sqrt(n)))


def _resample_run(x: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` moving-block bootstrap copies of one run (rows), each of the run's length."""
    n = x.size
    b = block_length(n)
    blocks = math.ceil(n / b)
    starts = rng.integers(0, n - b + 1, size=(reps, blocks))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(reps, -1)[:, :n]
    return x[idx]


def _side_statistic(runs: list[np.ndarray], stat: Callable[[np.ndarray], np.ndarray], reps: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of a side's statistic: pooled samples of resampled runs, each block-resampled."""
    copies = [_resample_run(r, reps, rng) for r in runs]
    if len(runs) == 1:
        return stat(copies[0])
    pick = rng.integers(0, len(runs), size=(reps, len(runs)))  # runs drawn with replacement
    out = np.empty(reps)
    for i in range(reps):
        out[i] = stat(np.concatenate([copies[j][i] for j in pick[i]])[None, :])[0]
    return out


def statistic_fn(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Row-wise statistic over a 2-D array: ``median``, ``mean`` or ``pNN`` (a percentile)."""
    if name == "median":
        return lambda m: np.median(m, axis=1)
    if name == "mean":
        return lambda m: np.mean(m, axis=1)
    if name.startswith("p") and name[1:].replace(".", "", 1).isdigit():
        q = float(name[1:])
        return lambda m: np.percentile(m, q, axis=1)
    raise ValueError(f"unknown statistic {name!r} (median, mean, pNN)")


def bootstrap_ratio_ci(a_runs: Sequence[Sequence[float]], b_runs: Sequence[Sequence[float]], statistic: str = "median",
                       confidence: float = CONFIDENCE, reps: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> Interval:
    """Δ% of ``statistic`` of side ``b`` against side ``a`` (pooled samples) with a percentile bootstrap interval.

    Each side is a list of runs (each a list of per-iteration samples in time order). Runs are resampled with
    replacement when a side has more than one; within a run, blocks of ⌈√n⌉ consecutive samples are resampled,
    which keeps the dependence between neighbouring iterations (a stall, a frequency change) inside the resamples.
    """
    a = [np.asarray(r, dtype=np.float64) for r in a_runs if len(r)]
    b = [np.asarray(r, dtype=np.float64) for r in b_runs if len(r)]
    if not a or not b:
        raise ValueError("bootstrap_ratio_ci needs samples on each side")
    stat = statistic_fn(statistic)
    rng = np.random.default_rng(seed)
    sa = _side_statistic(a, stat, reps, rng)
    sb = _side_statistic(b, stat, reps, rng)
    point_a = float(stat(np.concatenate(a)[None, :])[0])
    point_b = float(stat(np.concatenate(b)[None, :])[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = 100.0 * (sb / sa - 1.0)
    alpha = 1.0 - confidence
    lo, hi = np.nanpercentile(ratios, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    estimate = 100.0 * (point_b / point_a - 1.0) if point_a > 0 else math.inf
    return Interval(estimate, float(lo), float(hi), confidence,
                    f"block bootstrap of the {statistic} ({reps} resamples, seed {seed})")


def tail_samples_needed(q: float, beyond: int = 10) -> int:
    """Samples a run needs so that at least ``beyond`` of them lie past percentile ``q`` (MLPerf's attitude)."""
    return math.ceil(beyond / (1.0 - q / 100.0))
