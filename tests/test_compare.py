"""The regression gate: real result files from a quick run, edited the way a user (or a slower commit) would."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from conftest import QUICK, only_result, run_medbench
from medbench.analysis import stats
from medbench.analysis.compare import compare_sources, judge_metric, load_entries, threshold_for
from medbench.results.metrics import BY_NAME
from medbench.errors import ResultError


@pytest.fixture(scope="session")
def real_record(tmp_path_factory) -> dict:
    """One real quick CPU run per test session; tests copy and edit it."""
    cwd = tmp_path_factory.mktemp("one_run")
    proc = run_medbench(*QUICK, "device=cpu", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return only_result(cwd / "outputs")[1]


def with_samples(record: dict, samples: list[float]) -> dict:
    """A copy of ``record`` whose samples and derived blocks are ``samples`` (recomputed as the runner does)."""
    rec = copy.deepcopy(record)
    summary = stats.summarize(samples, rec["metadata"]["batch"])
    rec["samples_ms"] = list(samples)
    rec["latency"] = summary["latency"]
    rec["throughput"].update(summary["throughput"])
    rec["noise"] = summary["noise"]
    return rec


def quiet_samples(n: int = 40, seed: int = 0) -> list[float]:
    """Low-noise latencies (2% spread): enough samples for a real change to be significant."""
    return (10.0 * np.random.default_rng(seed).lognormal(0.0, 0.02, n)).tolist()


def save(path: Path, record: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return str(path)


def compare_cli(*args: str, cwd: Path):
    return run_medbench(*args, cwd=cwd, module="medbench.compare", timeout=120)


# --- statistics ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n1", "n2"), [(3, 3), (5, 8), (40, 35)])
def test_significance_is_scipys_two_sided_u_test(n1, n2):
    rng = np.random.default_rng(n1)
    a, b = rng.lognormal(2.3, 0.1, n1), rng.lognormal(2.35, 0.1, n2)
    assert stats.significance(a, b) == mannwhitneyu(a, b, alternative="two-sided").pvalue


def test_significance_bounds():
    assert stats.significance([5.0, 5.0, 5.0], [5.0, 5.0]) == 1.0
    assert stats.significance([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)  # the best 3 vs 3 can do
    with pytest.raises(ValueError):
        stats.significance([], [1.0])


def test_judge_metric_is_a_pure_verdict():
    latency = BY_NAME["latency.p50_ms"]
    base = quiet_samples()
    slower = [s * 1.2 for s in base]
    assert judge_metric(latency, 10.0, 10.3, 5.0, base, slower)[0] == "stable"
    assert judge_metric(latency, 10.0, 12.0, 5.0, base, slower)[0] == "regression"
    assert judge_metric(latency, 12.0, 10.0, 5.0, slower, base)[0] == "improvement"
    assert judge_metric(latency, 10.0, 12.0, 5.0, base, base)[0] == "~"  # numbers moved, samples did not
    assert judge_metric(latency, 10.0, 12.0, 5.0, None, None)[0] == "regression"  # no samples: threshold only
    fps = BY_NAME["throughput.fps_p50"]
    assert judge_metric(fps, 100.0, 80.0, 5.0, base, slower)[0] == "regression"
    memory = BY_NAME["memory.peak_gpu_mem_MB"]
    assert judge_metric(memory, 100.0, 90.0, 5.0, base, base)[:2] == ("improvement", pytest.approx(-10.0))


def test_threshold_lookup_is_most_specific():
    th = {"latency": 3.0, "latency.p95_ms": 2.0, "throughput": 10.0}
    assert threshold_for("latency.p95_ms", th, 5.0) == 2.0
    assert threshold_for("latency.mean_ms", th, 5.0) == 3.0
    assert threshold_for("throughput.fps_p50", th, 5.0) == 10.0
    assert threshold_for("memory.peak_gpu_mem_MB", th, 5.0) == 5.0


# --- real files ---------------------------------------------------------------------------------------------------

def test_a_run_compared_with_itself_has_no_regression(real_record, tmp_path):
    path = save(tmp_path / "run" / "result.json", real_record)
    proc = compare_cli("--baseline", path, "--current", path, "--fail-on-regression", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 regressions, 0 improvements" in proc.stdout
    report = compare_sources(path, path)
    assert not report.has_regressions and report.regressions == [] and len(report.stable) >= 6
    assert all(c.delta_pct == 0 for c in report.stable)


def test_samples_times_1_2_is_a_regression_and_fails_the_gate(real_record, tmp_path):
    base = with_samples(real_record, quiet_samples())
    cur = with_samples(real_record, [s * 1.2 for s in base["samples_ms"]])
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", "--output", "report.json",
                       cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Regressions (6)" in proc.stdout and "+20.0%" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["has_regressions"] is True and report["summary"]["regressions"] == 6
    p95 = next(r for r in report["regressions"] if r["metric"] == "latency.p95_ms")
    assert p95["delta_pct"] == pytest.approx(20.0) and p95["p_value"] < stats.SIGNIFICANCE_ALPHA
    assert p95["test"] == "mann-whitney-u" and p95["baseline"] == pytest.approx(base["latency"]["p95_ms"])
    fps = next(r for r in report["regressions"] if r["metric"] == "throughput.fps_p50")
    assert fps["delta_pct"] == pytest.approx(-100 / 6)
    # without the flag the verdict is printed, the exit status stays 0
    assert compare_cli("--baseline", a, "--current", b, cwd=tmp_path).returncode == 0
    # and the other way round it is an improvement
    assert len(compare_sources(b, a).improvements) == 6


def test_times_1_2_on_three_noisy_samples_is_within_noise(real_record, tmp_path):
    base = with_samples(real_record, [10.0, 14.0, 9.0])
    cur = with_samples(real_record, [s * 1.2 for s in base["samples_ms"]])
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "0 regressions" in proc.stdout and "6 within noise" in proc.stdout
    assert " ~ " in proc.stdout
    report = compare_sources(a, b)
    assert {c.verdict for c in report.within_noise} == {"~"} and not report.has_regressions
    assert all(c.p_value >= 0.1 for c in report.within_noise)  # 3 vs 3 can never reach p < 0.01


def test_thresholds_per_metric_apply(real_record, tmp_path):
    base = with_samples(real_record, quiet_samples())
    cur = with_samples(real_record, [s * 1.04 for s in base["samples_ms"]])  # +4%: significant, under 5%
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    assert compare_cli("--baseline", a, "--current", b, "--fail-on-regression", cwd=tmp_path).returncode == 0
    proc = compare_cli("--baseline", a, "--current", b, "--threshold", "latency.p95_ms=3", "--fail-on-regression",
                       cwd=tmp_path)
    assert proc.returncode == 1
    report = compare_sources(a, b, {"latency.p95_ms": 3.0})
    assert [c.metric for c in report.regressions] == ["latency.p95_ms"]
    assert report.regressions[0].threshold == 3.0
    # a global threshold of 3 catches every latency metric; 10 on throughput keeps FPS stable
    (tmp_path / "th.yaml").write_text("default: 3\nthroughput: 10\n")
    proc = compare_cli("--baseline", a, "--current", b, "--thresholds", "th.yaml", "--output", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(r["metric"] for r in report["regressions"]) == [
        "latency.mean_ms", "latency.p50_ms", "latency.p95_ms", "latency.p99_ms"]
    assert {r["metric"] for r in report["stable"]} == {"throughput.fps_mean", "throughput.fps_p50"}
    bad = compare_cli("--baseline", a, "--current", b, "--threshold", "latncy=3", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown metric 'latncy'" in bad.stderr


def test_a_changed_model_is_reported_not_judged(real_record, tmp_path):
    cur = with_samples(real_record, [s * 1.5 for s in real_record["samples_ms"]])
    cur["model_complexity"]["params"] += 13
    a, b = save(tmp_path / "a.json", real_record), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", cwd=tmp_path)
    assert proc.returncode == 0  # not a latency verdict ...
    assert "MODELS DIFFER" in proc.stdout and "3,157,200 -> 3,157,213" in proc.stdout  # ... but said loudly
    assert "1 models differ" in proc.stdout
    strict = compare_cli("--baseline", a, "--current", b, "--fail-on-mismatch", cwd=tmp_path)
    assert strict.returncode == 1
    report = compare_sources(a, b)
    assert len(report.models_differ) == 1 and report.changes == []


def test_hand_edited_latency_is_judged_by_threshold(real_record, tmp_path):
    """A slowdown typed into the latency block (samples left alone) is not hidden by the untouched samples."""
    cur = copy.deepcopy(real_record)
    for k in cur["latency"]:
        cur["latency"][k] *= 1.3
    a, b = save(tmp_path / "a.json", real_record), save(tmp_path / "b.json", cur)
    report = compare_sources(a, b)
    assert {c.metric for c in report.regressions} == {"latency.mean_ms", "latency.p50_ms", "latency.p95_ms",
                                                        "latency.p99_ms"}
    assert all("threshold only" in (c.note or "") for c in report.regressions)


def test_missing_and_corrupt_baseline_are_one_line_and_exit_2(real_record, tmp_path):
    cur = save(tmp_path / "cur.json", real_record)
    proc = compare_cli("--baseline", "nope/result.json", "--current", cur, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "baseline" in proc.stderr and "not found" in proc.stderr
    (tmp_path / "trunc.json").write_text(json.dumps(real_record)[:500])
    proc = compare_cli("--baseline", "trunc.json", "--current", cur, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "unreadable" in proc.stderr
    with pytest.raises(ResultError, match="current"):
        compare_sources(cur, tmp_path / "missing.json")


def test_two_environments_warn(real_record, tmp_path):
    cur = copy.deepcopy(real_record)
    cur["env"]["gpu_name"] = "NVIDIA H100 80GB HBM3"
    a, b = save(tmp_path / "a.json", real_record), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, cwd=tmp_path)
    assert proc.returncode == 0
    assert "WARNING: baseline and current ran in different environments: env.gpu_name" in proc.stdout
    assert "H100" in proc.stdout


def test_directories_match_by_setting_and_list_unmatched_and_failed(real_record, tmp_path):
    ok = with_samples(real_record, quiet_samples())
    ghost = copy.deepcopy(ok)
    ghost["metadata"]["model_name"] = "ghost"
    failed = copy.deepcopy(ok)
    failed.update(status="failed", error={"type": "oom", "message": "CUDA out of memory"})
    save(tmp_path / "base" / "0" / "result.json", ok)
    save(tmp_path / "base" / "1" / "result.json", ghost)
    save(tmp_path / "cur" / "0" / "result.json", failed)
    (tmp_path / "cur" / "1").mkdir()
    (tmp_path / "cur" / "1" / "result.json").write_text("{ truncated")
    report = compare_sources(tmp_path / "base", tmp_path / "cur")
    assert report.missing_in_current == [next(e.label for e in load_entries(tmp_path / "base") if "ghost" in e.label)]
    assert [c.metric for c in report.regressions] == ["status"] and "oom" in report.regressions[0].note
    assert any(w.startswith("skipped") and "unreadable" in w for w in report.warnings)
    text = report.render()
    assert "FAILED:" in text and "Only in baseline (1)" in text and "1 unmatched" in text


def _suite(samples: list[float], throughput: float, name: str = "resnet50_forward") -> dict:
    return {"schema_version": 1, "kind": "medbench-suite", "name": "demo", "created": "2026-01-01T00:00:00+00:00",
            "env": {"torch": "2.4.0", "gpu_name": None},
            "results": [{"name": name, "duration": 1.0, "throughput": throughput, "memory_allocated": None,
                         "memory_reserved": None, "metadata": {"device": "cpu", "batch_size": 32, "unit": "samples/s"},
                         "latency": stats.latency_stats(samples), "noise": stats.noise_stats(samples),
                         "samples_ms": samples}]}


def test_suite_files_and_in_memory_suites(tmp_path):
    base_samples = quiet_samples()
    base = _suite(base_samples, 3200.0)
    slow = _suite([s * 1.25 for s in base_samples], 2560.0)
    path = save(tmp_path / "baseline_suite.json", base)
    [entry] = load_entries(path)
    assert entry.kind == "api" and entry.key == ("api", "resnet50_forward", "cpu") and entry.samples_ms
    report = compare_sources(path, slow)  # the API passes the current suite as a dict
    assert {c.metric for c in report.regressions} == {"latency.mean_ms", "latency.p50_ms", "latency.p95_ms",
                                                        "latency.p99_ms", "throughput.fps_mean", "throughput.fps_p50",
                                                        "throughput.items_per_s"}
    assert report.has_regressions and report.to_dict()["summary"]["regressions"] == 7
    assert not compare_sources(base, copy.deepcopy(base)).has_regressions
    noisy = compare_sources(_suite([10.0, 13.0, 9.0], 3200.0), _suite([12.0, 15.6, 10.8], 2560.0))
    assert not noisy.has_regressions and len(noisy.within_noise) == 7
