"""Records → comparison tables (pure: no files written, no printing).

``build(dir)`` reads every record below ``dir`` through the one loader (skipped files are named, points
that left no record are listed as ``crashed`` / ``not_run``) and computes two tables: one row per run,
and Δ% against the baseline model at the same imgsz / batch / device / precision (and variant: whatever
else the sweep varied). Columns come from the metric table (``medbench.results.metrics``). Rendering and
writing are ``medbench.cli.collate``.

Numbers stay floats until rendering; sorting is on numbers, never on formatted strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medbench.analysis.stats import NOISE_WARN
from medbench.results.load import Loaded, load_dir, to_record
from medbench.results.metrics import DELTAS, ENV_FIELDS, TABLE
from medbench.results.record import Record

SETTING = ["model", "imgsz", "batch", "device", "precision", "backend"]
GROUP = ["imgsz", "batch", "device", "precision", "backend", "variant"]  # a comparison: same everything but the model
# Non-metric columns: the setting, then the outcome (metric columns come from the metric table).
FIELDS = {"model": "metadata.model_name", "imgsz": "metadata.imgsz", "batch": "metadata.batch",
          "device": "metadata.device", "precision": "metadata.precision", "backend": "metadata.backend"}
OUTCOME = {"throttled": "telemetry.throttled", "status": "status", "error": "error.message", "error_type": "error.type"}
METRIC_COLUMNS = [m.column for m in TABLE]
# Kept in the CSV (machine-readable), left out of the terminal / Markdown / LaTeX tables.
HIDDEN = ["run_dir", *(f.column for f in ENV_FIELDS), "error_type", "latency_p5_ms"]
DELTA_HEADERS = {m.delta_column: m.delta_label for m in DELTAS}
# Overrides that define the setting or the model: never part of the "variant" (what else a sweep varied).
_NOT_VARIANT = re.compile(r"^(\+*)(model|imgsz|batch|device|runtime\.precision|backend|experiment|hydra|result_file|repeat)(\.|$)")
NOISY_PCT = NOISE_WARN * 100  # IQR/median above this (percent) is flagged
COLUMNS_ORDER_VARIANT = 6  # the variant column goes right after the setting columns


@dataclass
class Collated:
    """Everything one collation produces; rendered by ``render_report`` for every output format."""

    table: pd.DataFrame
    delta: pd.DataFrame
    baseline: str | None
    warnings: list[str]
    found: Loaded
    backend_delta: pd.DataFrame | None = None  # --baseline-backend: each backend's Δ% vs that backend

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[self.table["status"] != "ok"] if not self.table.empty else self.table


def _variants(records: list[Record]) -> list[str]:
    """What a sweep varied besides model and setting (e.g. ``runtime.channels_last=true``), per record."""
    parsed = []
    for r in records:
        overrides = r.metadata.overrides
        kv = dict(o.split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)
        parsed.append({k.lstrip("+~"): v for k, v in kv.items() if not _NOT_VARIANT.match(k)})
    keys = sorted({k for kv in parsed for k in kv})
    differing = [k for k in keys if len({kv.get(k) for kv in parsed}) > 1]
    return [" ".join(f"{k}={kv[k]}" for k in differing if k in kv) for kv in parsed]


def _imgsz_area(value: Any) -> float:
    """Sort key for imgsz: 64 < 96 < 640 (numbers, not strings); ``[h, w]`` / ``"hxw"`` by area."""
    numbers = [int(n) for n in re.findall(r"\d+", str(value))] if value is not None else []
    if not numbers:
        return float("inf")
    return float(numbers[0] * numbers[-1]) if len(numbers) > 1 else float(numbers[0]) ** 2


def _p5(samples: Any) -> float:
    if not isinstance(samples, list) or not samples:
        return float("nan")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), 5))


def _row(r: Record) -> dict[str, Any]:
    return ({col: r.get(path) for col, path in FIELDS.items()} | {m.column: m.value(r) for m in TABLE}
            | {col: r.get(path) for col, path in OUTCOME.items()} | {f.column: r.get(f.path) for f in ENV_FIELDS}
            | {"latency_p5_ms": _p5(r.samples_ms), "run_dir": r.run_dir})


def columns() -> list[str]:
    return [*FIELDS, *METRIC_COLUMNS, *OUTCOME, *(f.column for f in ENV_FIELDS), "latency_p5_ms", "run_dir"]


def results_table(records: list[Record] | list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run, sorted by setting (numerically), ok runs by latency, then the rest (dicts are validated)."""
    records = [r if isinstance(r, Record) else to_record(r) for r in records]
    df = pd.DataFrame([_row(r) for r in records], columns=columns())
    if df.empty:
        return df.assign(variant=pd.Series(dtype=str))
    df.insert(COLUMNS_ORDER_VARIANT, "variant", _variants(records))
    df["imgsz"] = df["imgsz"].map(lambda v: "x".join(map(str, v)) if isinstance(v, list) else v)
    df["backend"] = df["backend"].fillna("pytorch")  # records from before deployment backends ran eager PyTorch
    for col in [*METRIC_COLUMNS, "latency_p5_ms"]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    keys = pd.DataFrame({"a": df["imgsz"].map(_imgsz_area), "b": pd.to_numeric(df["batch"], errors="coerce"),
                         "c": df["device"].astype(str), "d": df["precision"].astype(str) + "|" + df["backend"].astype(str),
                         "e": df["variant"].astype(str), "f": df["status"] != "ok", "g": df["latency_p50_ms"],
                         "h": df["model"].astype(str)})
    order = keys.sort_values(list("abcdefgh"), na_position="last", kind="stable").index
    return df.loc[order].reset_index(drop=True)



