"""Collation: tables from a real 2-model × 2-imgsz quick sweep, and from sweeps with broken parts."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import QUICK, run_medbench
from medbench.analysis.collate import Collated, build, comparison_warnings, delta_table, results_table
from medbench.cli.collate import render_report
from medbench.results.load import Loaded

GHOST_PARAMS, BASELINE_PARAMS = 1_865_316, 3_157_200


def collate_cli(*args: str, cwd: Path):
    return run_medbench(*args, cwd=cwd, module="medbench.collate", timeout=120)


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """One real sweep per session: baseline and ghost at imgsz 64 and 96 on CPU (the callback collates it)."""
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_medbench("-m", *QUICK, "model=baseline,ghost", "imgsz=64,96", "device=cpu", "hydra.sweep.dir=sweep",
                        cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "sweep"


@pytest.fixture
def sweep_copy(sweep, tmp_path) -> Path:
    """A private copy of the sweep to edit, without the callback's outputs."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("comparison*"))
    return copy


def _record(model: str, imgsz: int, params: float, p50: float, *, status: str = "ok", gpu: str | None = None) -> dict:
    """A minimal record for the pure table functions (the real ones come from the sweep)."""
    return {"schema_version": 1, "status": status, "error": None if status == "ok" else {"type": "x", "message": "m"},
            "metadata": {"model_name": model, "imgsz": imgsz, "batch": 1, "device": "cpu", "precision": "fp32",
                         "benchmark_list_sha256": None},
            "model_complexity": {"params_M": params, "gflops": params / 10},
            "latency": {"mean_ms": p50, "p50_ms": p50, "p95_ms": p50 * 1.1}, "throughput": {"fps_p50": 1000 / p50},
            "memory": {"peak_gpu_mem_MB": None}, "noise": {"iqr_over_median": 0.01}, "env": {"gpu_name": gpu},
            "samples_ms": [p50 * 0.95, p50, p50 * 1.1]}


def test_delta_table_is_pure_and_exact():
    recs = [_record("ghost", 640, 1.9, 8.0), _record("baseline", 640, 3.2, 10.0), _record("eca", 1280, 3.3, 40.0),
            _record("baseline", 1280, 3.2, 30.0), _record("p2", 96, 3.4, 5.0), _record("x", 640, 1.0, 1.0, status="failed")]
    table = results_table(recs)
    assert list(table["imgsz"]) == [96, 640, 640, 640, 1280, 1280]  # numeric, not "1280" < "640" < "96"
    assert list(table["model"][1:4]) == ["ghost", "baseline", "x"]  # by latency within a setting, failed last
    delta = delta_table(table)
    base = delta[delta["model"] == "baseline"]
    assert (base[["d_params_pct", "d_gflops_pct", "d_latency_mean_pct", "d_latency_p95_pct", "d_fps_pct"]] == 0).all().all()
    assert base["d_peak_gpu_mem_pct"].isna().all()  # CPU: no GPU memory, blank not an error
    ghost = delta[delta["model"] == "ghost"].iloc[0]
    assert ghost["d_latency_mean_pct"] == pytest.approx(-20.0) and ghost["d_fps_pct"] == pytest.approx(25.0)
    assert "x" not in set(delta["model"])  # only ok runs are compared
    p2 = delta[delta["model"] == "p2"].iloc[0]
    assert pd.isna(p2["d_params_pct"]) and "no baseline run" in p2["note"]
    other = delta_table(table, "ghost")
    assert other[other["model"] == "ghost"]["d_latency_mean_pct"].iloc[0] == 0.0


