"""Statistics are pure functions: checked against numpy and hand-computed values."""

import math

import numpy as np
import pytest

from medbench.analysis import stats


def test_latency_stats_match_numpy():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(3, 0.2, 500).tolist()
    lat = stats.latency_stats(samples)
    assert lat["mean_ms"] == pytest.approx(np.mean(samples))
    assert lat["median_ms"] == lat["p50_ms"] == pytest.approx(np.median(samples))
    assert lat["p95_ms"] == pytest.approx(np.percentile(samples, 95))
    assert lat["p99_ms"] == pytest.approx(np.percentile(samples, 99))
    assert lat["std_ms"] == pytest.approx(np.std(samples, ddof=1))
    assert (lat["min_ms"], lat["max_ms"]) == (min(samples), max(samples))


def test_fps_is_images_per_second():
    assert stats.fps(10.0, 1) == pytest.approx(100.0)
    assert stats.fps(20.0, 8) == pytest.approx(400.0)
    assert stats.fps(None, 1) is None and stats.fps(0.0, 1) is None
    thr = stats.throughput_stats({"mean_ms": 50.0, "p50_ms": 40.0}, 2)
    assert thr == {"fps_mean": pytest.approx(40.0), "fps_p50": pytest.approx(50.0)}


@pytest.mark.parametrize(
    ("spread", "expect"),
    [(0.0, None), (0.15, "noisy"), (0.5, "VERY NOISY")],
)
def test_noise_warning_thresholds(spread, expect):
    # 100 samples evenly spread over [10*(1-spread), 10*(1+spread)]: IQR/median = spread
    samples = np.linspace(10 * (1 - spread), 10 * (1 + spread), 101).tolist()
    noise = stats.noise_stats(samples)
    assert noise["iqr_over_median"] == pytest.approx(spread, abs=1e-9)
    if expect is None:
        assert noise["warning"] is None
    else:
        assert noise["warning"].startswith(expect)


def test_few_samples_are_flagged():
    assert "only 3 samples" in stats.noise_stats([1.0, 1.0, 1.0])["warning"]


def test_summarize_blocks():
    out = stats.summarize([10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0], batch=4)
    assert set(out) == {"latency", "throughput", "noise"}
    assert out["throughput"]["fps_mean"] == pytest.approx(400.0)
    assert out["noise"]["iqr_ms"] == 0.0 and out["noise"]["warning"] is None
    assert math.isfinite(out["latency"]["std_ms"])
