"""Runs that left no ``result.json``: what the collator can still say about them.

A sweep point killed at its time limit, OOM-killed or segfaulted never wrote its record, but Hydra
wrote ``.hydra/overrides.yaml`` (and ``config.yaml``) into its run dir and submitit kept the job's
logs. ``crashed_record`` turns that into a ``Record`` (``record.crashed``) with ``status: crashed``, the setting,
the submitit/Slurm job id and how the job died, so the tables list the point instead of losing it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from medbench.results.record import Record, crashed, not_run


# What a dead job's submitit/Slurm stderr log says about how it died: (pattern, error.type, message).
_DEATHS = [
    (re.compile(r"DUE TO TIME LIMIT|time limit is near"), "timeout", "killed at its time limit"),
    (re.compile(r"oom[-_ ]kill|Out Of Memory|OUT_OF_MEMORY|OutOfMemoryError", re.I), "oom", "killed: out of memory"),
    (re.compile(r"DUE TO PREEMPTION"), "crash", "preempted"),
    (re.compile(r"CANCELLED AT"), "crash", "cancelled"),
    (re.compile(r"Segmentation fault|SIGSEGV|Fatal Python error|core dumped", re.I), "crash", "crashed (segfault)"),
]
_LOG_TAIL_BYTES = 20_000


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _submitit_job(run_dir: Path, root: Path) -> tuple[str | None, Path | None]:
    """The submitit job id of a run (Hydra's ``hydra.job.id``) and its log folder ``.submitit/<id>``, if any."""
    hydra_yaml = _read_yaml(run_dir / ".hydra" / "hydra.yaml") or {}
    job_id = ((hydra_yaml.get("hydra") or {}).get("job") or {}).get("id") if isinstance(hydra_yaml, dict) else None
    if job_id is None or str(job_id).startswith("job_id_for_") or str(job_id) == "???":  # the basic launcher's
        return None, None
    for folder in [run_dir, *run_dir.parents]:
        candidate = folder / ".submitit" / str(job_id)
        if candidate.is_dir():
            return str(job_id), candidate
        if folder == root or folder == folder.parent:
            break
    return str(job_id), None


def _log_tail(folder: Path) -> str:
    """The end of the job's stderr log(s) in its submitit folder (task 0 first)."""
    texts = []
    for path in sorted(folder.glob("*_log.err")) + sorted(folder.glob("*_log.out")):
        try:
            with path.open("rb") as fh:
                fh.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
                texts.append(fh.read().decode("utf-8", "replace"))
        except OSError:
            continue
    return "\n".join(texts)


# submitit's own bookkeeping lines: never "the cause" of a death
_BOOKKEEPING = re.compile(r"^submitit (INFO|DEBUG)|Loading pickle|Starting with JobEnvironment|Job completed|"
                          r"Exiting after successful completion")
_POINT_PID = re.compile(r"medbench: point process pid (\d+)")


def _death(tail: str) -> tuple[str, str] | None:
    """(error.type, message) from a dead job's log tail; the matching log line is quoted."""
    for pattern, kind, what in _DEATHS:
        hits = [ln.strip() for ln in tail.splitlines() if pattern.search(ln)]
        if hits:
            return kind, f"{what}: {hits[-1][:200]}"
    pids = _POINT_PID.findall(tail)
    kernel = kernel_oom_kill(int(pids[-1])) if pids else None
    if kernel:
        return "oom", f"killed by the kernel's OOM killer: {kernel[:200]}"
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and not _BOOKKEEPING.search(ln.strip())]
    errors = [ln for ln in lines if re.search(r"error|exception|killed|signal", ln, re.I)]
    if errors:
        return "crash", f"last error in its log: {errors[-1][:200]}"
    last = f"; last output: {lines[-1][:160]}" if lines else ""
    return "crash", ("died without a word (no traceback: a SIGKILL from outside, or an OOM kill the kernel log does "
                     f"not show here){last}")