@pytest.mark.slow
def test_sweep_tables_from_the_callback_and_the_command(sweep, tmp_path):
    table = pd.read_csv(sweep / "comparison.csv")  # written by the end-of-sweep callback
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert list(table["imgsz"]) == [64, 64, 96, 96]  # sorted by setting, then latency
    for imgsz in (64, 96):
        lat = table[table["imgsz"] == imgsz]["latency_p50_ms"]
        assert lat.is_monotonic_increasing
    assert {"fps_pipelined", "throttled", "list_sha256", "env_torch"} <= set(table.columns)
    delta = pd.read_csv(sweep / "comparison_delta.csv")
    base = delta[delta["model"] == "baseline"]
    assert len(base) == 2 and (base[["d_params_pct", "d_gflops_pct", "d_latency_mean_pct", "d_latency_p95_pct",
                                     "d_fps_pct"]] == 0.0).all().all()
    ghost = delta[delta["model"] == "ghost"]
    assert ghost["d_params_pct"].to_numpy() == pytest.approx([(GHOST_PARAMS / BASELINE_PARAMS - 1) * 100] * 2)
    md = (sweep / "comparison.md").read_text()
    assert "## Runs" in md and "## Δ% vs baseline" in md and "params Δ%" in md and "latency p95 Δ%" in md
    # the command writes exactly what the callback wrote: one code path
    out = tmp_path / "again.md"
    proc = collate_cli(str(sweep), "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == md
    assert "Δ% vs baseline" in proc.stdout and "ghost" in proc.stdout
    assert md.startswith("## Ablation") and "| Model" in md
    printed = [ln for ln in proc.stdout.splitlines() if not ln.startswith("wrote ")]
    assert max(map(len, printed)) <= 120, proc.stdout  # fits a 120-column terminal


@pytest.mark.slow
def test_formats_to_stdout_and_the_sweeps_own_files_survive(sweep, sweep_copy, tmp_path):
    for name in ("comparison.csv", "comparison_delta.csv", "comparison.md"):  # the sweep's own, from its callback
        shutil.copy(sweep / name, sweep_copy / name)
    own = {p.name: p.read_bytes() for p in sweep_copy.glob("comparison*")}
    proc = collate_cli(str(sweep_copy), "--format", "latex", "--baseline", "ghost", "--plot", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("% medbench collate") and proc.stdout.count("\\begin{tabular}") == 3
    assert "ghost\\_" not in proc.stdout and "$\\Delta$\\% vs ghost" in proc.stdout  # Δ% against ghost
    assert not list(sweep_copy.glob("*.tex"))  # printed, not written
    for name in ("latency_vs_params.png", "latency_by_setting.png"):
        data = (sweep_copy / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    proc = collate_cli(str(sweep_copy), "--baseline", "ghost", cwd=tmp_path)  # other options: written beside
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in sweep_copy.glob("comparison*") if p.name in own} == own
    beside = pd.read_csv(sweep_copy / "comparison-vs-ghost_delta.csv")
    assert (beside[beside["model"] == "ghost"]["d_latency_mean_pct"] == 0.0).all()
    assert "## Δ% vs ghost" in (sweep_copy / "comparison-vs-ghost.md").read_text()
    proc = collate_cli(str(sweep_copy), "--output", str(sweep_copy / "comparison.md"), cwd=tmp_path)
    assert proc.returncode == 2 and "is the sweep's own table" in proc.stderr and "--force" in proc.stderr
    assert (sweep_copy / "comparison.md").read_bytes() == own["comparison.md"]
    proc = collate_cli(str(sweep_copy), "--format", "md", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("## Ablation") and "| Model" in proc.stdout
    proc = collate_cli(str(sweep_copy), "--format", "csv", cwd=tmp_path)
    assert list(pd.read_csv(io.StringIO(proc.stdout))["model"].unique()) != []


@pytest.mark.slow
def test_failed_run_truncated_and_foreign_json_still_collate(sweep_copy, tmp_path):
    runs = sorted(p for p in sweep_copy.iterdir() if p.is_dir())
    failed = json.loads((runs[0] / "result.json").read_text())
    failed.update(status="failed", error={"type": "oom", "message": "CUDA out of memory. Tried to allocate 2 GiB"},
                  latency=None, throughput=None, samples_ms=None)
    (runs[0] / "result.json").write_text(json.dumps(failed))
    text = (runs[1] / "result.json").read_text()
    (runs[1] / "result.json").write_text(text[: len(text) // 2])  # truncated mid-write
    (sweep_copy / "extra").mkdir()
    (sweep_copy / "extra" / "result.json").write_text(json.dumps({"hello": "world"}))  # not a medbench result
    crashed = sweep_copy / "9" / ".hydra"
    crashed.mkdir(parents=True)
    (crashed / "overrides.yaml").write_text("- model=p2\n- imgsz=64\n")
    proc = collate_cli(str(sweep_copy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert f"skipped {runs[1] / 'result.json'}: unreadable result file" in out
    assert "extra/result.json is not a medbench result" in out
    assert "failed: " in out and "oom: CUDA out of memory" in out
    assert "crashed: model=p2 imgsz=64: crash" in out and "2 of 4 runs did not finish ok" in out  # as written
    assert "nan" not in out
    table = pd.read_csv(sweep_copy / "comparison.csv")
    assert sorted(table["status"]) == ["crashed", "failed", "ok", "ok"]
    md = (sweep_copy / "comparison.md").read_text()
    assert "## Failed runs" in md and "## Skipped files" in md


@pytest.mark.slow
def test_runs_from_different_environments_warn(sweep_copy, tmp_path):
    run = next(p for p in sorted(sweep_copy.iterdir()) if (p / "result.json").exists())
    rec = json.loads((run / "result.json").read_text())
    rec["env"]["gpu_name"] = "NVIDIA A100-SXM4-40GB"
    rec["env"]["torch"] = "2.0.0"
    (run / "result.json").write_text(json.dumps(rec))
    proc = collate_cli(str(sweep_copy), cwd=tmp_path)
    assert proc.returncode == 0
    assert "warning: runs compared with each other differ in GPU (env.gpu_name)" in proc.stdout
    assert "differ in torch version (env.torch)" in proc.stdout
    assert "differ in GPU" in (sweep_copy / "comparison.md").read_text()


def test_environment_and_precision_warnings_are_pure():
    recs = [_record("baseline", 64, 3.2, 10.0, gpu="A100"), _record("ghost", 64, 1.9, 9.0, gpu="V100")]
    half = _record("baseline", 96, 3.2, 10.0)
    half["metadata"]["precision"] = "fp16"
    table = results_table([*recs, half])
    delta = delta_table(table)
    warnings = comparison_warnings(table, delta, "baseline")
    assert any("GPU (env.gpu_name): A100 vs V100" in w for w in warnings)
    assert any("several precisions (fp16, fp32)" in w for w in warnings)
    text = render_report(Collated(table, delta, "baseline", warnings, Loaded()), "md")
    assert "## Warnings" in text and "A100 vs V100" in text


def test_missing_directory_is_one_line(tmp_path):
    proc = collate_cli(str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr and "Traceback" not in proc.stderr


def _replicate(template: dict, model: str, repeat: int, factor: float, rng, loaded: bool = False) -> dict:
    """A copy of a real record: another model label, replicate index and samples (quiet, scaled by ``factor``)."""
    from medbench.analysis import stats

    rec = json.loads(json.dumps(template))
    level = factor * float(np.exp(rng.normal(0, 0.01)))  # 1% run-to-run variation
    samples = (level * 10.0 * rng.lognormal(0.0, 0.02, 60)).tolist()
    summary = stats.summarize(samples, rec["metadata"]["batch"])
    rec.update(samples_ms=samples, latency=summary["latency"], noise=summary["noise"])
    rec["throughput"].update(summary["throughput"])
    rec["metadata"].update(model_name=model, repeat=repeat)
    rec["metadata"]["overrides"] = [f"repeat={repeat}", f"model={model}"]
    rec["telemetry"].update(loaded=loaded, throttled=False, other_cpu_cores=1.8 if loaded else 0.1, cpu_cores=2)
    return rec


@pytest.mark.slow
def test_replicates_give_intervals_verdicts_and_name_loaded_runs(sweep, tmp_path):
    template = json.loads(next(sweep.glob("*/result.json")).read_text())
    rng = np.random.default_rng(11)
    root = tmp_path / "reps"
    n = 0
    for i in range(5):  # interleaved, as -m repeat='range(5)' model=baseline,ghost,eca runs them
        for model, factor in (("baseline", 1.0), ("ghost", 1.10), ("eca", 1.0)):
            rec = _replicate(template, model, i, factor, rng, loaded=(model == "eca" and i == 4))
            (root / str(n)).mkdir(parents=True)
            (root / str(n) / "result.json").write_text(json.dumps(rec))
            n += 1
    proc = collate_cli(str(root), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    delta = pd.read_csv(root / "comparison_delta.csv").set_index("model")
    assert delta.loc["ghost", "verdict"] == "slower" and delta.loc["ghost", "runs"] == "5/5"
    assert delta.loc["ghost", "d_p50_ci_lo_pct"] > 0 and 5 < delta.loc["ghost", "d_latency_p50_pct"] < 15
    assert delta.loc["eca", "verdict"] in ("same", "~") and delta.loc["eca", "runs"] == "4/5"
    assert delta.loc["eca", "d_p50_ci_lo_pct"] < 0 < delta.loc["eca", "d_p50_ci_hi_pct"]
    assert "1 of 5 run(s) loaded" in delta.loc["eca", "note"]
    assert "loaded: eca imgsz=" in proc.stdout and "repeat=4" in proc.stdout and "not used for a verdict" in proc.stdout
    assert "run-to-run variance not measured" not in proc.stdout
    table = pd.read_csv(root / "comparison.csv")
    assert sorted(table["repeat"].unique()) == [0, 1, 2, 3, 4] and (table["variant"].isna()).all()
    assert (table["p50_ci_lo_ms"] < table["latency_p50_ms"]).all()
    # one run each: the interval comes from within the runs, and the table says so
    single = tmp_path / "single"
    for k, name in enumerate(("0", "1")):
        (single / name).mkdir(parents=True)
        (single / name / "result.json").write_text((root / str(k) / "result.json").read_text())
    proc = collate_cli(str(single), cwd=tmp_path)
    assert "1 run each: run-to-run variance not measured" in proc.stdout
