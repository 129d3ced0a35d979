"""Isolation and scale-out with the real engines: submitit_local, a real one-node Slurm, flock.

The Slurm tests need a running cluster: CI starts one with ``../shared/slurm/local-slurm start`` (root,
Debian's Slurm) and exports SLURM_CONF; without one they skip and say so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch

from medbench.results.load import load_dir
from medbench.run.gpu_lock import exclusive_gpu, exclusive_lock
from medbench.cli.resume import points_to_rerun, rerun_command
from conftest import QUICK

REPO = Path(__file__).resolve().parents[1]
LOCAL_SLURM = REPO.parent / "shared" / "slurm" / "local-slurm"


def _has_module(name: str) -> bool:
    try:  # find_spec of a dotted name raises when its parent package (hydra_plugins) is not installed at all
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


HAS_SUBMITIT = _has_module("hydra_plugins.hydra_submitit_launcher")
needs_submitit = pytest.mark.skipif(not HAS_SUBMITIT, reason="needs hydra-submitit-launcher (pip install -e '.[slurm]')")


# ---------------------------------------------------------------------------------------------- helpers
def _results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]


def _interval(record: dict) -> tuple[datetime, datetime]:
    prov = record["provenance"]
    return datetime.fromisoformat(prov["started_at"]), datetime.fromisoformat(prov["ended_at"])


def _assert_no_overlap(records: list[dict]) -> None:
    spans = sorted(_interval(r) for r in records)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"two points timed at the same time: {spans}"


def _only_sweep_dir(root: Path) -> Path:
    sweeps = [p for p in (root / "outputs" / "multirun").iterdir() if p.is_dir()]
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


# --------------------------------------------------------------------------------------------- presets
@needs_submitit
def test_isolated_preset_runs_points_one_at_a_time_in_their_own_process(compose_cfg):
    cfg = compose_cfg("launcher=isolated", return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("medbench_submitit.LocalLauncher")
    assert cfg.hydra.sweeper.max_batch_size == 1
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_local"


@needs_submitit
def test_slurm_preset_one_task_exclusive_with_overridable_keys(compose_cfg):
    cfg = compose_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("medbench_submitit.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min == 60 and launcher.additional_parameters.exclusive is True
    # batches of one only for the isolation preset: Slurm points run side by side on their own nodes
    assert cfg.hydra.sweeper.max_batch_size is None
    same = compose_cfg("launcher=slurm", return_hydra_config=True).hydra.launcher
    assert same._target_ == launcher._target_


def test_default_launcher_is_untouched(compose_cfg):
    cfg = compose_cfg(return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "basic"
    assert cfg.hydra.sweeper.max_batch_size is None


# --------------------------------------------------------------------------------------------- GPU lock
_HOLDER = textwrap.dedent("""
    import json, logging, sys, time
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from medbench.run.gpu_lock import exclusive_lock
    with exclusive_lock(sys.argv[1], sys.argv[2]) as held:
        start = time.time(); time.sleep(float(sys.argv[3])); end = time.time()
    print(json.dumps({"start": start, "end": end, "waited": held.waited_s}))
