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
from medbench.analysis.compare import compare_sources, load_entries, threshold_for
from medbench.cli.compare import render
from medbench.analysis.judging import judge_metric
from medbench.analysis.replicates import Run
from medbench.results.metrics import BY_NAME
from medbench.errors import ResultError


@pytest.fixture(scope="session")
def real_record(tmp_path_factory) -> dict:
    """One real quick CPU run per test session; tests copy and edit it."""
    cwd = tmp_path_factory.mktemp("one_run")
    proc = run_medbench(*QUICK, "device=cpu", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = only_result(cwd / "outputs")[1]
    # this shared machine is often loaded and 5 iterations are very noisy: the tests set the machine state and the
    # samples themselves (quiet here; loaded / noisy where a test says so)
    record["telemetry"].update(loaded=False, throttled=False)
    return with_samples(record, quiet_samples(5, seed=99))


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


def _run(samples: list[float], flags: tuple[str, ...] = ()) -> Run:
    return Run(float(np.median(samples)), tuple(samples), flags)


def test_judge_metric_is_a_pure_verdict():
    latency = BY_NAME["latency.p50_ms"]
    base = quiet_samples()
    slower = [s * 1.2 for s in base]
    same = [s * 1.03 for s in base]

    def verdict(metric, a, b, threshold=5.0):
        v = judge_metric(metric, [_run(a)], [_run(b)], [float(np.median(a))], [float(np.median(b))], threshold)
        return v.verdict

    assert verdict(latency, base, same) == "stable"
    assert verdict(latency, base, slower) == "regression"
    assert verdict(latency, slower, base) == "improvement"
    shuffled = quiet_samples(seed=1)  # another draw of the same distribution: a moved median, the same process
    # never a regression; at a 0.5% threshold a ±1% interval may be "too noisy to judge" (unreliable)
    assert verdict(latency, base, shuffled, threshold=0.5) in ("~", "stable", "unreliable")
    fps = BY_NAME["throughput.fps_p50"]
    v = judge_metric(fps, [_run(base)], [_run(slower)], [100.0], [100 / 1.2], 5.0)
    assert v.verdict == "regression" and v.delta_pct == pytest.approx(-100 / 6, rel=1e-6)
    assert v.ci_pct[0] < v.delta_pct < v.ci_pct[1] < 0
    memory = BY_NAME["memory.peak_gpu_mem_MB"]
    v = judge_metric(memory, [_run(base)], [_run(base)], [100.0], [90.0], 5.0)
    assert (v.verdict, v.delta_pct, v.method) == ("improvement", pytest.approx(-10.0), "threshold only")
    loaded = judge_metric(latency, [_run(base)], [_run(slower, ("loaded",))], [10.0], [12.0], 5.0)
    assert loaded.verdict == "unreliable" and "loaded" in loaded.note


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
    assert not report.has_regressions and report.regressions == [] and report.improvements == []
    latency = [c for c in report.changes if c.metric.startswith("latency.")]
    assert latency and all(c.delta_pct == 0 for c in latency)
    # 5 samples a side: no interval, so no verdict — not even "stable" (a Δ of 0 without its uncertainty)
    assert {c.verdict for c in latency} == {"no_verdict"} and all("an interval needs 20" in c.note for c in latency)


def test_samples_times_1_2_is_a_regression_and_fails_the_gate(real_record, tmp_path):
    base = with_samples(real_record, quiet_samples())
    cur = with_samples(real_record, [s * 1.2 for s in base["samples_ms"]])
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", "--output", "report.json",
                       cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Regressions: 4 metrics in 1 setting" in proc.stdout and "+20.0%" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["has_regressions"] is True and report["summary"]["regressions"] == 4
    p50 = next(r for r in report["regressions"] if r["metric"] == "latency.p50_ms")
    assert p50["delta_pct"] == pytest.approx(20.0) and 10 < p50["ci_pct"][0] < 20 < p50["ci_pct"][1] < 30
    assert p50["runs"] == [1, 1] and "1 run each: run-to-run variance not measured" in p50["note"]
    assert "bootstrap" in p50["test"] and p50["baseline"] == pytest.approx(base["latency"]["p50_ms"])
    fps = next(r for r in report["regressions"] if r["metric"] == "throughput.fps_p50")
    assert fps["delta_pct"] == pytest.approx(-100 / 6)
    # 40 samples: the tails get an interval, no verdict (a p95 verdict needs 200 samples per side)
    assert {r["metric"] for r in report["no_verdict"]} == {"latency.p95_ms", "latency.p99_ms"}
    # without the flag the verdict is printed, the exit status stays 0
    assert compare_cli("--baseline", a, "--current", b, cwd=tmp_path).returncode == 0
    # and the other way round it is an improvement
    assert len(compare_sources(b, a).improvements) == 4


def test_times_1_2_on_three_noisy_samples_is_unreliable(real_record, tmp_path):
    base = with_samples(real_record, [10.0, 14.0, 9.0])
    cur = with_samples(real_record, [s * 1.2 for s in base["samples_ms"]])
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "0 regressions" in proc.stdout
    report = compare_sources(a, b)
    assert not report.has_regressions and not report.improvements
    # IQR 50% of the median: very noisy runs are no evidence either way
    assert {c.metric for c in report.unreliable} >= {"latency.p50_ms", "latency.p95_ms", "throughput.fps_p50"}
    assert all("very noisy" in c.note for c in report.unreliable)


def test_thresholds_per_metric_apply(real_record, tmp_path):
    base = with_samples(real_record, quiet_samples())
    cur = with_samples(real_record, [s * 1.04 for s in base["samples_ms"]])  # +4%: beyond noise, under 5%
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    assert compare_cli("--baseline", a, "--current", b, "--fail-on-regression", cwd=tmp_path).returncode == 0
    proc = compare_cli("--baseline", a, "--current", b, "--threshold", "latency.p50_ms=3", "--fail-on-regression",
                       cwd=tmp_path)
    assert proc.returncode == 1
    report = compare_sources(a, b, {"latency.p50_ms": 3.0})
    assert [c.metric for c in report.regressions] == ["latency.p50_ms"]
    assert report.regressions[0].threshold == 3.0
    # a global threshold of 3 catches the latency metrics with a verdict; 10 on throughput keeps FPS stable
    (tmp_path / "th.yaml").write_text("default: 3\nthroughput: 10\n")
    proc = compare_cli("--baseline", a, "--current", b, "--thresholds", "th.yaml", "--output", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(r["metric"] for r in report["regressions"]) == ["latency.mean_ms", "latency.p50_ms"]
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


def test_hand_edited_latency_is_shown_without_a_verdict(real_record, tmp_path):
    """A slowdown typed into the latency block (samples left alone): no interval, so no verdict — but not hidden."""
    cur = copy.deepcopy(real_record)
    for k in ("mean_ms", "median_ms", "p50_ms", "p95_ms", "p99_ms"):
        cur["latency"][k] *= 1.3
    a, b = save(tmp_path / "a.json", real_record), save(tmp_path / "b.json", cur)
    report = compare_sources(a, b)
    latency = {c.metric: c for c in report.no_verdict if c.metric.startswith("latency")}
    assert set(latency) == {"latency.mean_ms", "latency.p50_ms", "latency.p95_ms", "latency.p99_ms"}
    assert latency["latency.p50_ms"].current == pytest.approx(1.3 * latency["latency.p50_ms"].baseline)
    assert all("edited by hand" in (c.note or "") for c in latency.values())


def test_a_loaded_side_is_unreliable_and_can_fail_the_gate(real_record, tmp_path):
    base = with_samples(real_record, quiet_samples())
    cur = with_samples(real_record, [s * 1.5 for s in base["samples_ms"]])
    cur["telemetry"].update(loaded=True, other_cpu_cores=1.7, cpu_cores=2)
    a, b = save(tmp_path / "a.json", base), save(tmp_path / "b.json", cur)
    proc = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", "--output", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout  # never a regression ...
    assert "UNRELIABLE" in proc.stdout and "current: 1 of 1 run(s) loaded" in proc.stdout
    assert "loaded: other processes kept 1.7 of 2 cores busy" in proc.stdout  # the details, in the warning
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["has_unreliable"] and report["summary"]["regressions"] == 0
    assert {r["metric"] for r in report["unreliable"]} >= {"latency.p50_ms", "throughput.fps_p50"}
    assert report["flagged_runs"][0]["side"] == "current" and any("loaded" in w for w in report["warnings"])
    strict = compare_cli("--baseline", a, "--current", b, "--fail-on-unreliable", cwd=tmp_path)
    assert strict.returncode == 3  # ... but CI can refuse to pass on a bad machine (3: add rounds, or rerun)
    both = compare_cli("--baseline", a, "--current", b, "--fail-on-regression", "--fail-on-unreliable", cwd=tmp_path)
    assert both.returncode == 3


def test_replicates_are_groups_judged_from_run_medians(real_record, tmp_path):
    rng = np.random.default_rng(7)
    for side, factor in (("base", 1.0), ("cur", 1.10)):
        for i in range(5):
            level = factor * float(np.exp(rng.normal(0, 0.01)))
            rec = with_samples(real_record, [s * level for s in quiet_samples(seed=i)])
            rec["metadata"]["repeat"] = i
            save(tmp_path / side / str(i) / "result.json", rec)
    report = compare_sources(tmp_path / "base", tmp_path / "cur")
    p50 = next(c for c in report.changes if c.metric == "latency.p50_ms")
    assert p50.verdict == "regression" and p50.runs == [5, 5] and "Mann-Whitney" in p50.test
    assert p50.ci_pct[0] > 0 and p50.note is None and report.matched == 1


def test_interleaved_replicates_are_paired_and_drift_cancels(real_record, tmp_path):
    """The README's CI workflow: base run r, current run r, alternating, on a machine that drifts by 40%."""
    drift = [1.0, 1.4, 0.95, 1.25, 1.1]
    for side, factor, offset in (("base", 1.0, 0), ("same", 1.0, 1), ("slow", 1.10, 1)):
        for i, level in enumerate(drift):
            rec = with_samples(real_record, [s * level * factor for s in quiet_samples(seed=10 * i + offset)])
            rec["metadata"]["repeat"] = i
            rec["provenance"]["started_at"] = f"2026-11-24T20:00:{10 * i + 5 * offset:02d}+00:00"
            save(tmp_path / side / str(i) / "result.json", rec)
    aa = compare_cli("--baseline", "base", "--current", "same", "--fail-on-regression", "--output", "aa.json",
                     cwd=tmp_path)
    assert aa.returncode == 0, aa.stdout
    p50 = next(c for c in json.loads((tmp_path / "aa.json").read_text())["stable"] if c["metric"] == "latency.p50_ms")
    assert p50["test"].startswith("paired runs") and p50["runs"] == [5, 5] and abs(p50["delta_pct"]) < 2
    slow = compare_sources(tmp_path / "base", tmp_path / "slow")
    p50 = next(c for c in slow.changes if c.metric == "latency.p50_ms")
    assert p50.verdict == "regression" and p50.test.startswith("paired runs") and p50.ci_pct[0] > 5.0


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
    text = render(report)
    assert "Failed: 1 setting" in text and "Only in baseline: 1 setting" in text and "1 unmatched" in text


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
    assert {c.metric for c in report.regressions} == {"latency.mean_ms", "latency.p50_ms", "throughput.fps_mean",
                                                        "throughput.fps_p50", "throughput.items_per_s"}
    assert {c.metric for c in report.no_verdict} == {"latency.p95_ms", "latency.p99_ms"}  # 40 samples: no tail verdict
    assert report.has_regressions and report.to_dict()["summary"]["regressions"] == 5
    assert not compare_sources(base, copy.deepcopy(base)).has_regressions
    noisy = compare_sources(_suite([10.0, 13.0, 9.0], 3200.0), _suite([12.0, 15.6, 10.8], 2560.0))
    assert not noisy.has_regressions and not noisy.within_noise  # 3 samples: no interval, so no verdict
    assert {c.metric for c in noisy.no_verdict} >= {"latency.p50_ms", "latency.mean_ms", "throughput.items_per_s"}
