"""The Pareto front on hand-made runs tables: front, dominated-by, noise, replicates, per setting, GFLOPs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medbench.analysis.pareto import accuracy_column, pareto
from medbench.analysis.intervals import median_ci


def _row(model: str, acc: float | None, p50: float, lo: float = math.nan, hi: float = math.nan, *,
         imgsz: int = 640, gflops: float = 8.0, flag: str = "", **extra) -> dict:
    return {"model": model, "imgsz": imgsz, "batch": 1, "device": "cpu", "precision": "fp32", "backend": "pytorch",
            "variant": "", "status": "ok", "flag": flag, "latency_p50_ms": p50, "p50_ci_lo_ms": lo,
            "p50_ci_hi_ms": hi, "gflops": gflops, "params_M": 3.0, "map50_95_pct": acc, "top1_pct": None, **extra}


def _by_model(front) -> dict[str, pd.Series]:
    return {r["model"]: r for _, r in front.table.iterrows()}


def test_front_dominated_by_and_within_noise() -> None:
    table = pd.DataFrame([
        _row("baseline", 40.0, 10.0, 9.5, 10.5), _row("ghost", 38.0, 8.0, 7.8, 8.2),
        _row("eca", 41.0, 10.2, 9.9, 10.5), _row("p2", 39.0, 12.0, 11.8, 12.2),
        _row("eca2", 40.0, 10.1, 9.6, 10.6), _row("rand", None, 5.0, 4.9, 5.1),
        _row("failed", 50.0, math.nan, status="failed"),
    ])
    front = pareto(table)
    assert front.accuracy == "map50_95_pct" and front.cost == "latency_p50_ms"
    rows = _by_model(front)
    assert {m for m, r in rows.items() if r["status"] == "front"} == {"baseline", "ghost", "eca"}
    assert rows["p2"]["status"] == "dominated" and rows["p2"]["dominated_by"] == "baseline, eca, eca2"
    assert rows["p2"]["note"] == ""  # intervals apart: a clear domination
    assert rows["eca2"]["dominated_by"] == "baseline"
    assert rows["eca2"]["note"] == "within noise: latency intervals overlap with baseline"
    assert rows["rand"]["status"] == "no accuracy" and rows["rand"]["dominated_by"] == ""
    assert "failed" not in rows  # only ok runs are points
    assert (rows["baseline"]["cost_lo"], rows["baseline"]["cost_hi"], rows["baseline"]["interval"]) == (
        9.5, 10.5, "within run 95%")


def test_replicates_give_run_level_intervals_and_flagged_runs_are_left_out() -> None:
    base = [9.0, 10.0, 11.0, 10.5, 9.5]
    ghost = [7.0, 7.2, 7.4, 7.1, 7.3, 7.6, 7.5]
    table = pd.DataFrame([_row("baseline", 40.0, v, v - 0.1, v + 0.1, repeat=i) for i, v in enumerate(base)]
                         + [_row("baseline", 40.0, 99.0, 98.0, 100.0, flag="loaded")]
                         + [_row("ghost", 38.0, v, v - 0.1, v + 0.1) for v in ghost])
    rows = _by_model(pareto(table))
    b = rows["baseline"]
    assert b["runs"] == "5/6" and b["cost"] == pytest.approx(np.median(base))  # the loaded run is not evidence
    assert (b["cost_lo"], b["cost_hi"], b["interval"]) == (9.0, 11.0, "5 runs range 94%")
    ci = median_ci(ghost)
    g = rows["ghost"]
    assert (g["cost_lo"], g["cost_hi"]) == (ci.lo, ci.hi) and g["interval"] == f"7 runs {ci.confidence:.0%}"
    assert b["status"] == g["status"] == "front" and b["note"] == ""
    flagged = _by_model(pareto(table.assign(flag="loaded")))["baseline"]
    assert flagged["runs"] == "0/6" and flagged["note"].startswith("no clean run")


def test_each_setting_has_its_own_front_and_gflops_has_no_noise_notes() -> None:
    table = pd.DataFrame([_row("baseline", 40.0, 10.0, 9.0, 11.0, gflops=8.7),
                          _row("ghost", 38.0, 10.5, 9.0, 11.0, gflops=5.1),
                          _row("baseline", 40.0, 30.0, 29.0, 31.0, imgsz=1280, gflops=34.8),
                          _row("ghost", 38.0, 20.0, 19.0, 21.0, imgsz=1280, gflops=20.4)])
    front = pareto(table)
    settings = dict(front.settings())
    assert list(settings) == ["imgsz=640 batch=1 cpu fp32", "imgsz=1280 batch=1 cpu fp32"]
    small = settings["imgsz=640 batch=1 cpu fp32"].set_index("model")
    assert small.loc["ghost", "status"] == "dominated" and "within noise" in small.loc["ghost", "note"]
    assert set(settings["imgsz=1280 batch=1 cpu fp32"]["status"]) == {"front"}  # ghost is faster there
    by_flops = pareto(table, cost="gflops")
    assert set(by_flops.table["status"]) == {"front"} and set(by_flops.table["note"]) == {""}
    assert by_flops.cost_label == "GFLOPs" and by_flops.accuracy_label == "mAP50-95 (%)"
    assert by_flops.table["cost_lo"].isna().all()  # GFLOPs are exact: no interval


def test_headline_accuracy_and_no_accuracy_at_all() -> None:
    table = pd.DataFrame([_row("cls", None, 3.0, top1_pct=71.0), _row("det", None, 4.0)])
    assert accuracy_column(table) == "top1_pct"
    assert accuracy_column(table.assign(map50_95_pct=[None, 30.0])) == "map50_95_pct"
    none = pareto(table.assign(top1_pct=None))
    assert none.accuracy is None and set(none.table["status"]) == {"no accuracy"}
    with pytest.raises(ValueError):
        pareto(table, cost="fps")