def pick_baseline(table: pd.DataFrame, baseline: str | None = None) -> str | None:
    """``baseline`` if given, else the model named ``baseline`` if present, else the first model (sorted)."""
    ok = table[table["status"] == "ok"] if not table.empty else table
    models = sorted({str(m) for m in ok["model"].dropna()}) if not ok.empty else []
    if baseline is not None:
        return baseline
    if "baseline" in models:
        return "baseline"
    return models[0] if models else None


def _pct(value: float, base: float) -> float:
    if not (np.isfinite(value) and np.isfinite(base)) or base == 0:
        return float("nan")
    return (value - base) / base * 100.0


def delta_table(table: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Δ% of every ok run against the baseline model's run at the same setting (the baseline's own row is 0)."""
    cols = [*SETTING, "variant", "baseline", *DELTA_HEADERS, "note"]
    base_name = pick_baseline(table, baseline)
    if table.empty or base_name is None:
        return pd.DataFrame(columns=cols)
    ok = table[table["status"] == "ok"]
    rows = []
    for _, group in ok.groupby(GROUP, sort=False, dropna=False):
        base_rows = group[group["model"] == base_name]
        base = base_rows.iloc[0] if len(base_rows) else None
        note = "" if base is not None else f"no {base_name} run at this setting"
        if len(base_rows) > 1:
            note = f"{len(base_rows)} {base_name} runs at this setting; the first is the reference"
        for _, row in group.iterrows():
            deltas = {m.delta_column: (_pct(row[m.column], base[m.column]) if base is not None else float("nan"))
                      for m in DELTAS}
            rows.append({**{k: row[k] for k in [*SETTING, "variant"]}, "baseline": base_name if base is not None else None,
                         **deltas, "note": note})
    df = pd.DataFrame(rows, columns=cols)
    for col in DELTA_HEADERS:
        df[col] = df[col].astype(float)
    return df


def setting_label(row: pd.Series) -> str:
    label = f"imgsz={row['imgsz']} batch={row['batch']} {row['device']} {row['precision']}"
    return f"{label} {row['variant']}" if row.get("variant") else label


def comparison_warnings(table: pd.DataFrame, delta: pd.DataFrame, baseline: str | None) -> list[str]:
    """Why a Δ% may not be a fair comparison: different image lists, environments, precisions; noisy runs."""
    if table.empty:
        return []
    ok = table[table["status"] == "ok"]
    warnings = []
    for f in ENV_FIELDS:
        col, what = f.column, f"{f.label} ({f.path})"
        hits: dict[tuple[str, ...], list[str]] = {}
        for _, group in ok.groupby(GROUP, sort=False, dropna=False):
            values = tuple(sorted({str(v) for v in group[col]}))
            if len(values) > 1:
                hits.setdefault(values, []).append(setting_label(group.iloc[0]))
        for values, settings in hits.items():
            more = f" and {len(settings) - 1} more" if len(settings) > 1 else ""
            warnings.append(f"runs compared with each other differ in {what}: {' vs '.join(values)} "
                            f"(at {settings[0]}{more}); their Δ% is not a like-for-like comparison")
    precisions = sorted({str(p) for p in ok["precision"].dropna()})
    if len(precisions) > 1:
        warnings.append(f"runs use several precisions ({', '.join(precisions)}); Δ% only compares runs of one precision")
    if baseline is not None and not ok.empty and baseline not in set(ok["model"]):
        warnings.append(f"baseline model {baseline!r} has no ok run here; no Δ% computed "
                        f"(models: {', '.join(sorted(map(str, set(ok['model']))))})")
    elif not delta.empty and (delta["note"] != "").any():
        missing = delta[delta["note"].str.startswith("no ")].drop_duplicates(GROUP)
        if len(missing):
            warnings.append(f"{len(missing)} setting(s) have no {baseline} run: their Δ% is blank "
                            f"(e.g. {setting_label(missing.iloc[0])})")
    noisy = ok[ok["iqr_pct"] > NOISY_PCT]
    if len(noisy):
        warnings.append(f"{len(noisy)} of {len(ok)} runs are noisy (IQR > {NOISY_PCT:.0f}% of the median): "
                        "small differences between them are not meaningful")
    throttled = ok[ok["throttled"] == True]  # noqa: E712 (a column of True/False/None)
    if len(throttled):
        warnings.append(f"{len(throttled)} runs were clock-throttled (telemetry.throttled): "
                        + ", ".join(f"{r['model']} {setting_label(r)}" for _, r in throttled.iterrows()))
    return warnings


def build(root: Path | str, baseline: str | None = None) -> Collated:
    """Load ``root`` and compute both tables and the warnings (pure apart from reading the files)."""
    found = load_dir(root)
    table = results_table(found.records)
    base = pick_baseline(table, baseline)
    delta = delta_table(table, base)
    return Collated(table, delta, base, comparison_warnings(table, delta, base) + found.notes, found)
