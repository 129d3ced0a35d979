"""resume: re-runs failed, crashed and never-started points; a crafted sweep dir cannot make it run anything else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from medbench.results.load import load_dir
from medbench.cli.resume import main as resume_main
from medbench.cli.resume import points_to_rerun, rerun_command


def _crafted_point(sweep: Path, name: str, overrides: list[str], hydra: list[str], error: str = "boom") -> Path:
    run_dir = sweep / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(json.dumps(overrides))
    (run_dir / ".hydra" / "hydra.yaml").write_text(json.dumps({"hydra": {"overrides": {"hydra": hydra}}}))
    (run_dir / "result.json").write_text(json.dumps({"schema_version": 1, "status": "failed",
                                                     "error": {"type": "model", "message": error},
                                                     "metadata": {"model_name": "x"}}))
    return run_dir


def test_crafted_sweep_dir_is_refused_and_the_script_is_inert(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    _crafted_point(sweep, "0", ["model=ghost", "model.weights=${oc.env:HOME}/evil.pt"], [])
    _crafted_point(sweep, "1", ["model=ghost"], ["hydra.job.env_set.GIT_CONFIG_COUNT=1"])
    _crafted_point(sweep, "2", ["--info", "model=ghost"], [])
    _crafted_point(sweep, "3", ["model=ghost", "model.trust_weights=true"], [])
    _crafted_point(sweep, "4", ["model=ghost"], ["hydra.launcher.setup=[touch /tmp/x]"])
    _crafted_point(sweep, "5\nrm -rf ~", ["model=ghost", "batch=2"], ["hydra/launcher=slurm",
                   "hydra.launcher.timeout_min=30"], error="bad\ntouch /tmp/pwned; #")
    points = {p["run_dir"].name: p for p in points_to_rerun(sweep)}
    for name in "01234":
        assert points[name]["refused"], name
    assert points["5\nrm -rf ~"]["refused"] is None
    assert resume_main([str(sweep)]) == 1  # refused points: not a clean exit
    out = capsys.readouterr().out
    lines = out.splitlines()
    commands = [ln for ln in lines if not ln.startswith("#")]
    assert len(commands) == 2, out  # the one good point, then the collation of the whole sweep
    assert commands[0].startswith("python -m medbench -m model=ghost batch=2 hydra/launcher=slurm")
    assert "$'" in commands[0] and "\\x0a" in commands[0]  # the newline in the dir name stays inside one argument
    assert commands[1].startswith("python -m medbench.collate")
    for bad in ("oc.env", "env_set", "--info", "trust_weights", "setup"):
        assert bad not in "\n".join(commands)
    assert not any(ln.startswith(("touch", "rm")) for ln in lines)


def test_resume_reruns_failed_and_not_run_points_without_touching_the_sweep_definition(tmp_path: Path, medbench_cli):
    args = ["-m", "model.weights=null,missing.pt", "imgsz=64", "iters=quick", "iters.warmup=0", "iters.iters=2",
            "hydra.sweep.dir=sweep"]
    first = medbench_cli(*args)
    assert first.returncode == 1, first.stderr[-2000:]  # point 1 failed: its weights do not exist
    sweep = tmp_path / "sweep"
    shutil.rmtree(sweep / "0")  # as if the sweep had been killed before point 0 started
    found = load_dir(sweep)
    assert sorted(r["status"] for r in found.records) == ["failed", "not_run"]
    multirun, plan = (sweep / "multirun.yaml").read_bytes(), (sweep / "sweep_plan.json").read_bytes()
    points = points_to_rerun(sweep)
    assert [(p["run_dir"].name, p["status"]) for p in points] == [("0", "not_run"), ("1", "failed")]
    assert rerun_command(points[0], sweep, [])[4:6] == ["model.weights=null", "imgsz=64"]
    res = medbench_cli("--run", str(sweep), module="medbench.resume")
    assert res.returncode == 1, res.stderr[-2000:]  # point 1 fails again
    assert (sweep / "multirun.yaml").read_bytes() == multirun and (sweep / "sweep_plan.json").read_bytes() == plan
    found = load_dir(sweep)
    by_dir = {Path(r.run_dir).name: r.status for r in found.written}
    assert by_dir == {"0": "ok", "1": "failed"} and not found.crashed
    assert list((sweep / "1").glob("result.json.previous-*"))  # the first failure is kept, not overwritten
    assert (sweep / "comparison.csv").is_file()
