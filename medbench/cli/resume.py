"""``python -m medbench.resume <sweep_dir>``: the commands that re-run a sweep's failed, crashed, interrupted and
never-started points.

Every point without an ``ok`` result gets one command that runs exactly that point again into its own run
directory: a ``failed``/``interrupted`` record, a ``crashed`` run dir (Hydra's overrides but no result), or a
``not_run`` point of the sweep plan (``sweep_plan.json``, written when the sweep started). The sweep's own
files are never rewritten: each re-run is a one-point multirun whose sweep dir is the point's run dir, so
Hydra's ``multirun.yaml`` and the plan of the original sweep stay as they were; ``--run`` collates the whole
sweep dir at the end (the printed script ends with that command). Overrides given after ``--`` are appended
(e.g. ``hydra.launcher.timeout_min=240``).

A sweep dir is data, not a program: only task overrides of medbench's own config keys are taken from its
files, plus the launcher settings medbench itself writes (``hydra/launcher=…``, plain ``hydra.launcher.*``
resource values). Interpolations (``${…}``), ``model.trust_weights``/``model.imports``, ``hydra.job.env_set``,
any other ``hydra.*`` key and command-line options are refused with the point named. The printed script is
inert: every argument is shell-quoted and no comment or argument spans two lines.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from medbench.results.load import load_dir

# Launcher keys medbench's launchers (and hydra-submitit's) take, with plain values only.
_LAUNCHERS = ("submitit_local", "submitit_slurm", "slurm", "isolated")
_LAUNCHER_KEYS = ("timeout_min", "partition", "qos", "account", "constraint", "gpus_per_node", "gpus_per_task",
                  "cpus_per_task", "cpus_per_gpu", "mem_gb", "mem_per_gpu", "mem_per_cpu", "nodes", "tasks_per_node",
                  "array_parallelism", "comment", "exclude", "signal_delay_s", "max_num_timeout", "name")
_PLAIN_VALUE = re.compile(r"[\w.:,@/+-]*")
_REFUSED_TASK_KEYS = ("model.trust_weights", "model.imports")  # opt-ins a file may not switch on


class Refused(ValueError):
    """An override taken from a sweep dir's files that resume will not run."""


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, RecursionError):
        return None


def _task_roots() -> set[str]:
    """Top-level names a task override may set: the schema's keys and the config groups (model=, launcher=...)."""
    from medbench.config.schema import Config

    conf = Path(__file__).resolve().parents[2] / "conf"
    try:
        import medbench.conf

        conf = Path(next(iter(medbench.conf.__path__)))
    except (ImportError, StopIteration):
        pass
    groups = {p.name for p in conf.iterdir() if p.is_dir() and p.name != "hydra"} if conf.is_dir() else set()
    return {f.name for f in fields(Config)} | groups


def check_task_override(text: str, roots: set[str]) -> str:
    """A task override from a file, returned unchanged when it is safe to put on a command line, else Refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(text, str) or not text or text.startswith("-") or any(ord(c) < 32 for c in text):
        raise Refused(f"not an override: {text!r}")
    if "${" in text:
        raise Refused(f"interpolation in {text!r}")
    try:
        override = OverridesParser.create().parse_override(text)
    except Exception:
        raise Refused(f"not an override: {text!r}") from None
    key = override.get_key_element().lstrip("+~")
    if override.is_sweep_override():
        raise Refused(f"a sweep, not one point: {text!r}")
    if key.split(".")[0].split("/")[0].split("@")[0] not in roots:
        raise Refused(f"not a medbench key: {text!r}")
    if key.startswith(_REFUSED_TASK_KEYS):
        raise Refused(f"{key} is an opt-in a sweep dir may not set (add it after -- yourself)")
    return text


def check_launcher_override(text: str) -> str:
    """A Hydra override from ``hydra.yaml``: only the launcher choice and plain launcher resources pass."""
    if not isinstance(text, str) or "${" in text or any(ord(c) < 32 for c in text) or "=" not in text:
        raise Refused(f"hydra override {text!r}")
    key, value = text.split("=", 1)
    key = key.lstrip("+")
    if key == "hydra/launcher" and value in _LAUNCHERS:
        return text
    if key.startswith("hydra.launcher.") and key.removeprefix("hydra.launcher.") in _LAUNCHER_KEYS \
            and _PLAIN_VALUE.fullmatch(value):
        return text
    raise Refused(f"hydra override {text!r} (only hydra/launcher and plain hydra.launcher.* resources are re-run)")


# Hydra overrides medbench's own re-runs and sweeps set (dropped silently, resume sets its own).
_DROP = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.run.dir", "hydra.mode", "hydra.job.num", "hydra.job.id",
         "~hydra.callbacks.collate", "~hydra.callbacks.sweep_dir")


def _point(run_dir: Path | None, status: str, error: str | None, task: list[Any], hydra: list[Any],
           roots: set[str]) -> dict[str, Any]:
    point: dict[str, Any] = {"run_dir": run_dir, "status": status, "error": error, "task": [], "hydra": [],
                             "refused": None}
    try:
        point["task"] = [check_task_override(o, roots) for o in task]
        point["hydra"] = [check_launcher_override(o) for o in hydra if not str(o).startswith(_DROP)]
    except Refused as exc:
        point["refused"] = str(exc)
    return point


def points_to_rerun(sweep_dir: Path) -> list[dict[str, Any]]:
    """Points of ``sweep_dir`` without an ok result: run dir, status, checked task and launcher overrides."""
    found = load_dir(sweep_dir)
    roots = _task_roots()
    rows = [r for r in found.records if r.status != "ok"]
    points = []
    for row in rows:
        error = row.error.message if row.error else None
        if row.status == "not_run":
            run_dir = Path(row.run_dir) if row.run_dir else None
            points.append(_point(run_dir, "not_run", error, list(row.metadata.overrides), [], roots))
            if run_dir is None:
                points[-1]["refused"] = "the plan gives no run dir for this point (custom hydra.sweep.subdir)"
            continue
        if row.run_dir is None:
            continue
        run_dir = Path(row.run_dir)
        task = _yaml(run_dir / ".hydra" / "overrides.yaml")
        if not isinstance(task, list):
            task = row.metadata.overrides
        hydra_yaml = _yaml(run_dir / ".hydra" / "hydra.yaml")
        hydra_overrides = (((hydra_yaml.get("hydra") or {}).get("overrides") or {}).get("hydra") or []
                           if isinstance(hydra_yaml, dict) else [])
        points.append(_point(run_dir, str(row.status), error, list(task), list(hydra_overrides), roots))
    for p in points:
        if p["run_dir"] is not None and not _inside(p["run_dir"], sweep_dir):
            p["refused"] = p["refused"] or f"run dir {p['run_dir']} is outside the sweep dir"
    return sorted(points, key=lambda p: str(p["run_dir"]))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def rerun_command(point: dict[str, Any], sweep_dir: Path, extra: list[str], python: str = "python") -> list[str]:
    """The argv that re-runs one point into its own run dir as a one-point multirun (same launcher).

    The point's run dir is that multirun's sweep dir (subdir ``.``), so Hydra writes its ``multirun.yaml`` there
    and the original sweep's files stay untouched; the end-of-sweep callbacks are off (resume collates after)."""
    return [python, "-m", "medbench", "-m", *point["task"], *point["hydra"], *extra,
            f"hydra.sweep.dir={point['run_dir']}", "hydra.sweep.subdir=.",
            "~hydra.callbacks.collate", "~hydra.callbacks.sweep_dir"]


