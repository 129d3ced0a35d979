"""SIGTERM (what Slurm and CI send) and SIGINT (Ctrl-C) end a run the same way: as an ``Interrupted``.

``Interrupted`` is a ``KeyboardInterrupt``, so it passes through ``except Exception`` (Hydra's job runner,
the benchmark's own error handling) up to the runner, which records the running point as ``interrupted``,
and on to ``medbench.cli.app.main``, which writes the tables of what ran, prints one line and exits
128 + signal number (130 for SIGINT, 143 for SIGTERM). A second signal during that clean-up is ignored
for SIGTERM and ends the process at once for SIGINT.
"""

from __future__ import annotations

import signal
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal; ``exit_code`` is the shell's 128 + signum."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """130 for a plain KeyboardInterrupt, 128 + signum for an ``Interrupted``."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def _raise(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up (record, tables) finish
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C still ends it at once
    raise Interrupted(signum)


def install() -> None:
    """Turn SIGTERM and SIGINT into ``Interrupted`` (main thread only; a no-op elsewhere)."""
    try:
        signal.signal(signal.SIGTERM, _raise)
        signal.signal(signal.SIGINT, _raise)
    except ValueError:  # not the main thread
        pass
