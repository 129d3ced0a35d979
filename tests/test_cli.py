"""`python -m medbench` as a user runs it: real Hydra, real Ultralytics, real subprocesses and files."""

import json

import pandas as pd
import pytest

from conftest import HAS_CUDA, QUICK, only_result

RECORD_KEYS = {
    "metadata": {"model_name", "weights", "cfg", "random_init", "imgsz", "batch", "device", "warmup", "iters", "seed",
                 "timestamp", "benchmark_list", "benchmark_size", "benchmark_list_sha256", "precision", "overrides",
                 "choices"},
    "model_complexity": {"params", "params_M", "gflops", "fused"},
    "latency": {"mean_ms", "median_ms", "p50_ms", "p50_ci95_ms", "p95_ms", "p99_ms", "std_ms", "min_ms", "max_ms"},
    "throughput": {"fps_mean", "fps_p50"},
    "memory": {"peak_gpu_mem_MB", "allocated_MB", "reserved_MB", "peak_rss_MB"},
    "cold_start": {"model_load_ms", "first_forward_ms"},
    "noise": {"iqr_ms", "iqr_over_median", "warning"},
    "env": {"python", "platform", "cpu", "torch", "torchvision", "ultralytics", "cuda", "cudnn", "gpu_name",
            "gpu_count", "driver", "git_commit", "git_dirty"},
}


def test_single_run_writes_the_spec_record(medbench_cli, tmp_path):
    proc = medbench_cli(*QUICK, "batch=2", "device=cpu")
    assert proc.returncode == 0, proc.stderr
    path, rec = only_result(tmp_path / "outputs" / "runs")
    assert rec["schema_version"] == 2 and rec["kind"] == "run" and rec["status"] == "ok" and rec["error"] is None
    for block, keys in RECORD_KEYS.items():
        assert keys <= set(rec[block]), (block, keys - set(rec[block]))
    meta = rec["metadata"]
    assert (meta["model_name"], meta["cfg"], meta["random_init"], meta["imgsz"], meta["batch"]) == (
        "baseline", "yolov8n.yaml", True, 64, 2)
    assert meta["device"] == "cpu" and meta["input_shape"] == [2, 3, 64, 64]
    assert meta["overrides"] == [*QUICK, "batch=2", "device=cpu"] and meta["choices"]["model"] == "baseline"
    assert rec["model_complexity"]["params"] == 3_157_200 and rec["model_complexity"]["fused"] is True
    assert rec["model_complexity"]["gflops"] > 0
    samples = rec["samples_ms"]
    assert len(samples) == meta["iters"] == 5 and all(isinstance(s, float) and s > 0 for s in samples)
    lat, thr = rec["latency"], rec["throughput"]
    assert lat["min_ms"] <= lat["p50_ms"] <= lat["p95_ms"] <= lat["max_ms"]
    assert lat["p50_ci95_ms"] is None  # 5 samples: no distribution-free 95% interval of the median exists
    assert lat["mean_ms"] == pytest.approx(sum(samples) / len(samples))
    assert thr["fps_mean"] == pytest.approx(1000 / lat["mean_ms"] * 2)
    assert rec["memory"]["peak_gpu_mem_MB"] is None and rec["memory"]["peak_rss_MB"] > 0
    assert rec["cold_start"]["model_load_ms"] > 0 and rec["cold_start"]["first_forward_ms"] > 0
    assert rec["env"]["torch"] and rec["provenance"]["pid"] > 0
    assert "medbench · baseline" in proc.stderr + proc.stdout  # the summary was shown
    assert "\r" not in proc.stderr and "warm-up 3/" not in proc.stderr  # not a terminal, < 30 s: no progress lines
    assert meta["config"]["batch"] == 2 and meta["config"]["model"]["name"] == "baseline"  # the full config, also when ok
    import hashlib
    from ultralytics.utils.checks import check_yaml

    assert meta["cfg_sha256"] == hashlib.sha256(open(check_yaml("yolov8.yaml"), "rb").read()).hexdigest()
    env = rec["env"]
    assert env["workdir_git"] is None and env["git_commit"] is None  # tmp_path is no repository
    import medbench, subprocess
    from pathlib import Path

    clone = Path(medbench.__file__).resolve().parents[1]  # this editable install's clone
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert env["medbench_git"]["commit"] == head and env["medbench_git"]["root"] == str(clone)
    assert (path.parent / ".hydra" / "config.yaml").exists()
    assert not list(path.parent.glob("*.tmp"))


