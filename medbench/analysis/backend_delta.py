"""Δ% of each deployment backend against a baseline backend (eager ``pytorch`` by default) for the same model and
setting: "how much faster is this variant under ONNX Runtime than in eager PyTorch?".

The same table, intervals and verdict marks as between variants (``medbench.analysis.deltas``), with the backend as
the compared axis instead of the model: one row per (model, setting, backend), replicates aggregated (runs clean /
all, median of run medians, spread), p50 Δ% against the baseline backend's runs of the same model and setting with
its 95% interval (run-level with ≥ 3 clean runs per side, else from the samples within the runs, with the caveat
that run-to-run variance was not measured) and a verdict mark (slower / faster / ~ / same / unreliable). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from medbench.analysis import deltas
from medbench.analysis.deltas import COLUMNS, DEFAULT_THRESHOLD
from medbench.analysis.replicates import Run, run_from_record
from medbench.results.record import Record

AXIS = "backend"
DEFAULT_BASE = "pytorch"
# Params and GFLOPs are the source PyTorch model's for every backend: their Δ% between backends is 0 by definition,
# so it is left blank (renderers drop all-blank columns).
SAME_MODEL = ["d_params_pct", "d_gflops_pct"]


def runs_by_dir(records: Iterable[Record]) -> dict[str, Run]:
    """The ok records as ``Run``s (with their samples), keyed by run directory, as the Δ% tables look them up."""
    return {r.run_dir: run for r in records if r.status == "ok" and r.run_dir
            and (run := run_from_record(r, r.run_dir)) is not None}


def backend_delta_table(table: pd.DataFrame, runs: Mapping[str, Run] | None = None,
                        base_backend: str = DEFAULT_BASE, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per (model, setting, backend) with ok runs: p50 Δ% against ``base_backend`` for the same model and
    setting, with its 95% interval and verdict mark; blank with a note where that backend has no run.

    ``runs`` maps ``run_dir`` to its ``Run`` (with samples: intervals); rows without one are judged from the
    table's p50 alone (no interval). ``attrs['base']`` names the baseline backend."""
    if table.empty or AXIS not in table:
        df = pd.DataFrame(columns=COLUMNS)
    else:
        table = table.assign(backend=table[AXIS].fillna(DEFAULT_BASE))  # records from before backends: eager
        df = deltas.delta_table(table, runs or {}, base_backend, threshold, axis=AXIS)
    df[SAME_MODEL] = float("nan")
    if len(df):  # each model and setting together, the baseline backend first (the order of first appearance kept)
        key = df[[c for c in deltas.SETTING + ["variant"] if c != AXIS]].astype(str).agg("|".join, axis=1)
        first = {k: i for i, k in reversed(list(enumerate(key)))}
        order = pd.DataFrame({"g": key.map(first), "b": df[AXIS] != base_backend})
        df = df.loc[order.sort_values(["g", "b"], kind="stable").index].reset_index(drop=True)
    df.attrs["base"] = base_backend
    return df


def caveats(delta: pd.DataFrame) -> list[str]:
    """The table-level lines of ``deltas.caveats`` (1-run caveat, unreliable rows), rows named model + backend."""
    if delta.empty:
        return []
    named = delta.assign(model=delta["model"].astype(str) + " " + delta[AXIS].astype(str))
    return [f"backend Δ%: {line}" for line in deltas.caveats(named)]
