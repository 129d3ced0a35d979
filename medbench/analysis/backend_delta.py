"""Δ% of each deployment backend against a baseline backend (eager ``pytorch`` by default) for the same model and
setting: "how much faster is this variant under ONNX Runtime than in eager PyTorch?".

Pure: the runs table in, a table out. Each point's Δ% is the ratio of medians of the two runs' own samples
(p50) and means; with replicates (``repeat``) of both, ``runs`` counts them and the Δ% compares the medians of
the per-run p50s, so one noisy run cannot decide it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEY = ["model", "imgsz", "batch", "device", "precision", "variant"]
METRICS = {"d_latency_p50_pct": "latency_p50_ms", "d_latency_mean_pct": "latency_mean_ms",
           "d_latency_p95_pct": "latency_p95_ms", "d_fps_pct": "fps"}
HEADERS = {"d_latency_p50_pct": "latency p50 Δ%", "d_latency_mean_pct": "latency mean Δ%",
           "d_latency_p95_pct": "latency p95 Δ%", "d_fps_pct": "FPS Δ%"}


def _pct(value: float, base: float) -> float:
    if not (np.isfinite(value) and np.isfinite(base)) or base == 0:
        return float("nan")
    return (value - base) / base * 100.0


def backend_delta_table(table: pd.DataFrame, base_backend: str = "pytorch") -> pd.DataFrame:
    """One row per (model, setting, backend) with ok runs: its p50/mean/p95/FPS Δ% against ``base_backend``'s
    runs of the same model and setting (medians over replicates); blank with a note where the base is missing."""
    cols = [*KEY, "backend", "runs", "latency_p50_ms", *METRICS, "note"]
    if table.empty or "backend" not in table:
        empty = pd.DataFrame(columns=cols)
        empty.attrs["base"] = base_backend
        return empty
    ok = table[table["status"] == "ok"].copy()
    ok["backend"] = ok["backend"].fillna("pytorch")
    rows = []
    for _, group in ok.groupby(KEY, sort=False, dropna=False):
        medians = group.groupby("backend", sort=False)[list(METRICS.values())].median()
        counts = group.groupby("backend", sort=False).size()
        base = medians.loc[base_backend] if base_backend in medians.index else None
        for backend, row in medians.iterrows():
            deltas = {d: (_pct(row[c], base[c]) if base is not None else float("nan")) for d, c in METRICS.items()}
            rows.append({**{k: group.iloc[0][k] for k in KEY}, "backend": backend, "runs": int(counts[backend]),
                         "latency_p50_ms": row["latency_p50_ms"], **deltas,
                         "note": "" if base is not None else f"no {base_backend} run of this model and setting"})
    df = pd.DataFrame(rows, columns=cols)
    for col in [*METRICS, "latency_p50_ms"]:
        df[col] = df[col].astype(float)
    df.attrs["base"] = base_backend
    return df
