"""The ablation table of a study: one row per (setting, model), replicates aggregated (pure: DataFrames in and out).

What a paper reports per variant: params (exact count and millions), GFLOPs, latency mean / p50 / p95, FPS, GPU
memory — each the median over the clean runs of that model at that setting (all its runs when none is clean) — the
p50's interval, and Δ% of p50 against the baseline with its 95% interval and verdict mark (from the Δ% table,
``medbench.analysis.deltas``). Rendered as Markdown and LaTeX by ``medbench.cli.paper``.

The p50 interval: one run → that run's distribution-free interval of its median (``latency.p50_ci95_ms``); several
runs → the order-statistic interval of the run medians (``intervals.median_ci_ranks``) at 95%, or, with fewer than
6 runs, the range of the run medians with the coverage it really has (3 runs: 75%, 5 runs: 94%) in ``p50_ci_conf``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medbench.analysis.deltas import GROUP
from medbench.analysis.intervals import median_ci_ranks

VALUES = ["params_M", "gflops", "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "fps", "peak_gpu_mem_MB"]
COLUMNS = [*GROUP, "model", "runs", "params", *VALUES, "p50_ci_lo_ms", "p50_ci_hi_ms", "p50_ci_conf",
           "d_latency_p50_pct", "d_p50_ci_lo_pct", "d_p50_ci_hi_pct", "verdict", "is_baseline"]


def _key(row: Any) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in [*GROUP, "model"])


def _p50_interval(rows: pd.DataFrame) -> tuple[float, float, float]:
    """(lo, hi, coverage) of the p50 of ``rows`` (see the module docstring); NaNs when it cannot be had."""
    p50s = np.sort(pd.to_numeric(rows["latency_p50_ms"], errors="coerce").dropna().to_numpy(dtype=float))
    if len(p50s) == 1:
        lo, hi = float(rows["p50_ci_lo_ms"].iloc[0]), float(rows["p50_ci_hi_ms"].iloc[0])
        return (lo, hi, 0.95) if np.isfinite(lo) and np.isfinite(hi) else (np.nan, np.nan, np.nan)
    if len(p50s) < 2:
        return np.nan, np.nan, np.nan
    ranks = median_ci_ranks(len(p50s))
    if ranks is None:  # fewer than 6 runs: [min, max] covers the median with probability 1 - 2 * 0.5^n
        return float(p50s[0]), float(p50s[-1]), 1.0 - 2.0 * 0.5 ** len(p50s)
    k, j, reached = ranks
    return float(p50s[k - 1]), float(p50s[j - 1]), reached


def ablation_table(table: pd.DataFrame, delta: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """One row per (setting, model) of the ok runs, in the runs table's order; Δ% columns from ``delta``."""
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok = table[table["status"] == "ok"]
    by_key = {_key(r): r for _, r in delta.iterrows()} if not delta.empty else {}
    rows = []
    for _, setting in ok.groupby(GROUP, sort=False, dropna=False):
        for model, runs in setting.groupby("model", sort=False, dropna=False):
            clean = runs[runs["flag"].fillna("") == ""]
            used = clean if len(clean) else runs
            first = runs.iloc[0]
            out: dict[str, Any] = {k: first[k] for k in [*GROUP, "model"]}
            out["runs"] = f"{len(clean)}/{len(runs)}"
            counts = pd.to_numeric(used["params"], errors="coerce").dropna() if "params" in used else pd.Series()
            out["params"] = int(counts.median()) if len(counts) else None
            out |= {c: float(pd.to_numeric(used[c], errors="coerce").median()) for c in VALUES}
            out["p50_ci_lo_ms"], out["p50_ci_hi_ms"], out["p50_ci_conf"] = _p50_interval(used)
            d = by_key.get(_key(out))
            for c in ("d_latency_p50_pct", "d_p50_ci_lo_pct", "d_p50_ci_hi_pct"):
                out[c] = float(d[c]) if d is not None else np.nan
            out["verdict"] = str(d["verdict"]) if d is not None else ""
            out["is_baseline"] = model == baseline
            rows.append(out)
    return pd.DataFrame(rows, columns=COLUMNS)


def only_baseline(delta: pd.DataFrame, baseline: str | None) -> bool:
    """True when the Δ% table would compare the baseline with itself only (all zeros: not worth a table)."""
    return not delta.empty and set(map(str, delta["model"])) <= {str(baseline)}