""")


def test_exclusive_lock_serialises_two_real_processes(tmp_path: Path):
    """Two processes asking for the same (fake) GPU key: the second waits, says so, and never overlaps."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", _HOLDER, "gpu-fake-uuid-0", str(tmp_path)]
    first = subprocess.Popen([*cmd, "2.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 30
    while not (tmp_path / "gpu-fake-uuid-0.lock").exists() or not (tmp_path / "gpu-fake-uuid-0.lock").read_text():
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = subprocess.run([*cmd, "0.1"], capture_output=True, text=True, env=env, timeout=60)
    out1, _ = first.communicate(timeout=60)
    a, b = json.loads(out1), json.loads(second.stdout)
    assert b["start"] >= a["end"], (a, b)
    assert b["waited"] > 0.5
    assert "waiting for gpu-fake-uuid-0" in second.stderr and f"pid {first.pid}" in second.stderr


def test_exclusive_lock_other_keys_do_not_wait(tmp_path: Path):
    with exclusive_lock("gpu-a", tmp_path) as a, exclusive_lock("gpu-b", tmp_path) as b:
        assert a.waited_s < 0.5 and b.waited_s < 0.5 and a.path != b.path


def test_exclusive_gpu_is_a_no_op_on_cpu(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDBENCH_LOCK_DIR", str(tmp_path / "locks"))
    with exclusive_gpu(torch.device("cpu")) as held:
        assert held is None
    assert not (tmp_path / "locks").exists()


# ------------------------------------------------------------------------------ crashed points + resume
def _fake_dead_slurm_point(sweep: Path, num: int, log: str) -> Path:
    run_dir = sweep / str(num)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- model=ghost\n- batch={num}\n- iters=quick\n")
    (run_dir / ".hydra" / "hydra.yaml").write_text(
        f"hydra:\n  overrides:\n    hydra:\n    - hydra/launcher=slurm\n    - hydra.launcher.timeout_min=1\n"
        f"    - hydra.sweep.dir=old\n  job:\n    id: '12_{num}'\n    num: {num}\n")
    (sweep / ".submitit" / "12").mkdir(parents=True, exist_ok=True)
    (sweep / ".submitit" / "12" / "12_submission.sh").write_text("#!/bin/bash\n#SBATCH --exclusive\n")
    (sweep / ".submitit" / f"12_{num}").mkdir(parents=True)
    (sweep / ".submitit" / f"12_{num}" / f"12_{num}_0_log.err").write_text(log)
    return run_dir


def test_crashed_point_names_its_death_and_slurm_job_from_the_submitit_log(tmp_path: Path):
    _fake_dead_slurm_point(tmp_path, 1, "timing...\nslurmstepd: error: *** JOB 12 ON vm CANCELLED AT "
                                        "2026-01-01T00:00:00 DUE TO TIME LIMIT ***\nsrun: error: vm: task 0: Killed\n")
    _fake_dead_slurm_point(tmp_path, 2, "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=12.0\n")
    crashed = {r.metadata.batch: r.model_dump() for r in load_dir(tmp_path).records if r.status == "crashed"}
    assert crashed["1"]["status"] == "crashed" and crashed["1"]["error"]["type"] == "timeout"
    assert "DUE TO TIME LIMIT" in crashed["1"]["error"]["message"] and "12_1" in crashed["1"]["error"]["message"]
    assert crashed["1"]["provenance"]["slurm_job_id"] == "12_1"
    assert crashed["1"]["metadata"]["model_name"] == "ghost"
    assert crashed["2"]["error"]["type"] == "oom"


def test_resume_reruns_only_the_dead_points_into_their_own_run_dirs(tmp_path: Path):
    _fake_dead_slurm_point(tmp_path, 1, "DUE TO TIME LIMIT\n")
    ok_dir = tmp_path / "0"
    (ok_dir / ".hydra").mkdir(parents=True)
    (ok_dir / ".hydra" / "overrides.yaml").write_text("- model=ghost\n- batch=0\n")
    (ok_dir / "result.json").write_text(json.dumps({"schema_version": 1, "status": "ok", "error": None,
                                                    "metadata": {"model_name": "ghost"}}))
    points = points_to_rerun(tmp_path)
    assert [p["run_dir"].name for p in points] == ["1"]
    cmd = rerun_command(points[0], tmp_path, ["hydra.launcher.timeout_min=30"])
    assert cmd[:4] == ["python", "-m", "medbench", "-m"]
    assert {"model=ghost", "batch=1", "hydra/launcher=slurm", "hydra.launcher.timeout_min=30",
            f"hydra.sweep.dir={tmp_path / '1'}", "hydra.sweep.subdir=."} <= set(cmd)
    assert "hydra.sweep.dir=old" not in cmd


# ------------------------------------------------------------------------------- real engines, end to end
@needs_submitit
@pytest.mark.slow
def test_isolated_sweep_three_points_three_processes_in_turn(medbench_cli, tmp_path: Path):
    # three replicates of one point: each its own process, one after the other
    proc = medbench_cli("-m", "launcher=isolated", *QUICK, "device=cpu", "repeat=range(3)", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = _only_sweep_dir(tmp_path)
    records = _results(sweep)
    assert [r["status"] for r in records] == ["ok"] * 3
    assert [r["metadata"]["repeat"] for r in records] == [0, 1, 2]
    pids = {r["provenance"]["pid"] for r in records}
    assert len(pids) == 3 and os.getpid() not in pids
    _assert_no_overlap(records)
    table = pd.read_csv(sweep / "comparison.csv")
    assert len(table) == 3 and set(table["status"]) == {"ok"}
    assert len(list((sweep / ".submitit").glob("*/*_log.err"))) == 3


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """SLURM_CONF of a cluster that answers ``sinfo`` (the one CI started), else skip with the reason."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip("no Slurm cluster: Slurm's commands are not installed (run ../shared/slurm/local-slurm start as root)")
    candidates = [os.environ.get("SLURM_CONF")]
    if LOCAL_SLURM.exists():
        out = subprocess.run(["bash", str(LOCAL_SLURM), "env"], capture_output=True, text=True)
        candidates.append(out.stdout.strip().rpartition("SLURM_CONF=")[2] or None)
    for conf in filter(None, candidates):
        ok = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                            env={**os.environ, "SLURM_CONF": conf}, timeout=30)
        if ok.returncode == 0 and ok.stdout.strip():
            os.environ["SLURM_CONF"] = conf
            return conf
    pytest.skip("no Slurm cluster answers sinfo: run ../shared/slurm/local-slurm start (root) and export SLURM_CONF")


@needs_submitit
@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_sweep_two_points_carry_job_ids_and_collate(slurm_cluster, medbench_cli, tmp_path: Path):
    proc = medbench_cli("-m", "hydra/launcher=slurm", "hydra.launcher.timeout_min=10", *QUICK, "device=cpu",
                        "batch=1,2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = _only_sweep_dir(tmp_path)
    records = _results(sweep)
    assert [r["status"] for r in records] == ["ok", "ok"]
    jobs = {(r["provenance"]["slurm_array_job_id"], r["provenance"]["slurm_array_task_id"]) for r in records}
    assert all(r["provenance"]["slurm_job_id"] for r in records) and len(jobs) == 2
    assert {task for _, task in jobs} == {"0", "1"}
    _assert_no_overlap(records)  # exclusive: a one-node cluster runs the two jobs one after the other
    table = pd.read_csv(sweep / "comparison.csv")
    assert len(table) == 2 and set(table["status"]) == {"ok"}


@needs_submitit
@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_point_past_its_time_limit_is_listed_as_crashed(slurm_cluster, medbench_cli, tmp_path: Path):
    """1 minute is Slurm's shortest limit; the point would time for 10; Slurm kills it (+ KillWait 30 s)."""
    proc = medbench_cli("-m", "hydra/launcher=slurm", "hydra.launcher.timeout_min=1", *QUICK, "device=cpu",
                        "iters.min_time_s=600", "iters.max_iters=100000000", timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    sweep = _only_sweep_dir(tmp_path)
    assert not list(sweep.glob("*/result.json"))
    table = pd.read_csv(sweep / "comparison.csv")
    assert list(table["status"]) == ["crashed"]
    assert table["error_type"].iloc[0] == "timeout" and "DUE TO TIME LIMIT" in table["error"].iloc[0]
    assert "crashed" in proc.stdout + proc.stderr