def test_failed_run_still_writes_its_record(medbench_cli, tmp_path):
    proc = medbench_cli(*QUICK, "input=folder", f"input.path={tmp_path / 'no_such_dir'}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    _, rec = only_result(tmp_path / "outputs")
    assert rec["status"] == "failed" and rec["error"]["type"] == "input"
    assert "no_such_dir" in rec["error"]["message"]
    assert rec["latency"] is None and rec["samples_ms"] is None and rec["env"]["torch"]


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without a GPU")
def test_gpu_request_without_gpu_is_one_line(medbench_cli, tmp_path):
    proc = medbench_cli(*QUICK, "device=0")
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln or "error" in ln]
    assert len(errors) == 1 and "CUDA is not available" in errors[0] and "available: cpu" in errors[0]
    assert "Traceback" not in proc.stderr
    _, rec = only_result(tmp_path / "outputs")
    assert rec["status"] == "failed" and rec["error"]["type"] == "device"


@pytest.mark.parametrize(
    ("override", "expect"),
    [("batch=abc", "batch"), ("batch=0", "batch must be >= 1"), ("model=nope", "model/nope"),
     ("imgsz=abc", "imgsz"), ("imgsz=-1", "imgsz must be positive"), ("+bacth=2", "bacth"),
     ("device=0,1", "device")],
)
def test_bad_overrides_end_in_one_line(medbench_cli, override, expect):
    proc = medbench_cli(*QUICK, override)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if expect in ln]
    assert lines, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]) == 1, proc.stderr


def test_help_explains(medbench_cli):
    proc = medbench_cli("--help")
    assert proc.returncode == 0
    for text in ("medbench", "model: baseline", "medbench collate", "iters"):
        assert text in proc.stdout