def sh_quote(arg: str) -> str:
    """``shlex.quote``, but control characters (a newline in a dir name) become ``$'\\n'`` escapes: one line."""
    if not any(ord(c) < 32 or ord(c) == 127 for c in arg):
        return shlex.quote(arg)
    return "$'" + "".join(c if 32 <= ord(c) < 127 and c not in "\\'" else f"\\x{ord(c):02x}" if ord(c) < 128
                          else c for c in arg) + "'"


def comment(text: Any) -> str:
    """A shell comment that cannot end early: control characters shown escaped."""
    return "# " + "".join(c if ord(c) >= 32 and ord(c) != 127 else repr(c)[1:-1] for c in str(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medbench resume",
                                     description="Print the commands that re-run a sweep's failed, crashed, "
                                                 "interrupted and never-started points (--run runs them), then "
                                                 "collate the sweep again. Overrides after -- are added to every "
                                                 "re-run (e.g. -- iters=quick). Also: python -m medbench.resume.",
                                     epilog="Exit status: 0 with commands printed (or all re-runs ok), "
                                            "1 when nothing needs re-running, a point was refused or a re-run "
                                            "failed, 2 for a missing directory.")
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (outputs/multirun/<stamp>)")
    parser.add_argument("--run", action="store_true", help="run the commands one after the other")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser.usage = "medbench resume [-h] [--run] sweep_dir [-- override ...]"
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"medbench resume: error: not a directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    points = points_to_rerun(args.sweep_dir)
    if not points:
        print(comment(f"nothing to re-run: every point in {args.sweep_dir} has an ok result"))
        return 1
    python = sys.executable if args.run else "python"
    runnable = [p for p in points if not p["refused"]]
    print(comment(f"{len(runnable)} point(s) of {args.sweep_dir} to re-run, then the sweep is collated again"))
    commands = []
    for point in points:
        print(comment(f"{point['status']}: {point['run_dir']}: {point['error'] or ''}"))
        if point["refused"]:
            print(comment(f"refused, not re-run: {point['refused']}"))
            print(f"medbench resume: refused {point['run_dir']}: {point['refused']}".replace("\n", "\\n"),
                  file=sys.stderr)
            continue
        cmd = rerun_command(point, args.sweep_dir, extra, python)
        commands.append(cmd)
        print(" ".join(sh_quote(a) for a in cmd))
    collate = [python, "-m", "medbench.collate", str(args.sweep_dir)]
    print(" ".join(sh_quote(a) for a in collate))
    refused = len(points) - len(runnable)
    if not args.run:
        return 1 if refused else 0
    failed = sum(subprocess.run(cmd).returncode != 0 for cmd in commands)
    subprocess.run(collate)
    still = [p for p in points_to_rerun(args.sweep_dir) if not p["refused"]]  # a re-run point that failed again
    return 1 if failed or refused or still else 0


if __name__ == "__main__":
    sys.exit(main())
