"""The Δ% table of a sweep: each variant against the baseline model at the same setting, replicates aggregated.

One row per (setting, model): how many runs (clean / all), the median of the run medians and their spread, and
Δ% of p50 latency against the baseline at that setting with its 95% interval and a verdict mark (``slower`` /
``faster`` / ``~`` / ``same`` / ``unreliable``; ``medbench.analysis.verdicts``). The other Δ% columns of the metric
table compare medians over the clean runs. Flagged runs (loaded, throttled, very noisy) stay in the runs table,
are counted here and are never used for a verdict. Pure: a runs table and ``Run`` objects in, a DataFrame out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from medbench.analysis import verdicts
from medbench.analysis.replicates import Group, Run
from medbench.results.metrics import DELTAS

SETTING = ["model", "imgsz", "batch", "device", "precision", "backend"]
GROUP = ["imgsz", "batch", "device", "precision", "backend", "variant"]  # a comparison: same everything but the model
DELTA_HEADERS = {"runs": "runs", "p50_ms": "p50 ms (median of runs)", "spread_pct": "spread %",
                 "d_latency_p50_pct": "p50 Δ%", "d_p50_ci_lo_pct": "95% CI lo", "d_p50_ci_hi_pct": "95% CI hi",
                 "verdict": "verdict", **{m.delta_column: m.delta_label for m in DELTAS}}
COLUMNS = [*SETTING, "variant", "baseline", *DELTA_HEADERS, "note"]
DEFAULT_THRESHOLD = 5.0  # percent, as the compare gate


def _pct(value: float, base: float) -> float:
    if not (np.isfinite(value) and np.isfinite(base)) or base == 0:
        return float("nan")
    return (value - base) / base * 100.0


def _median(rows: pd.DataFrame, column: str) -> float:
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else float("nan")


def _group(rows: pd.DataFrame, runs: Mapping[str, Run]) -> Group:
    """The rows' runs: from ``runs`` (with samples) by run_dir, else from the table row (median and flags only)."""
    out = []
    for _, row in rows.iterrows():
        run = runs.get(str(row.get("run_dir")))
        if run is None and np.isfinite(row["latency_p50_ms"]) and row["latency_p50_ms"] > 0:
            flag = row.get("flag")
            run = Run(float(row["latency_p50_ms"]), None, tuple(str(flag).split(", ")) if flag else ())
        if run is not None:
            out.append(run)
    return Group(tuple(out))


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _clean_rows(rows: pd.DataFrame, g: Group) -> pd.DataFrame:
    """The rows of clean runs (all rows when none is clean: their numbers are shown, never judged)."""
    if len(g.runs) != len(rows) or not g.clean:
        return rows
    return rows[[not r.flags for r in g.runs]]


def _row(rows: pd.DataFrame, g: Group, base_rows: pd.DataFrame | None, base: Group | None, base_name: str,
         threshold: float) -> dict[str, object]:
    clean = _clean_rows(rows, g)
    first = rows.iloc[0]
    out: dict[str, object] = {k: first[k] for k in [*SETTING, "variant"]}
    out |= {"baseline": base_name if base is not None else None, "runs": f"{len(g.clean)}/{len(g.runs)}",
            "p50_ms": g.median_of_medians(clean_only=bool(g.clean)),
            "spread_pct": _nan(g.spread_pct(clean_only=bool(g.clean)))}
    notes = []
    if g.flagged:
        notes.append(f"{len(g.flagged)} of {len(g.runs)} run(s) {verdicts.short_flags(g.flagged)}")
    if base is None or base_rows is None:
        notes.append(f"no {base_name} run at this setting")
        out |= {k: float("nan") for k in ("d_latency_p50_pct", "d_p50_ci_lo_pct", "d_p50_ci_hi_pct")}
        out |= {m.delta_column: float("nan") for m in DELTAS} | {"verdict": ""}
        return out | {"note": "; ".join(notes)}
    base_clean = _clean_rows(base_rows, base)
    out |= {m.delta_column: _pct(_median(clean, m.column), _median(base_clean, m.column)) for m in DELTAS}
    if g is base:
        out |= {"d_latency_p50_pct": 0.0, "d_p50_ci_lo_pct": float("nan"), "d_p50_ci_hi_pct": float("nan"),
                "verdict": "(baseline)"}
        return out | {"note": "; ".join(notes)}
    j = verdicts.judge(base.runs, g.runs, "median", threshold)
    delta = j.delta
    base_p50 = _nan(base.median_of_medians(clean_only=bool(base.clean)))
    plain = _pct(float(out["p50_ms"]), base_p50)  # type: ignore[arg-type]
    out |= {"d_latency_p50_pct": delta.estimate if delta else plain,
            "d_p50_ci_lo_pct": delta.lo if delta else float("nan"),
            "d_p50_ci_hi_pct": delta.hi if delta else float("nan"), "verdict": j.mark}
    if delta is not None and delta.confidence < 0.95:
        notes.append(f"interval {delta.confidence:.0%} (the most {j.runs[0]} vs {j.runs[1]} runs give)")
    notes += [x for x in (j.caveat, j.reason) if x and not (x.startswith("current:") and g.flagged)]
    return out | {"note": "; ".join(notes)}


def delta_table(table: pd.DataFrame, runs: Mapping[str, Run], base_name: str | None,
                threshold: float = DEFAULT_THRESHOLD, axis: str = "model") -> pd.DataFrame:
    """Each (setting, model) of the ok runs against ``base_name`` at the same setting; ``runs`` by ``run_dir``.

    ``axis`` is the column compared (``model``: variants; ``backend``: runtimes of the same model and setting)."""
    if table.empty or base_name is None:
        return pd.DataFrame(columns=COLUMNS)
    ok = table[table["status"] == "ok"]
    group = [c for c in [*SETTING, "variant"] if c != axis]
    rows = []
    for _, setting in ok.groupby(group, sort=False, dropna=False):
        base_rows = setting[setting[axis] == base_name]
        base = _group(base_rows, runs) if len(base_rows) else None
        if base is not None and not base.runs:
            base = None
        for model, model_rows in setting.groupby(axis, sort=False, dropna=False):
            g = base if model == base_name and base is not None else _group(model_rows, runs)
            if not g.runs:
                continue
            rows.append(_row(model_rows, g, base_rows if base is not None else None, base, base_name, threshold))
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ["p50_ms", "spread_pct", "d_latency_p50_pct", "d_p50_ci_lo_pct", "d_p50_ci_hi_pct",
                *(m.delta_column for m in DELTAS)]:
        df[col] = df[col].astype(float)
    return df


def caveats(delta: pd.DataFrame) -> list[str]:
    """Table-level lines: the 1-run caveat and the unreliable rows."""
    out = []
    if not delta.empty and delta["note"].str.contains(verdicts.ONE_RUN_CAVEAT, regex=False).any():
        out.append(f"{verdicts.ONE_RUN_CAVEAT}: the intervals come from the samples within each run; run "
                   "replicates (-m repeat='range(5)') for intervals that include it")
    elif not delta.empty and delta["note"].str.contains(verdicts.FEW_RUNS_CAVEAT, regex=False).any():
        out.append(f"{verdicts.FEW_RUNS_CAVEAT} for some rows: their intervals come from within-run samples")
    bad = delta[delta["verdict"] == "unreliable"] if not delta.empty else delta
    for _, r in bad.iterrows():
        out.append(f"{r['model']} at imgsz={r['imgsz']} batch={r['batch']} {r['device']}: unreliable ({r['note']}); "
                   "the flagged runs are named in the warnings")
    return out