def oom_kills(events: Path | None = None) -> int | None:
    """The ``oom_kill`` counter of this process's memory cgroup (v2 ``memory.events``, v1 ``memory.oom_control``)."""
    candidates = [events] if events is not None else []
    if events is None:
        try:
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                hier, _, path = line.partition(":")[2].partition(":")
                if hier == "":
                    candidates.append(Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events")
                elif "memory" in hier.split(","):
                    candidates.append(Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control")
        except OSError:
            return None
    for path in candidates:
        try:
            m = re.search(r"^oom_kill (\d+)", path.read_text(), re.M)
        except OSError:
            continue
        if m:
            return int(m.group(1))
    return None


def kernel_oom_kill(pid: int) -> str | None:
    """The kernel log's line about OOM-killing ``pid`` (``dmesg``; None when absent or not readable)."""
    import subprocess

    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    hits = [ln.strip() for ln in out.stdout.splitlines()
            if re.search(rf"(Killed process|oom-kill:.*pid=){pid}\b", ln) or re.search(rf"Killed process {pid} ", ln)]
    return hits[-1] if hits else None


DEATH_FILE = "crash.json"  # the launcher's verdict on a dead point (oom from the cgroup counter), beside .hydra/


def _death_file(run_dir: Path) -> tuple[str, str] | None:
    import json

    try:
        data = json.loads((run_dir / DEATH_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("type") in ("oom", "timeout", "crash") and isinstance(data.get("message"), str):
        return data["type"], data["message"][:300]
    return None


def crashed_record(run_dir: Path, root: Path | None = None) -> Record:
    """A run dir with Hydra's overrides but no result.json: the job died before writing.

    The setting comes from ``.hydra/config.yaml`` (else the overrides); how the job died from the end of
    its submitit log (``.submitit/<job id>/*_log.err``: Slurm's "CANCELLED ... DUE TO TIME LIMIT", an OOM
    kill, a segfault), with the Slurm/submitit job id, so the table says why and where to look.
    """
    overrides = _read_yaml(run_dir / ".hydra" / "overrides.yaml") or []
    overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    config = _read_yaml(run_dir / ".hydra" / "config.yaml")
    config = config if isinstance(config, dict) else {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    runtime = config.get("runtime") if isinstance(config.get("runtime"), dict) else {}
    job_id, folder = _submitit_job(run_dir, root or run_dir.parent)
    death = _death_file(run_dir) or (_death(_log_tail(folder)) if folder is not None else None)
    kind, message = death or ("crash", "killed, timed out or crashed")
    where = f" (job {job_id}, log {folder})" if folder is not None else ""  # no submitit: Hydra's job number only
    return crashed({"type": kind, "message": f"no result.json: {message}{where}"}, run_dir=str(run_dir),
                   provenance={"submitit_job_id": job_id, "submitit_log_dir": str(folder) if folder else None,
                               "slurm_job_id": job_id if folder is not None and _is_slurm(folder, str(job_id)) else None},
                   metadata={"model_name": _plain(model.get("name")) or values.get("model.name", values.get("model")),
                             "imgsz": _plain(config.get("imgsz")) or values.get("imgsz"),
                             "batch": _plain(config.get("batch")) or values.get("batch"),
                             "device": _plain(config.get("device")) or values.get("device"),
                             "precision": _plain(runtime.get("precision")) or values.get("runtime.precision"),
                             "overrides": overrides})


def _plain(value: Any) -> Any:
    """A value from an unresolved ``.hydra/config.yaml``: interpolations (``${...}``) count as unknown."""
    return None if isinstance(value, str) and "${" in value else value


def _is_slurm(folder: Path, job_id: str) -> bool:
    """Whether submitit's job folder belongs to a Slurm job (its sbatch script is there or at the array's folder)."""
    array = job_id.split("_")[0]
    return (folder / f"{job_id}_submission.sh").exists() or (folder.parent / array / f"{array}_submission.sh").exists()


# ------------------------------------------------------------------------------ result files and never-started points

DEFAULT_RESULT_FILE = "result.json"


def result_file_of(run_dir: Path) -> str:
    """The record's file name in ``run_dir``: ``result_file`` from the run's ``.hydra/config.yaml`` when it is a
    plain file name (``-m result_file=out.json``), else ``result.json``."""
    config = _read_yaml(Path(run_dir) / ".hydra" / "config.yaml")
    name = config.get("result_file") if isinstance(config, dict) else None
    if isinstance(name, str) and name and name not in (".", "..") and "/" not in name and "\\" not in name \
            and "${" not in name:
        return name
    return DEFAULT_RESULT_FILE


def find_result_files(root: Path) -> list[Path]:
    """Every record file below ``root``: each ``result.json`` plus, for run dirs whose config names another
    ``result_file``, that file. Each real file once (symlinked folders are not followed)."""
    root = Path(root)
    found = {p for p in root.rglob(DEFAULT_RESULT_FILE)}
    for overrides in root.rglob(".hydra/config.yaml"):
        run_dir = overrides.parent.parent
        name = result_file_of(run_dir)
        if name != DEFAULT_RESULT_FILE and (run_dir / name).exists():
            found.add(run_dir / name)
    return sorted(found)


def not_run_records(sweep_dir: Path) -> list[Record]:
    """Points of the sweep plan (``sweep_plan.json``, written when the sweep started) that never started:
    no run dir with Hydra's ``.hydra/overrides.yaml`` for them. One record each, ``status: not_run``, with the
    planned overrides and the run dir the point would have had (``run_dir``; null when the subdir is unknown).
    """
    from medbench.results.plan import read_plan

    sweep_dir = Path(sweep_dir)
    plan = read_plan(sweep_dir)
    if not plan:
        return []
    started = {}
    for overrides in sweep_dir.rglob(".hydra/overrides.yaml"):
        got = _read_yaml(overrides)
        started[overrides.parent.parent.resolve()] = [str(o) for o in got] if isinstance(got, list) else None
    seen = [o for o in started.values() if o is not None]
    out = []
    for point in plan:
        run_dir = sweep_dir / point["subdir"] if point["subdir"] else None
        if run_dir is not None and run_dir.resolve() in started:
            continue
        if run_dir is None and point["overrides"] in seen:
            continue
        values = dict(o.split("=", 1) for o in point["overrides"] if "=" in o)
        out.append(not_run(point["overrides"], run_dir=str(run_dir) if run_dir else None, plan_num=point["num"],
                           message="never started (the sweep stopped before this point)",
                           model_name=values.get("model.name", values.get("model")), imgsz=values.get("imgsz"),
                           batch=values.get("batch"), device=values.get("device"),
                           precision=values.get("runtime.precision")))
    return out