def test_medbench_subcommands_and_their_help(tmp_path):
    import subprocess
    import sys

    def medbench(*args: str) -> subprocess.CompletedProcess:
        code = "import sys; from medbench.cli.app import main; sys.argv[0] = 'medbench'; main()"
        return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    listing = medbench("help")
    assert listing.returncode == 0
    for name in ("collate", "compare", "resume", "suite", "targets"):
        assert name in listing.stdout
        assert medbench(name, "--help").returncode == 0
    missing = medbench("collate", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "medbench collate: error: no such file" in missing.stderr


@pytest.mark.slow
def test_multirun_sweep_and_collate(medbench_cli, tmp_path):
    proc = medbench_cli("-m", *QUICK, "imgsz=64,96", "batch=1,2", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    results = sorted(sweep.rglob("result.json"))
    assert len(results) == 4
    settings, cached = set(), []
    for path in results:
        rec = json.loads(path.read_text())
        assert rec["status"] == "ok" and (path.parent / ".hydra" / "overrides.yaml").exists()
        settings.add((rec["metadata"]["imgsz"], rec["metadata"]["batch"]))
        cached.append(rec["cold_start"]["model_from_cache"])
    assert settings == {(64, 1), (64, 2), (96, 1), (96, 2)}
    assert sorted(cached) == [False, True, True, True]  # one process: the model is built once, then copied
    # the console as a user reads it: point k/N lines, Hydra's lines plain on stderr, paths relative to the cwd
    points = [line for line in proc.stderr.splitlines() if line.startswith("point ")]
    assert len(points) == 4 and points[0].startswith("point 1/4 ") and points[-1].startswith("point 4/4 ")
    assert "sweep of 4 point(s) → sweep" in proc.stderr and "[HYDRA]" not in proc.stderr + proc.stdout
    assert "result → sweep/0/result.json" in proc.stderr and str(tmp_path) not in proc.stderr
    assert proc.stderr.count(" img/s · IQR ") == 4 and "latency/batch" not in proc.stderr  # one line a point
    table = pd.read_csv(sweep / "comparison.csv")  # written by the end-of-sweep callback
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    out = tmp_path / "table.csv"
    proc = medbench_cli(str(sweep), "--output", str(out), module="medbench.collate")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 4
    assert {"model", "imgsz", "batch", "device", "precision", "params_M", "gflops", "latency_mean_ms",
            "latency_p50_ms", "latency_p95_ms", "fps", "peak_gpu_mem_MB", "status"} <= set(table.columns)
    assert (table["params_M"] == 3.1572).all()
    assert "baseline" in proc.stdout  # the terminal table


@pytest.mark.slow
def test_a_failing_point_does_not_stop_the_sweep(medbench_cli, tmp_path):
    proc = medbench_cli("-m", *QUICK, "runtime.precision=fp32,fp16", "device=cpu", "hydra.sweep.dir=sweep")
    assert proc.returncode == 1  # the sweep finished, but one point failed
    recs = {json.loads(p.read_text())["metadata"]["precision"]: json.loads(p.read_text())
            for p in (tmp_path / "sweep").rglob("result.json")}
    assert recs["fp32"]["status"] == "ok"
    assert recs["fp16"]["status"] == "failed" and "fp16 is not supported on cpu" in recs["fp16"]["error"]["message"]
    table = pd.read_csv(tmp_path / "sweep" / "comparison.csv")
    assert sorted(table["status"]) == ["failed", "ok"]


@pytest.mark.slow
def test_runs_from_any_directory_with_the_installed_configs(medbench_cli, tmp_path):
    elsewhere = tmp_path / "deep" / "elsewhere"
    elsewhere.mkdir(parents=True)
    proc = medbench_cli(*QUICK, "model=ghost", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    _, rec = only_result(elsewhere / "outputs")
    assert rec["metadata"]["model_name"] == "ghost"


@pytest.mark.slow
def test_dataset_runs_share_one_benchmark_list(medbench_cli, tmp_path):
    """Separate runs and the points of a sweep see the same images, from one list file each place."""
    import cv2
    import numpy as np

    val = tmp_path / "ds" / "images" / "val"
    val.mkdir(parents=True)
    for i in range(12):
        cv2.imwrite(str(val / f"im{i:02d}.jpg"), np.full((48 + i, 64, 3), 10 * i, np.uint8))
    (tmp_path / "ds" / "data.yaml").write_text("path: .\nval: images/val\nnames: {0: thing}\n")
    data = ["input=dataset", f"input.data={tmp_path / 'ds' / 'data.yaml'}", "input.size=5"]

    records = []
    for model in ("baseline", "ghost"):
        assert medbench_cli(*QUICK, *data, f"model={model}").returncode == 0
        records += [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").rglob("result.json")
                    if json.loads(p.read_text())["metadata"]["model_name"] == model]
    lists = {r["metadata"]["benchmark_list"] for r in records}
    assert len(records) == 2 and len(lists) == 1  # the second run reused the first run's list
    assert {r["metadata"]["benchmark_size"] for r in records} == {5}

    proc = medbench_cli("-m", *QUICK, *data, "model=baseline,ghost", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-2000:]
    swept = [json.loads(p.read_text()) for p in (tmp_path / "sweep").rglob("result.json")]
    assert len({r["metadata"]["benchmark_list"] for r in swept}) == 1
    assert str(tmp_path / "sweep") in swept[0]["metadata"]["benchmark_list"]
    shas = {r["metadata"]["benchmark_list_sha256"] for r in records + swept}
    assert len(shas) == 1  # same data, size and seed: the same images everywhere
