"""The ``medbench`` console command: ``medbench <subcommand> ...`` or, without one, the Hydra run.

    medbench collate DIR            tables of a sweep directory (medbench.cli.collate)
    medbench compare --baseline A --current B   the regression gate (medbench.cli.compare)
    medbench report DIR             the sweep's HTML report (medbench.cli.html_report)
    medbench resume DIR             re-run a sweep's failed, crashed and not-run points (medbench.cli.resume)
    medbench suite ...              the built-in suites (medbench.cli.suite)
    medbench targets RESULTS        performance targets (medbench.cli.targets)
    medbench [key=value ...] [-m]   one run or a sweep (Hydra), as ``python -m medbench``

``python -m medbench.collate`` etc. run the same code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

SUBCOMMANDS = {
    "collate": ("medbench.cli.collate", "tables of a sweep directory (comparison.csv / .md)"),
    "compare": ("medbench.cli.compare", "baseline vs current: verdicts and the regression gate"),
    "report": ("medbench.cli.html_report", "the sweep's self-contained HTML report (report.html)"),
    "resume": ("medbench.cli.resume", "re-run a sweep's failed, crashed and not-run points"),
    "suite": ("medbench.cli.suite", "run the built-in benchmark suites into one suite file"),
    "targets": ("medbench.cli.targets", "check performance targets against results"),
}


def usage() -> str:
    lines = ["usage: medbench <subcommand> [options]   or   medbench [key=value ...] [-m]  (a run / sweep)", "",
             "subcommands:"]
    lines += [f"  {name:<9} {what}" for name, (_, what) in SUBCOMMANDS.items()]
    lines += ["", "`medbench <subcommand> --help` explains each; `medbench --help` shows the run's config."]
    return "\n".join(lines)


def dispatch(argv: Sequence[str], run: Callable[[], None]) -> None:
    """Run the subcommand named by ``argv[0]`` (exits with its status), else ``run()`` (the Hydra app)."""
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        sys.exit(module.main(list(argv[1:])))
    if argv and argv[0] in ("help", "commands"):
        print(usage())
        sys.exit(0)
    run()
