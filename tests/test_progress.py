"""The console progress of a point (terminal: one line redrawn in place; a log: sparse lines) and of a sweep."""

from __future__ import annotations

import io

from medbench.run.progress import PointProgress, clock_text, point_line
from medbench.run.timing import measure


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(tty: bool, step_s: float, warmup: int = 4, iters: int = 8) -> str:
    out, clock = io.StringIO(), FakeClock()
    bar = PointProgress("ghost", warmup, iters, stream=out, tty=tty, clock=clock)
    for k in range(1, warmup + 1):
        clock.t += step_s
        bar.warmup(k, warmup)
    for k in range(1, iters + 1):
        clock.t += step_s
        bar.timed(k, iters, step_s * 1e3)
    bar.finish(iters)
    bar.close()
    return out.getvalue()


def test_terminal_line_is_redrawn_in_place_and_ends_as_one_line():
    text = _run(tty=True, step_s=1.0)
    assert text.count("\n") == 1 and text.endswith("\n")  # one finished line
    frames = text.split("\r")[1:]
    assert "warm-up" in frames[0] and "timed" in frames[-1] and "8/8" in frames[-1] and "done in 0:12" in frames[-1]
    assert any("ETA 0:06" in f for f in frames if "timed" in f and " 2/8" in f)  # 6 more 1-s iterations


def test_log_gets_sparse_lines_only():
    assert _run(tty=False, step_s=0.5) == ""  # 6 s in all: nothing beside the summary
    lines = _run(tty=False, step_s=10.0, iters=20).splitlines()  # 240 s: about one line per 30 s
    assert 6 <= len(lines) <= 8 and all("\r" not in line for line in lines)
    assert lines[0].startswith("  ghost warm-up 3/4 (75%)") and lines[-1].startswith("  ghost timed 17/20 (85%) · ETA 0:30")


def test_engine_calls_the_hooks_outside_samples(monkeypatch):
    import medbench.run.timing as timing

    monkeypatch.setattr(timing, "PROGRESS_EVERY_S", 0.0)
    warm, timed = [], []
    m = measure(lambda: None, warmup=3, iters=5, warmup_progress=lambda d, p: warm.append((d, p)),
                progress=lambda d, p, ms: timed.append(d))
    assert warm == [(1, 3), (2, 3), (3, 3)] and timed == [1, 2, 3, 4, 5] and len(m.samples_ms) == 5


def test_point_line_and_clock():
    assert point_line(2, ["model=ghost", "imgsz=320"], total=4) == "point 2/4 model=ghost imgsz=320"
    assert point_line(1, [], total=None).startswith("point 1 ")
    assert clock_text(65) == "1:05" and clock_text(3725) == "1:02:05"


def test_a_long_run_in_a_log_stays_short():
    lines = _run(tty=False, step_s=10.0, warmup=50, iters=300).splitlines()  # ~58 min: a line per 10% step at most
    pct = {phase: [int(line.split("(")[1].split("%")[0]) for line in lines if f" {phase} " in line]
           for phase in ("warm-up", "timed")}
    assert pct == {"warm-up": [6, 12, 20, 30, 40, 50, 60, 70, 80, 90], "timed": [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]}
