"""The timing engine on real callables: counts, warm-up exclusion, adaptive stopping, memory."""

import time

import pytest
import torch

from medbench.run.timing import measure, peak_rss_mb, time_once


class Counter:
    def __init__(self, sleep_s: float = 0.0):
        self.calls = 0
        self.sleep_s = sleep_s

    def __call__(self):
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)


def test_counts_and_warmup_excluded():
    fn = Counter()
    marks = []
    m = measure(fn, warmup=7, iters=25, after_warmup=lambda: marks.append(fn.calls))
    assert len(m.samples_ms) == 25
    assert fn.calls == 32
    assert marks == [7]  # after_warmup ran once, exactly between warm-up and the timed loop
    assert m.warmup == 7 and m.timer == "perf_counter" and m.pipelined_ms is None


def test_samples_are_milliseconds():
    m = measure(Counter(sleep_s=0.005), warmup=1, iters=5)
    assert all(4.5 <= s < 200 for s in m.samples_ms), m.samples_ms


def test_min_time_extends_past_iters_and_respects_cap():
    fn = Counter(sleep_s=0.002)
    m = measure(fn, warmup=0, iters=3, min_time_s=0.05)
    assert len(m.samples_ms) > 3
    assert sum(m.samples_ms) >= 50 or len(m.samples_ms) == 30  # stopped by time, or by the default cap (10 x iters)
    capped = measure(Counter(sleep_s=0.002), warmup=0, iters=3, min_time_s=10.0, max_iters=6)
    assert len(capped.samples_ms) == 6


def test_cpu_memory_block():
    m = measure(lambda: torch.ones(10), iters=3, warmup=0)
    assert m.memory["peak_gpu_mem_MB"] is None and m.memory["allocated_MB"] is None
    assert m.memory["peak_rss_MB"] == pytest.approx(peak_rss_mb(), rel=0.5)
    assert m.memory["peak_rss_MB"] > 10


def test_progress_reports_on_long_loops(monkeypatch):
    import medbench.run.timing as timing

    monkeypatch.setattr(timing, "PROGRESS_EVERY_S", 0.0)
    seen = []
    measure(Counter(), warmup=0, iters=4, progress=lambda done, planned, last: seen.append((done, planned)))
    assert seen[-1] == (4, 4) and len(seen) == 4


def test_time_once_returns_value_and_duration():
    value, ms = time_once(lambda: time.sleep(0.01) or 42, torch.device("cpu"))
    assert value == 42 and ms >= 9.5


@pytest.mark.gpu
def test_cuda_engine_uses_events_and_pipelines():
    x = torch.randn(256, 256, device="cuda")
    m = measure(lambda: x @ x, device="cuda:0", warmup=3, iters=20)
    assert m.timer == "cuda_event" and len(m.samples_ms) == 20
    assert m.pipelined_ms is not None and m.pipelined_ms > 0 and m.pipelined_iters == 20  # min(20, 100, ~2 s)
    assert len(m.host_samples_ms) == 20
    assert m.memory["peak_gpu_mem_MB"] is not None and m.memory["reserved_MB"] >= m.memory["allocated_MB"]


def test_pipelined_pass_is_capped_by_calls_and_time():
    from medbench.run.timing import PIPELINED_MAX_CALLS, pipelined_count

    assert pipelined_count(None, []) == 0
    assert pipelined_count(None, [1.0] * 30) == 30  # as many as were timed ...
    assert pipelined_count(None, [1.0] * 3000) == PIPELINED_MAX_CALLS  # ... at most 100 ...
    assert pipelined_count(None, [500.0] * 50) == 4  # ... and about 2 s at the median sample
    assert pipelined_count(None, [5000.0] * 5) == 1  # at least one call
    assert pipelined_count(0, [1.0] * 30) == 0 and pipelined_count(500, [1.0] * 30) == 500  # asked: as asked


def test_after_loop_runs_between_the_loop_and_anything_else():
    fn = Counter()
    seen = []
    m = measure(fn, warmup=2, iters=5, after_warmup=lambda: seen.append(("warm", fn.calls)),
                after_loop=lambda: seen.append(("loop", fn.calls)))
    assert seen == [("warm", 2), ("loop", 7)] and fn.calls == 7
    assert m.host_samples_ms is None and m.pipelined_iters is None  # CPU: the samples are host times
    assert m.memory["working_MB"] is None and m.memory["allocated_before_MB"] is None


def test_clean_start_is_harmless_on_cpu():
    from medbench.run.timing import clean_start

    clean_start(torch.device("cpu"))


@pytest.mark.gpu
def test_cuda_engine_times_on_the_given_device_and_keeps_host_times():
    """The caller's current device stays what it was; the loop runs with ``device`` current."""
    last = torch.device("cuda", torch.cuda.device_count() - 1)
    seen = []

    def fn():
        seen.append(torch.cuda.current_device())
        return x @ x

    x = torch.randn(256, 256, device=last)
    before = torch.cuda.current_device()
    m = measure(fn, device=last, warmup=2, iters=10, pipelined_iters=0)
    assert set(seen) == {last.index} and torch.cuda.current_device() == before
    assert len(m.host_samples_ms) == len(m.samples_ms) == 10 and m.pipelined_ms is None
    assert all(h >= e * 0.9 for h, e in zip(m.host_samples_ms, m.samples_ms))  # host wraps the event pair
    assert m.memory["allocated_before_MB"] > 0 and m.memory["working_MB"] >= 0


@pytest.mark.gpu
def test_clean_start_resets_the_peak():
    from medbench.run.timing import clean_start

    dev = torch.device("cuda:0")
    big = torch.empty(64 * 2**20, dtype=torch.uint8, device=dev)
    del big
    clean_start(dev)
    assert torch.cuda.max_memory_allocated(dev) == torch.cuda.memory_allocated(dev)
    assert torch.cuda.memory_reserved(dev) < 64 * 2**20
