"""Progress on the console: one line per benchmark point, and a ``point k/N`` line per sweep point.

On a terminal the point's line updates in place (``\\r``): a bar for the warm-up, then for the timed
loop, with the count and an ETA; when the loop ends the line stays as one finished line. When stderr is
not a terminal (CI logs, a submitit log file) nothing is redrawn: a plain line is written at most once every
``SPARSE_EVERY_S`` seconds and only when the phase reached a new 10% step (or ``HEARTBEAT_S`` passed without a
line), so a long run shows it is alive in at most ~10 lines a phase and a short one adds no line at all.

The timing engine calls these hooks between iterations only (never between a sample's clock reads),
at most every ``medbench.run.timing.PROGRESS_EVERY_S`` during the timed loop; a hook does a clock read
and a comparison unless it is time to draw.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

SPARSE_EVERY_S = 30.0  # not a terminal: at most one progress line this often, and only at a new 10% step ...
HEARTBEAT_S = 300.0  # ... or when this long has passed without a line
REDRAW_EVERY_S = 0.25  # a terminal: redraw the line at most this often
BAR_WIDTH = 24

_sweep_total: int | None = None  # points of the running sweep (set when the sweep starts, in its process)


def set_sweep_total(total: int | None) -> None:
    """Remember how many points the sweep that is starting has (for ``point k/N``)."""
    global _sweep_total
    _sweep_total = total


def point_name(number: int, total: int | None = None) -> str:
    """``point 2/4`` (``number`` counts from 1; ``/N`` only when the sweep's total is known)."""
    total = _sweep_total if total is None else total
    return f"point {number}/{total}" if total else f"point {number}"


def point_line(number: int, overrides: Sequence[str], total: int | None = None) -> str:
    """``point 2/4 model=ghost imgsz=320``: the line that starts a sweep point."""
    return f"{point_name(number, total)} {' '.join(overrides) or '(the defaults)'}"


def clock_text(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class PointProgress:
    """Progress of one point's warm-up and timed loop; ``warmup`` and ``timed`` are the engine's hooks."""

    def __init__(self, label: str, warmup: int, iters: int, *, stream: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.planned_warmup, self.planned = label, warmup, iters
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.clock = clock
        self.started = clock()
        self.timed_started: float | None = None
        self.last_draw = self.started
        self.drawn = False  # a terminal line is open (no newline yet)
        self.done = 0
        self.step = (None, -1)  # (phase, 10% step) of the last plain line

    def warmup(self, done: int, planned: int) -> None:
        """After warm-up iteration ``done`` of ``planned``."""
        now = self.clock()
        last = done >= planned
        if last:
            self.timed_started = now  # the timed loop starts right after the last warm-up iteration
        if not (self._due(now, "warm-up", done, planned) or (self.tty and last)):
            return
        pace = (now - self.started) / max(done, 1)
        eta = pace * (planned - done + self.planned)  # the timed loop at the warm-up's pace
        self._draw("warm-up", done, planned, eta, now, final=False)

    def timed(self, done: int, planned: int, last_ms: float) -> None:
        """During the timed loop (the engine calls this every ``PROGRESS_EVERY_S``): ``done`` of ``planned``."""
        now = self.clock()
        if self.timed_started is None:
            self.timed_started = now - last_ms / 1e3 * done  # first call: estimate the loop's start
        self.done, self.planned = done, max(planned, done)
        if not self._due(now, "timed", done, self.planned):
            return
        pace = (now - self.timed_started) / max(done, 1)
        self._draw("timed", done, self.planned, pace * (self.planned - done), now, final=False,
                   extra=f"last {last_ms:.2f} ms")

    def _due(self, now: float, phase: str, done: int, planned: int) -> bool:
        """Time to draw? A terminal: every ``REDRAW_EVERY_S``. A log: ``SPARSE_EVERY_S`` apart and at a new 10% step
        of the phase (at most ~10 lines a phase), or after ``HEARTBEAT_S`` without one."""
        since = now - self.last_draw
        if self.tty:
            return since >= REDRAW_EVERY_S
        if done >= planned:  # the phase's end: the next phase's (or the summary's) lines follow at once
            return False
        step = (phase, int(10 * done / planned))
        return since >= SPARSE_EVERY_S and (step[0] != self.step[0] or step[1] > self.step[1] or since >= HEARTBEAT_S)

    def finish(self, samples: int | None = None) -> None:
        """The loop ended: a terminal keeps one finished line; a log gets nothing more (the summary follows)."""
        if not self.tty:
            return
        elapsed = self.clock() - self.started
        done = samples if samples is not None else self.done
        self._draw("timed", done, done, 0.0, self.clock(), final=True, extra=f"done in {clock_text(elapsed)}")

    def _draw(self, phase: str, done: int, planned: int, eta_s: float, now: float, *, final: bool,
              extra: str = "") -> None:
        self.last_draw = now
        pct = 100.0 * done / planned if planned else 100.0
        tail = f" · {extra}" if extra else ""
        if not self.tty:
            self.step = (phase, int(10 * done / planned) if planned else 10)
            print(f"  {self.label} {phase} {done}/{planned} ({pct:.0f}%) · ETA {clock_text(eta_s)}{tail}",
                  file=self.stream, flush=True)
            return
        filled = int(BAR_WIDTH * min(done, planned) / planned) if planned else BAR_WIDTH
        bar = "█" * filled + "░" * (BAR_WIDTH - filled)
        eta = "" if final else f" · ETA {clock_text(eta_s)}"
        line = f"\r  {self.label} {phase:<7} {bar} {done}/{planned}{eta}{tail}\x1b[K"
        self.stream.write(line + ("\n" if final else ""))
        self.stream.flush()
        self.drawn = not final

    def close(self) -> None:
        """End an open terminal line (the run failed mid-loop), so the next message starts on its own line."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
