"""Each backend's Δ% against eager PyTorch for the same model and setting: the intervals and verdict marks are the
ones between variants (``analysis.verdicts``), with replicates (run-level) and with one run each (within-run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medbench.analysis import verdicts
from medbench.analysis.backend_delta import backend_delta_table, caveats
from medbench.analysis.replicates import Run

SETTING = {"imgsz": 320, "batch": 1, "device": "cpu", "precision": "fp32", "variant": ""}


def _samples(center: float, seed: int, n: int = 60) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    return tuple(float(v) for v in center * (1 + 0.01 * rng.standard_normal(n)))


def _sweep(points: list[tuple[str, str, float]], flags: dict[int, tuple[str, ...]] | None = None,
           rounds: int | None = None):
    """A runs table and its ``Run``s: one row per (model, backend, centre), samples around the centre; with
    ``rounds`` the points are that many interleaved rounds (replicate index and start time recorded)."""
    rows, runs = [], {}
    per_round = len(points) // rounds if rounds else None
    for i, (model, backend, center) in enumerate(points):
        samples = _samples(center, seed=i)
        run = Run(float(np.median(samples)), samples, (flags or {}).get(i, ()), f"run{i}",
                  {"mean_ms": float(np.mean(samples))}, i // per_round if per_round else None,
                  1.7e9 + 10.0 * i if per_round else None)
        runs[f"run{i}"] = run
        rows.append({"model": model, **SETTING, "backend": backend, "status": "ok", "run_dir": f"run{i}",
                     "latency_p50_ms": run.p50_ms, "latency_mean_ms": run.values["mean_ms"],
                     "latency_p95_ms": float(np.percentile(samples, 95)), "fps": 1000 / run.p50_ms,
                     "params_M": 3.2, "gflops": 8.7, "peak_gpu_mem_MB": float("nan"),
                     "flag": ", ".join(run.flags)})
    return pd.DataFrame(rows), runs


def test_replicates_give_the_run_level_interval_and_verdict_of_variants():
    points = []
    for r in range(3):  # interleaved rounds: three runs per backend, run medians differ by ~1%
        points += [("ghost", "pytorch", 10.0 * (1 + 0.01 * r)), ("ghost", "onnxruntime", 7.0 * (1 + 0.012 * r)),
                   ("ghost", "openvino", 10.1 * (1 + 0.009 * r)), ("baseline", "pytorch", 20.0),
                   ("baseline", "onnxruntime", 30.0)]
    table, runs = _sweep(points)
    table = pd.concat([table, table.iloc[[1]].assign(status="failed", latency_p50_ms=0.1)])  # never counts
    d = backend_delta_table(table, runs, "pytorch").set_index(["model", "backend"])
    assert len(d) == 5 and set(d["runs"]) == {"3/3"}
    pt = [runs[f"run{i}"] for i in range(0, 15, 5)]
    for backend, want in [("onnxruntime", "faster"), ("openvino", "same")]:
        other = [runs[f"run{i + (1 if backend == 'onnxruntime' else 2)}"] for i in range(0, 15, 5)]
        j = verdicts.judge(pt, other, "median", 5.0)
        row = d.loc[("ghost", backend)]
        assert j.mode == "runs" and row["verdict"] == j.mark == want
        assert (row["d_latency_p50_pct"], row["d_p50_ci_lo_pct"], row["d_p50_ci_hi_pct"]) == \
            (j.delta.estimate, j.delta.lo, j.delta.hi)
        assert verdicts.ONE_RUN_CAVEAT not in row["note"] and "interval 90%" in row["note"]  # 3 vs 3 reach 90%
    assert d.loc[("ghost", "onnxruntime"), "d_latency_p50_pct"] == pytest.approx(-30, abs=1.5)
    assert d.loc[("baseline", "onnxruntime"), "verdict"] == "slower"  # against baseline's own pytorch runs
    assert d.loc[("baseline", "onnxruntime"), "d_latency_p50_pct"] == pytest.approx(50, abs=1)
    assert d.loc[("ghost", "pytorch"), "verdict"] == "(baseline)" and d.loc[("ghost", "pytorch"), "d_latency_p50_pct"] == 0
    flat = backend_delta_table(table, runs, "pytorch")
    assert flat.attrs["base"] == "pytorch" and flat[["d_params_pct", "d_gflops_pct"]].isna().all().all()
    assert list(zip(flat["model"], flat["backend"]))[:4] == [("ghost", "pytorch"), ("ghost", "onnxruntime"),
                                                             ("ghost", "openvino"), ("baseline", "pytorch")]


def test_interleaved_replicates_are_paired_as_between_variants():
    points = []
    for r, drift in enumerate([1.0, 1.3, 0.9, 1.1]):  # the machine drifts between rounds; the pairs cancel it
        points += [("ghost", "pytorch", 10.0 * drift), ("ghost", "onnxruntime", 7.0 * drift)]
    table, runs = _sweep(points, rounds=4)
    row = backend_delta_table(table, runs, "pytorch").set_index("backend").loc["onnxruntime"]
    j = verdicts.judge([runs[f"run{i}"] for i in range(0, 8, 2)], [runs[f"run{i}"] for i in range(1, 8, 2)])
    assert j.mode == "paired" and j.delta.confidence == 0.95 and row["verdict"] == j.mark == "faster"
    assert (row["d_latency_p50_pct"], row["d_p50_ci_lo_pct"], row["d_p50_ci_hi_pct"]) == \
        (j.delta.estimate, j.delta.lo, j.delta.hi)
    assert row["d_latency_p50_pct"] == pytest.approx(-30, abs=1) and row["d_p50_ci_hi_pct"] < -25  # drift cancelled
    assert row["runs"] == "4/4" and row["note"] == ""


def test_one_run_each_uses_the_within_run_interval_with_its_caveat():
    table, runs = _sweep([("eca", "pytorch", 10.0), ("eca", "openvino", 8.0), ("eca", "torchscript", 10.2),
                          ("p2", "onnxruntime", 5.0)])
    d = backend_delta_table(table, runs, "pytorch").set_index(["model", "backend"])
    j = verdicts.judge([runs["run0"]], [runs["run1"]], "median", 5.0)
    row = d.loc[("eca", "openvino")]
    assert j.mode == "within-run" and row["verdict"] == "faster" == j.mark
    assert (row["d_p50_ci_lo_pct"], row["d_p50_ci_hi_pct"]) == (j.delta.lo, j.delta.hi)
    assert row["d_p50_ci_lo_pct"] < row["d_latency_p50_pct"] < row["d_p50_ci_hi_pct"] < 0
    assert verdicts.ONE_RUN_CAVEAT in row["note"] and d.loc[("eca", "torchscript"), "verdict"] == "same"
    missing = d.loc[("p2", "onnxruntime")]  # no eager run of p2 at this setting: blank, said why
    assert np.isnan(missing["d_latency_p50_pct"]) and missing["verdict"] == ""
    assert missing["note"] == "no pytorch run at this setting"
    lines = caveats(backend_delta_table(table, runs, "pytorch"))
    assert len(lines) == 1 and lines[0].startswith(f"backend Δ%: {verdicts.ONE_RUN_CAVEAT}")


def test_a_flagged_baseline_run_makes_the_backend_verdict_unreliable():
    points = [p for _ in range(3) for p in (("eca", "pytorch", 10.0), ("eca", "onnxruntime", 7.0))]
    table, runs = _sweep(points, flags={0: ("loaded: other processes kept 1.5 of 2 cores busy",)})
    d = backend_delta_table(table, runs, "pytorch").set_index("backend")
    assert d.loc["onnxruntime", "verdict"] == "unreliable" and np.isnan(d.loc["onnxruntime", "d_p50_ci_lo_pct"])
    assert d.loc["pytorch", "runs"] == "2/3" and "loaded" in d.loc["pytorch", "note"]
    lines = caveats(backend_delta_table(table, runs, "pytorch"))
    assert any(line.startswith("backend Δ%: eca onnxruntime at imgsz=320") and "unreliable" in line for line in lines)


def test_no_backend_column_or_no_runs_gives_an_empty_table():
    assert backend_delta_table(pd.DataFrame(), {}, "pytorch").empty
    table, runs = _sweep([("eca", "pytorch", 10.0)])
    only_base = backend_delta_table(table.drop(columns="backend"), runs)
    assert only_base.empty and only_base.attrs["base"] == "pytorch"
