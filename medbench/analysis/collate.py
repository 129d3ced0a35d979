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

from medbench.analysis import deltas
from medbench.analysis.deltas import DELTA_HEADERS, GROUP, SETTING
from medbench.analysis.replicates import Run, run_flags, run_from_record
from medbench.analysis.stats import NOISE_WARN
from medbench.results.load import Loaded, load_dir, to_record
from medbench.results.metrics import ENV_FIELDS, TABLE
from medbench.results.record import Record

# Non-metric columns: the setting, then the outcome (metric columns come from the metric table).
FIELDS = {"model": "metadata.model_name", "imgsz": "metadata.imgsz", "batch": "metadata.batch",
          "device": "metadata.device", "precision": "metadata.precision", "backend": "metadata.backend",
          "repeat": "metadata.repeat"}
OUTCOME = {"throttled": "telemetry.throttled", "loaded": "telemetry.loaded", "status": "status",
           "error": "error.message", "error_type": "error.type"}
METRIC_COLUMNS = [m.column for m in TABLE]
# Kept in the CSV (machine-readable), left out of the terminal / Markdown / LaTeX tables.
HIDDEN = ["run_dir", *(f.column for f in ENV_FIELDS), "error_type", "latency_p5_ms", "throttled", "loaded", "params",
          "overrides"]
# Overrides that define the setting or the model: never part of the "variant" (what else a sweep varied).
_NOT_VARIANT = re.compile(r"^(\+*)(model|imgsz|batch|device|runtime\.precision|backend|experiment|hydra|result_file|repeat)(\.|$)")
NOISY_PCT = NOISE_WARN * 100  # IQR/median above this (percent) is flagged
COLUMNS_ORDER_VARIANT = 7  # the variant column goes right after the setting columns (and the replicate index)


@dataclass
class Collated:
    """Everything one collation produces; rendered by ``render_report`` for every output format."""

    table: pd.DataFrame
    delta: pd.DataFrame
    baseline: str | None
    warnings: list[str]
    found: Loaded
    caveats: list[str] | None = None  # the 1-run caveat, rows without a verdict: printed under the Δ% table
    threshold: float = deltas.DEFAULT_THRESHOLD  # percent: the verdict rule's threshold
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


def _ci(r: Record, end: int) -> float | None:
    pair = r.get("latency.p50_ci95_ms")
    return float(pair[end]) if isinstance(pair, list) and len(pair) == 2 else None


def _flag(r: Record) -> str:
    """Why a run is no evidence, in short words (loaded / throttled / very noisy); blank when it is."""
    if r.status != "ok":
        return ""
    return ", ".join(f.split(":")[0].split(" (")[0] for f in run_flags(r.telemetry, r.noise))


def _row(r: Record) -> dict[str, Any]:
    return ({col: r.get(path) for col, path in FIELDS.items()} | {m.column: m.value(r) for m in TABLE}
            | {"p50_ci_lo_ms": _ci(r, 0), "p50_ci_hi_ms": _ci(r, 1), "flag": _flag(r)}
            | {col: r.get(path) for col, path in OUTCOME.items()} | {f.column: r.get(f.path) for f in ENV_FIELDS}
            | {"latency_p5_ms": _p5(r.samples_ms), "params": _count(r.get("model_complexity.params")),
               "overrides": " ".join(str(o) for o in r.metadata.overrides or []), "run_dir": r.run_dir})


def _count(value: Any) -> int | None:
    """An exact integer (the parameter count), None when absent."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else None


def _whole(value: Any) -> Any:
    """64.0 → 64; NaN → None; anything else unchanged."""
    if isinstance(value, float):
        return None if value != value else int(value) if value.is_integer() else value
    return value


def columns() -> list[str]:
    return [*FIELDS, *METRIC_COLUMNS, "p50_ci_lo_ms", "p50_ci_hi_ms", "flag", *OUTCOME,
            *(f.column for f in ENV_FIELDS), "latency_p5_ms", "params", "overrides", "run_dir"]


def results_table(records: list[Record] | list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run, sorted by setting (numerically), ok runs by latency, then the rest (dicts are validated)."""
    records = [r if isinstance(r, Record) else to_record(r) for r in records]
    df = pd.DataFrame([_row(r) for r in records], columns=columns())
    if df.empty:
        return df.assign(variant=pd.Series(dtype=str))
    df.insert(COLUMNS_ORDER_VARIANT, "variant", _variants(records))
    df["imgsz"] = df["imgsz"].map(lambda v: "x".join(map(str, v)) if isinstance(v, list) else v)
    for col in ("imgsz", "batch", "repeat"):  # a failed point without them must not turn 64 into 64.0 (or nan)
        df[col] = pd.Series([_whole(v) for v in df[col]], index=df.index, dtype=object)
    df["backend"] = df["backend"].fillna("pytorch")  # records from before deployment backends ran eager PyTorch
    for col in [*METRIC_COLUMNS, "p50_ci_lo_ms", "p50_ci_hi_ms", "latency_p5_ms"]:
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


