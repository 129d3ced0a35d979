"""Nothing is lost on faults: signals, same-second starts, full or read-only output dirs. Real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medbench.results.load import load_dir

LONG = ["imgsz=64", "iters.warmup=1", "iters.iters=1000000", "iters.max_iters=1000000"]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "medbench", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def signal_when_timing(proc: subprocess.Popen, signum: int, timeout: float = 240) -> tuple[str, str]:
    """Send ``signum`` once the timed loop has started (its log line), return (stdout, stderr) after exit."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "timing " in line:
            time.sleep(0.5)  # inside the loop
            proc.send_signal(signum)
            break
    else:
        proc.kill()
    out, err = proc.communicate(timeout=120)
    return out, "".join(seen) + err


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_on_single_run_records_interrupted(tmp_path: Path, signum: int, code: int) -> None:
    proc = start([*LONG, "hydra.run.dir=run"], tmp_path)
    _, err = signal_when_timing(proc, signum)
    assert proc.returncode == code, err[-3000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "interrupted" and record["error"]["type"] == "interrupted"
    assert signal.Signals(signum).name in record["error"]["message"]
    assert record["provenance"]["ended_at"] and record["env"] is not None
    assert "Traceback" not in err
    last = [ln for ln in err.splitlines() if ln.startswith("medbench: error")]
    assert len(last) == 1 and "interrupted" in last[0], err[-2000:]


def test_sigterm_in_sweep_writes_interrupted_not_run_and_tables(tmp_path: Path) -> None:
    proc = start(["-m", "model=baseline,ghost", *LONG, "hydra.sweep.dir=sweep"], tmp_path)
    _, err = signal_when_timing(proc, signal.SIGTERM)
    assert proc.returncode == 143, err[-3000:]
    sweep = tmp_path / "sweep"
    assert json.loads((sweep / "0" / "result.json").read_text())["status"] == "interrupted"
    assert (sweep / "comparison.csv").stat().st_size > 0
    found = load_dir(sweep)
    statuses = sorted(r["status"] for r in found.records)
    assert statuses == ["interrupted", "not_run"], statuses
    not_run = [r for r in found.crashed if r["status"] == "not_run"][0]
    assert "model=ghost" in not_run.metadata.overrides and not_run.run_dir == str(sweep / "1")
    assert "Traceback" not in err
    assert sum(ln.startswith("medbench: error") for ln in err.splitlines()) == 1, err[-2000:]


def test_sweeps_started_together_get_their_own_dirs(tmp_path: Path) -> None:
    args = ["-m", "model=baseline", "imgsz=64", "iters=quick", "iters.warmup=0", "iters.iters=2"]
    procs = [start(args, tmp_path) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    sweeps = sorted((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 2, sweeps
    for sweep in sweeps:
        assert (sweep / "0" / "result.json").is_file() and (sweep / "sweep_plan.json").is_file()


def test_existing_result_is_never_overwritten(tmp_path: Path, medbench_cli) -> None:
    args = ["imgsz=64", "iters=quick", "iters.warmup=0", "iters.iters=2", "hydra.run.dir=run"]
    assert medbench_cli(*args).returncode == 0
    first = (tmp_path / "run" / "result.json").read_text()
    out = medbench_cli(*args)
    assert out.returncode == 0, out.stderr
    kept = list((tmp_path / "run").glob("result.json.previous-*"))
    assert len(kept) == 1 and kept[0].read_text() == first
    assert "kept it as" in out.stderr


def _mount_tmpfs(path: Path, size: str, ro: bool = False) -> None:
    path.mkdir()
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root in a namespace that allows mounts")


@pytest.fixture
def mounts():
    done: list[Path] = []
    yield done
    for path in done:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.parametrize("kind", ["full", "readonly"])
def test_full_or_read_only_output_dir_is_one_line(tmp_path: Path, medbench_cli, mounts, kind: str) -> None:
    out_dir = tmp_path / "out"
    _mount_tmpfs(out_dir, "16k" if kind == "full" else "1m", ro=kind == "readonly")
    mounts.append(out_dir)
    res = medbench_cli("imgsz=64", "iters=quick", "iters.warmup=0", "iters.iters=400", f"hydra.run.dir={out_dir}/run")
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("medbench: error")]
    assert len(errors) == 1 and "cannot write" in errors[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "Logging error" not in res.stderr
    leftovers = [p for p in out_dir.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or p.stat().st_size == 0)]
    assert not [p for p in leftovers if p.suffix == ".tmp"], leftovers
    assert not (out_dir / "run" / "result.json").exists()


def test_full_disk_in_a_sweep_never_claims_tables(tmp_path: Path, medbench_cli, mounts) -> None:
    out_dir = tmp_path / "out"
    _mount_tmpfs(out_dir, "24k")
    mounts.append(out_dir)
    res = medbench_cli("-m", "model=baseline", "imgsz=64", "iters=quick", "iters.warmup=0", "iters.iters=400",
                       f"hydra.sweep.dir={out_dir}/sweep")
    assert res.returncode != 0
    assert "tables of the points that ran are in" not in res.stderr and "comparison tables →" not in res.stderr
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert not [p for p in out_dir.rglob("*.tmp")]
    errors = [ln for ln in res.stderr.splitlines() if "medbench: error" in ln]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "no tables written" in errors[0], res.stderr


def test_isolated_point_stops_when_the_sweep_process_is_killed(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import psutil

    proc = start(["-m", "launcher=isolated", "device=cpu", *LONG, "hydra.sweep.dir=sweep"], tmp_path)
    sweep = tmp_path / "sweep"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        logs = list(sweep.glob(".submitit/*/*_log.err"))
        if logs and "timing " in logs[0].read_text(errors="replace"):
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the isolated point never started timing")
    proc.kill()  # SIGKILL: no clean-up in the sweep process at all
    proc.communicate(timeout=60)
    result = sweep / "0" / "result.json"
    deadline = time.monotonic() + 90
    while not result.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    record = json.loads(result.read_text())
    assert record["status"] == "interrupted"
    pid = record["provenance"]["pid"]
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_kill_9_of_an_isolated_worker_is_a_crash_with_a_useful_cause(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import re

    proc = start(["-m", "launcher=isolated", "device=cpu", *LONG, "hydra.sweep.dir=sweep"], tmp_path)
    sweep = tmp_path / "sweep"
    deadline = time.monotonic() + 240
    pid = None
    while time.monotonic() < deadline and pid is None:
        logs = list(sweep.glob(".submitit/*/*_log.err"))
        text = logs[0].read_text(errors="replace") if logs else ""
        m = re.search(r"medbench: point process pid (\d+)", text)
        pid = int(m.group(1)) if m and "timing " in text else None
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    assert pid, "the isolated point never started timing"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-3000:]
    crashed = load_dir(sweep).crashed
    assert [r["status"] for r in crashed] == ["crashed"]
    message = crashed[0]["error"]["message"]
    assert crashed[0]["error"]["type"] in ("crash", "oom")
    assert "Loading pickle" not in message, message
    assert ("died without a word" in message and "timing baseline" in message) or "Killed process" in message, message


def test_oom_evidence_types_the_point(tmp_path: Path) -> None:
    from medbench.results.crashes import crashed_record, oom_kills
    from medbench.results.store import error_block

    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    assert oom_kills(events) == 2
    run_dir = tmp_path / "sweep" / "0"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- batch=64\n")
    (run_dir / "crash.json").write_text(json.dumps({"type": "oom", "message": "killed: out of memory (oom_kill 1 -> 2)"}))
    record = crashed_record(run_dir, tmp_path / "sweep")
    assert record["error"]["type"] == "oom" and "out of memory" in record["error"]["message"]
    assert error_block(MemoryError())["type"] == "oom"
    assert error_block(RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"))["type"] == "oom"
