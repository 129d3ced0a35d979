"""``python -m medbench.resume <sweep_dir>``: the commands that re-run only a sweep's failed or crashed points.

Every point that has no ``ok`` result (status ``failed``, or ``crashed``: a run dir with Hydra's
overrides but no result.json) gets one command that runs exactly that point again, with the same
overrides and the same launcher options (``hydra/launcher=slurm``, ``hydra.launcher.*`` as first given),
into the *same* run directory (``hydra.sweep.dir`` + ``hydra.sweep.subdir``). Each re-run ends by
collating the whole sweep dir again, so ``comparison.csv`` then lists the fresh results next to the
old ones. Overrides given after ``--`` are appended (e.g. ``hydra.launcher.timeout_min=240``).
The commands are printed (a shell script); ``--run`` runs them one after the other.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from medbench.analysis.collate import load_dir

# Hydra overrides that must not be copied: the re-run sets its own sweep dir and subdir.
_DROP = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.run.dir", "hydra.mode", "hydra.job.num", "hydra.job.id")


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def points_to_rerun(sweep_dir: Path) -> list[dict[str, Any]]:
    """Failed and crashed points of ``sweep_dir``: run dir, status, task and hydra overrides."""
    found = load_dir(sweep_dir)
    rows = [r for r in found.records if r.get("status") != "ok"] + found.crashed
    points = []
    for row in rows:
        run_dir = Path(row["run_dir"])
        task = _yaml(run_dir / ".hydra" / "overrides.yaml")
        if not isinstance(task, list):
            task = (row.get("metadata") or {}).get("overrides") or row.get("overrides") or []
        hydra_yaml = _yaml(run_dir / ".hydra" / "hydra.yaml") or {}
        hydra_overrides = (((hydra_yaml.get("hydra") or {}).get("overrides") or {}).get("hydra") or []
                           if isinstance(hydra_yaml, dict) else [])
        points.append({"run_dir": run_dir, "status": row.get("status"), "error": (row.get("error") or {}).get("message"),
                       "task": [str(o) for o in task],
                       "hydra": [str(o) for o in hydra_overrides if not str(o).lstrip("+~").startswith(_DROP)]})
    return sorted(points, key=lambda p: str(p["run_dir"]))


def rerun_command(point: dict[str, Any], sweep_dir: Path, extra: list[str], python: str = "python") -> list[str]:
    """The argv that re-runs one point into its own run dir as a one-point multirun (same launcher)."""
    run_dir = Path(point["run_dir"])
    try:
        subdir = run_dir.resolve().relative_to(sweep_dir.resolve())
    except ValueError:  # a run dir outside the sweep dir (a single run): run it in place
        return [python, "-m", "medbench", *point["task"], *point["hydra"], *extra, f"hydra.run.dir={run_dir}"]
    return [python, "-m", "medbench", "-m", *point["task"], *point["hydra"], *extra,
            f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={subdir}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medbench.resume", description=__doc__.split("\n\n")[0],
                                     epilog="Exit status: 0 with commands printed (or all re-runs ok), "
                                            "1 when nothing needs re-running, 2 for a missing directory.")
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (outputs/multirun/<stamp>)")
    parser.add_argument("--run", action="store_true", help="run the commands one after the other")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser.usage = "python -m medbench.resume [-h] [--run] sweep_dir [-- override ...]"
    args = parser.parse_args(argv)
    args.extra = extra
    if not args.sweep_dir.is_dir():
        print(f"medbench.cli.resume: error: not a directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    points = points_to_rerun(args.sweep_dir)
    if not points:
        print(f"# nothing to re-run: every point in {args.sweep_dir} has an ok result")
        return 1
    python = sys.executable if args.run else "python"
    commands = [rerun_command(p, args.sweep_dir, args.extra, python) for p in points]
    print(f"# {len(points)} point(s) of {args.sweep_dir} to re-run; each re-collates the sweep dir when done")
    for point, cmd in zip(points, commands):
        print(f"# {point['status']}: {point['run_dir']}: {point['error'] or ''}")
        print(shlex.join(cmd))
    if not args.run:
        return 0
    failed = sum(subprocess.run(cmd).returncode != 0 for cmd in commands)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
