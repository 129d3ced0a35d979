"""Statistics on raw per-iteration samples: pure functions, no I/O.

Medians and percentiles are the headline (robust to the one-off stalls a shared machine produces);
mean/std are kept because readers expect them. Noise is judged like torch.utils.benchmark: the IQR
relative to the median, with a warning above 10% and a loud one above 25%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medbench.analysis.intervals import median_ci

NOISE_WARN = 0.10  # IQR/median above this: the number is noisy
NOISE_LOUD = 0.25  # above this: the number is not to be trusted


def latency_stats(samples_ms: Sequence[float]) -> dict[str, Any]:
    """The ``latency`` block (per batch, milliseconds); ``p50_ci95_ms`` is the median's 95% interval."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "mean_ms": float(a.mean()),
        "median_ms": float(p50),
        "p50_ms": float(p50),
        "p50_ci95_ms": _median_ci95(a),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
    }


def _median_ci95(a: np.ndarray) -> list[float] | None:
    """Distribution-free 95% interval of the median (``intervals.median_ci``); None below 6 samples."""
    ci = median_ci(a, 0.95)
    return None if ci is None else [ci.lo, ci.hi]


def fps(latency_ms: float | None, batch: int) -> float | None:
    """Images per second for one batch taking ``latency_ms``."""
    if latency_ms is None or latency_ms <= 0 or not math.isfinite(latency_ms):
        return None
    return 1000.0 / latency_ms * batch


def throughput_stats(latency: dict[str, float], batch: int) -> dict[str, float | None]:
    """The ``throughput`` block: images/s from mean and median latency."""
    return {"fps_mean": fps(latency["mean_ms"], batch), "fps_p50": fps(latency["p50_ms"], batch)}


def noise_stats(samples_ms: Sequence[float]) -> dict[str, object]:
    """IQR, IQR/median and a warning string (None when quiet) that travels with the result."""
    a = np.asarray(samples_ms, dtype=np.float64)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    iqr = float(q3 - q1)
    ratio = iqr / median if median > 0 else float("inf")
    warning = None
    if ratio > NOISE_LOUD:
        warning = f"VERY NOISY: IQR is {ratio:.0%} of the median (> {NOISE_LOUD:.0%}); do not trust small differences"
    elif ratio > NOISE_WARN:
        warning = f"noisy: IQR is {ratio:.0%} of the median (> {NOISE_WARN:.0%})"
    if a.size < 10:
        note = f"only {a.size} samples: percentiles are rough"
        warning = f"{warning}; {note}" if warning else note
    return {"iqr_ms": iqr, "iqr_over_median": float(ratio), "ci95_halfwidth_pct": ci_halfwidth_pct(a),
            "warning": warning}


def ci_halfwidth_pct(samples: Sequence[float], level: float = 0.95) -> float | None:
    """The larger side of the median's interval (``intervals.median_ci``), in percent of the median (None when
    there is no interval)."""
    ci = median_ci(samples, level)
    if ci is None or ci.estimate <= 0:
        return None
    return max(ci.estimate - ci.lo, ci.hi - ci.estimate) / ci.estimate * 100.0


def summarize(samples_ms: Sequence[float], batch: int) -> dict[str, dict]:
    """All derived blocks of a result from raw samples: latency, throughput and noise."""
    latency = latency_stats(samples_ms)
    return {"latency": latency, "throughput": throughput_stats(latency, batch), "noise": noise_stats(samples_ms)}


# --- significance -------------------------------------------------------------------------------------------------
# Used by medbench.analysis.compare: a latency change counts only when the two sample sets differ beyond noise. Mann–Whitney U
# (scipy.stats) makes no normality assumption (latencies are skewed, with stalls in the tail) and compares whole distributions.

SIGNIFICANCE_ALPHA = 0.01  # two-sided p below this: the change is real (asv uses 0.002; 0.01 suits 30–300 samples)


def significance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of ``scipy.stats.mannwhitneyu`` (exact for small samples without ties, else the normal
    approximation with tie and continuity correction). With 3 vs 3 samples the smallest possible p is 0.1: such a
    change is never significant at ``SIGNIFICANCE_ALPHA``."""
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0 or np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("significance needs finite samples on both sides")
    if np.all(x == x[0]) and np.all(y == x[0]):
        return 1.0  # identical constants: nothing to test (scipy would return NaN)
    return float(mannwhitneyu(x, y, alternative="two-sided", method="auto").pvalue)