def delta_table(table: pd.DataFrame, baseline: str | None = None, runs: dict[str, Run] | None = None,
                threshold: float = deltas.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Each variant (replicates aggregated) against the baseline model at the same setting (``analysis.deltas``)."""
    return deltas.delta_table(table, runs or {}, pick_baseline(table, baseline), threshold)


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) and str(value) != ""


def setting_label(row: pd.Series) -> str:
    """``imgsz=64 batch=1 cpu fp32`` (parts the record does not know are left out, never ``nan``)."""
    parts = [f"imgsz={row['imgsz']}" if _known(row.get("imgsz")) else "",
             f"batch={row['batch']}" if _known(row.get("batch")) else "",
             str(row["device"]) if _known(row.get("device")) else "",
             str(row["precision"]) if _known(row.get("precision")) else "",
             str(row["backend"]) if _known(row.get("backend")) and row.get("backend") != "pytorch" else "",
             str(row["variant"]) if _known(row.get("variant")) else ""]
    return " ".join(p for p in parts if p)


def point_label(row: pd.Series) -> str:
    """A run as the user wrote it: its overrides (``model=p2 imgsz=64``), else model and setting."""
    if _known(row.get("overrides")):
        return str(row["overrides"])
    return " ".join(p for p in (str(row["model"]) if _known(row.get("model")) else "", setting_label(row)) if p)


def run_name(row: pd.Series) -> str:
    """``ghost imgsz=64 (run 3)``: a run named in a warning: model, setting and its run dir's name."""
    where = f" (run {Path(str(row['run_dir'])).name})" if _known(row.get("run_dir")) else ""
    return f"{row['model']} {setting_label(row)}{where}"


def _named(rows: pd.DataFrame, limit: int = 4) -> str:
    names = [run_name(r) for _, r in rows.iterrows()]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(names[:limit]) + more


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
        missing = delta[delta["note"].str.contains(f"no {baseline} run", regex=False)].drop_duplicates(GROUP)
        if len(missing):
            warnings.append(f"{len(missing)} setting(s) have no {baseline} run: their Δ% is blank "
                            f"(e.g. {setting_label(missing.iloc[0])})")
    noisy = ok[ok["iqr_pct"] > NOISY_PCT]
    if len(noisy):
        warnings.append(f"{len(noisy)} of {len(ok)} runs are noisy (IQR > {NOISY_PCT:.0f}% of the median): "
                        f"{_named(noisy)}; small differences between them are not meaningful")
    flagged = ok[ok["flag"] != ""]
    for _, r in flagged.iterrows():
        again = f" repeat={r['repeat']}" if r.get("repeat") not in (None, 0) and r["repeat"] == r["repeat"] else ""
        where = f" (run {Path(str(r['run_dir'])).name})" if r["run_dir"] else ""
        warnings.append(f"{r['flag']}: {r['model']} {setting_label(r)}{again}{where}: not used for a verdict")
    return warnings


def build(root: Path | str, baseline: str | None = None, threshold: float = deltas.DEFAULT_THRESHOLD) -> Collated:
    """Load ``root`` and compute both tables and the warnings (pure apart from reading the files)."""
    found = load_dir(root)
    table = results_table(found.records)
    base = pick_baseline(table, baseline)
    runs = {r.run_dir: run for r in found.records if r.status == "ok" and r.run_dir
            and (run := run_from_record(r, r.run_dir)) is not None}
    delta = delta_table(table, base, runs, threshold)
    return Collated(table, delta, base, comparison_warnings(table, delta, base) + found.notes, found,
                    deltas.caveats(delta), threshold)
