"""The accuracy–cost Pareto front of a sweep: which variants are worth it, per setting (pure: tables in, tables out).

Per setting (imgsz, batch, device, precision, backend, variant: the comparison groups of the Δ% table) each model
is one point: its validation accuracy (the record's ``accuracy`` block) against a cost, the median p50 latency of
its runs or its GFLOPs. A point is on the *front* when no other point of the setting is at least as accurate and
at least as cheap (and strictly better in one); a dominated point names the points that dominate it.

Latency carries its uncertainty: with replicates the interval is that of the median of the run medians (order
statistics over runs, with the coverage it reaches: 2–5 runs give the range of the run medians, 75–94%); a single
run shows its within-run interval of the median (``latency.p50_ci95_ms``), which leaves run-to-run variance out.
A domination that rests on latencies whose intervals overlap is marked ``within noise``. Flagged runs (loaded,
throttled, very noisy) are left out when the model has clean runs, as in the Δ% table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medbench.analysis.ablation import _p50_interval as p50_interval  # the p50 interval of the ablation table
from medbench.analysis.deltas import GROUP
from medbench.results.metrics import ACCURACY

ACCURACY_PREFERENCE = ("map50_95_pct", "top1_pct", "map50_pct")  # the headline accuracy, first one present
COSTS = {"latency_p50_ms": "latency p50 per batch (ms)", "gflops": "GFLOPs"}
COLUMNS = [*GROUP, "model", "runs", "accuracy", "cost", "cost_lo", "cost_hi", "interval", "params_M",
           "status", "dominated_by", "note"]
ON_FRONT, DOMINATED, NO_ACCURACY, NO_COST = "front", "dominated", "no accuracy", "no cost"


@dataclass(frozen=True)
class Front:
    """One Pareto table: which accuracy and cost columns it used, and one row per (setting, model)."""

    accuracy: str | None  # column of the runs table, e.g. map50_95_pct (None: no run has any accuracy)
    cost: str
    table: pd.DataFrame  # COLUMNS

    @property
    def accuracy_label(self) -> str:
        labels = {m.column: f"{m.label} (%)" for m in ACCURACY}
        return labels.get(self.accuracy or "", "accuracy")

    @property
    def cost_label(self) -> str:
        return COSTS.get(self.cost, self.cost)

    def settings(self) -> list[tuple[str, pd.DataFrame]]:
        """``(label, rows)`` per setting, in table order."""
        out = []
        for _, rows in self.table.groupby(GROUP, sort=False, dropna=False):
            first = rows.iloc[0]
            label = f"imgsz={first['imgsz']} batch={first['batch']} {first['device']} {first['precision']}"
            label += "" if first["backend"] in ("pytorch", None) else f" {first['backend']}"
            out.append((f"{label} {first['variant']}" if first.get("variant") else label, rows))
        return out


def accuracy_column(table: pd.DataFrame) -> str | None:
    """The headline accuracy of the ok runs: mAP50-95, else top-1, else mAP50 (None when no run has one)."""
    if table.empty:
        return None
    ok = table[table["status"] == "ok"]
    return next((c for c in ACCURACY_PREFERENCE if c in ok and ok[c].notna().any()), None)


def _interval(rows: pd.DataFrame) -> tuple[float, float, str]:
    """Latency interval of a model at one setting from its runs' p50: the ablation table's (one rule for both)."""
    n = int(rows["latency_p50_ms"].notna().sum())
    lo, hi, coverage = p50_interval(rows)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return math.nan, math.nan, f"{n} run{'s' if n != 1 else ''}, no interval"
    if n == 1:
        return lo, hi, f"within run {coverage:.0%}"
    return lo, hi, f"{n} runs {coverage:.0%}" if n >= 6 else f"{n} runs range {coverage:.0%}"


def points(table: pd.DataFrame, accuracy: str | None = None, cost: str = "latency_p50_ms") -> pd.DataFrame:
    """One row per (setting, model) of the ok runs: accuracy, cost (median over the clean runs) and its interval."""
    if table.empty or "status" not in table:
        return pd.DataFrame(columns=COLUMNS)
    ok = table[(table["status"] == "ok")]
    rows = []
    for keys, group in ok.groupby([*GROUP, "model"], sort=False, dropna=False):
        clean = group[group["flag"].fillna("") == ""] if "flag" in group else group
        used = clean if len(clean) else group
        acc = used[accuracy].dropna() if accuracy else pd.Series(dtype=float)
        values = used[cost].dropna()
        lo = hi = math.nan
        interval = ""
        if cost == "latency_p50_ms" and len(values):
            lo, hi, interval = _interval(used[used[cost].notna()])
        rows.append({**dict(zip([*GROUP, "model"], keys)), "runs": f"{len(clean)}/{len(group)}",
                     "accuracy": float(acc.median()) if len(acc) else math.nan,
                     "cost": float(values.median()) if len(values) else math.nan, "cost_lo": lo, "cost_hi": hi,
                     "interval": interval, "params_M": float(used["params_M"].median())
                     if "params_M" in used and used["params_M"].notna().any() else math.nan})
    return pd.DataFrame(rows, columns=COLUMNS)


def _dominates(b: pd.Series, a: pd.Series) -> bool:
    return (b["accuracy"] >= a["accuracy"] and b["cost"] <= a["cost"]
            and (b["accuracy"] > a["accuracy"] or b["cost"] < a["cost"]))


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    """The two latency intervals overlap (no interval on either side counts as overlapping: nothing is known)."""
    if not all(np.isfinite([a["cost_lo"], a["cost_hi"], b["cost_lo"], b["cost_hi"]])):
        return True
    return bool(a["cost_lo"] <= b["cost_hi"] and b["cost_lo"] <= a["cost_hi"])


def mark_front(pts: pd.DataFrame, with_intervals: bool = True) -> pd.DataFrame:
    """``status`` (front / dominated / no accuracy / no cost), ``dominated_by`` and ``note`` for each point, per
    setting. ``with_intervals``: note a domination whose latency intervals overlap as ``within noise``."""
    out = pts.copy()
    if out.empty:
        return out
    marks: dict[object, tuple[str, str, str]] = {}
    for _, group in out.groupby(GROUP, sort=False, dropna=False):
        usable = group[group["accuracy"].notna() & group["cost"].notna()]
        for i, a in group.iterrows():
            if pd.isna(a["accuracy"]):
                marks[i] = (NO_ACCURACY, "", "random init or no metrics")
                continue
            if pd.isna(a["cost"]):
                marks[i] = (NO_COST, "", "")
                continue
            by = [b for j, b in usable.iterrows() if j != i and _dominates(b, a)]
            noisy = [str(b["model"]) for b in by if with_intervals and _overlap(a, b)]
            notes = [f"within noise: latency intervals overlap with {', '.join(noisy)}"] if noisy else []
            if str(a["runs"]).startswith("0/"):
                notes.append("no clean run: from flagged (loaded / throttled / very noisy) runs")
            note = "; ".join(notes)
            marks[i] = (DOMINATED if by else ON_FRONT, ", ".join(str(b["model"]) for b in by), note)
    for k, col in enumerate(("status", "dominated_by", "note")):
        out[col] = [marks[i][k] for i in out.index]
    return out


def pareto(table: pd.DataFrame, cost: str = "latency_p50_ms", accuracy: str | None = None) -> Front:
    """The front of accuracy against ``cost`` (``latency_p50_ms`` or ``gflops``) for every setting of a runs table
    (``medbench.analysis.collate.results_table``)."""
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, not {cost!r}")
    acc = accuracy or accuracy_column(table)
    pts = points(table, acc, cost)
    return Front(acc, cost, mark_front(pts, with_intervals=cost == "latency_p50_ms"))
