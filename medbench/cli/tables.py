"""Collate's runs and Δ% tables for people: text (terminal) and Markdown that fit.

What is shown (the CSV keeps every column): columns empty for every row are dropped (GPU memory, pipelined FPS,
flags on a quiet CPU run); setting columns with one value for every run (batch, device, precision, backend) move
into one line above the table; the p50 and its 95% interval share a cell; params are shown in millions with as
many decimals as it takes to tell the models apart, or as exact counts when that needs more than 3 decimals (eca
adds 13 parameters to baseline's 3,157,200); notes of the Δ% table become numbered footnotes under it. Headers come
from the metric table (``medbench.results.metrics``): label and unit, wrapped onto two lines on a terminal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import tabulate as tabulate_module
from tabulate import tabulate

from medbench.analysis.deltas import DELTA_HEADERS
from medbench.results.metrics import DELTAS, METRICS, TABLE

SETTING_COLUMNS = ["imgsz", "batch", "device", "precision", "backend"]
BY_COLUMN = {m.column: m for m in METRICS}
DECIMALS = {"fps": 1, "fps_pipelined": 1, "peak_gpu_mem_MB": 1, "iqr_pct": 1}  # the rest: 2 (ms)
HEADER_WIDTH = 9  # a text header is wrapped to this many characters per line


def blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and not np.isfinite(value)) or str(value) in ("", "nan", "None")


def fixed(value: object, decimals: int, sign: bool = False) -> str:
    """``value`` with ``decimals`` decimals (``+`` for positive numbers when ``sign``); blank when missing."""
    if blank(value):
        return ""
    return f"{float(value):{'+' if sign else ''}.{decimals}f}"  # type: ignore[arg-type]


def pct(value: object) -> str:
    """A Δ% cell: signed, one decimal; a change too small for one decimal keeps one significant digit (+0.0004)."""
    if blank(value):
        return ""
    v = float(value)  # type: ignore[arg-type]
    if v == 0:
        return "0"
    return f"{v:+.1g}" if abs(v) < 0.05 else f"{v:+.1f}"


def decimals_to_tell_apart(values: Iterable[object], start: int, stop: int) -> int | None:
    """The fewest decimals in ``[start, stop]`` at which values that differ also look different; None if none do."""
    numbers = sorted({float(v) for v in values if not blank(v)})  # type: ignore[arg-type]
    for d in range(start, stop + 1):
        if len({f"{v:.{d}f}" for v in numbers}) == len(numbers):
            return d
    return None


def params_cells(rows: pd.DataFrame) -> tuple[str, list[str]]:
    """Header kind (``M`` or ``count``) and the cells: millions with enough decimals, else exact counts."""
    millions = rows["params_M"].tolist()
    d = decimals_to_tell_apart(millions, 2, 3)
    counts = rows["params"].tolist() if "params" in rows else []
    if d is None and counts and not any(blank(c) for c in counts):
        return "count", [f"{int(c):,}" for c in counts]
    return "M", [fixed(v, d if d is not None else 6) for v in millions]


def header(label: str, unit: str, fmt: str) -> str:
    """``latency p50 (ms)``: wrapped onto lines of HEADER_WIDTH characters for the terminal, one line otherwise."""
    text = label if not unit or unit in label else f"{label} ({unit})"
    return "\n".join(textwrap.wrap(text, HEADER_WIDTH)) if fmt == "text" else text


def _metric_header(column: str, fmt: str) -> str:
    m = BY_COLUMN[column]
    return header(m.label, "" if m.unit == "%" or "FPS" in m.label else m.unit, fmt)  # FPS: items per second


def constant_settings(rows: pd.DataFrame, columns: Sequence[str] = SETTING_COLUMNS) -> dict[str, str]:
    """Setting columns with one known value for every row (shown once above the table, not in every row)."""
    out = {}
    for col in columns:
        if col in rows and len(rows):
            values = {str(v) for v in rows[col] if not blank(v)}
            if len(values) == 1:
                out[col] = values.pop()
    return out


def setting_line(constant: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in constant.items())


def runs_view(table: pd.DataFrame, fmt: str = "text") -> tuple[str, pd.DataFrame]:
    """The runs table as display strings, and the settings every run shares (one line)."""
    ok = table[table["status"] == "ok"]
    constant = constant_settings(ok if len(ok) else table)
    out = pd.DataFrame({"model": table["model"].map(lambda v: "" if blank(v) else str(v))})
    for col in [c for c in SETTING_COLUMNS if c not in constant]:
        out[col] = table[col].map(lambda v: "" if blank(v) else str(v))
    if table["variant"].fillna("").astype(bool).any():
        out["variant"] = table["variant"].fillna("")
    if table["repeat"].fillna(0).astype(bool).any():
        out["repeat"] = table["repeat"].map(lambda v: "" if blank(v) else str(int(v)))
    for m in TABLE:  # the metric table's columns, in its order
        if m.column == "params_M":
            kind, cells = params_cells(table)
            out[header("params", "" if kind == "count" else "M", fmt)] = cells
            continue
        d = (decimals_to_tell_apart(table[m.column], 2, 4) or 2) if m.column == "gflops" else DECIMALS.get(m.column, 2)
        out[_metric_header(m.column, fmt)] = [fixed(v, d) for v in table[m.column]]
        if m.column == "latency_p50_ms":
            out[header("p50 95% CI", "ms", fmt)] = [f"{fixed(lo, 2)}–{fixed(hi, 2)}" if not (blank(lo) or blank(hi))
                                                    else "" for lo, hi in zip(table["p50_ci_lo_ms"],
                                                                              table["p50_ci_hi_ms"])]
    out["flag"] = table["flag"].fillna("")
    if (table["status"] != "ok").any():
        out["status"] = table["status"]
    return setting_line(constant), drop_empty(out)


def drop_empty(df: pd.DataFrame) -> pd.DataFrame:
    """Without the columns that are blank in every row."""
    return df[[c for c in df.columns if not all(blank(v) for v in df[c])]]


def delta_view(delta: pd.DataFrame, fmt: str = "text") -> tuple[str, pd.DataFrame, list[str]]:
    """The Δ% table as display strings, the settings every row shares, and its notes as numbered footnotes."""
    constant = constant_settings(delta)
    out = pd.DataFrame({"model": delta["model"].astype(str)})
    for col in [c for c in SETTING_COLUMNS if c not in constant]:
        out[col] = delta[col].map(lambda v: "" if blank(v) else str(v))
    if delta["variant"].fillna("").astype(bool).any():
        out["variant"] = delta["variant"].fillna("")
    wrap = (lambda s: "\n".join(textwrap.wrap(s, HEADER_WIDTH))) if fmt == "text" else (lambda s: s)
    out["runs"] = delta["runs"]
    out[wrap(DELTA_HEADERS["p50_ms"])] = [fixed(v, 2) for v in delta["p50_ms"]]
    out[wrap(DELTA_HEADERS["spread_pct"])] = [fixed(v, 1) for v in delta["spread_pct"]]
    out[wrap(DELTA_HEADERS["d_latency_p50_pct"])] = [pct(v) for v in delta["d_latency_p50_pct"]]
    out["95% CI"] = [f"[{pct(lo)}, {pct(hi)}]" if not (blank(lo) or blank(hi)) else ""
                     for lo, hi in zip(delta["d_p50_ci_lo_pct"], delta["d_p50_ci_hi_pct"])]
    out["verdict"] = delta["verdict"].fillna("")
    for m in DELTAS:
        out[wrap(m.delta_label)] = [pct(v) for v in delta[m.delta_column]]
    compared = delta["verdict"].fillna("") != "(baseline)"
    shared = set(delta["note"].fillna("")[compared])
    if len(shared) == 1 and "" not in shared and not delta["note"].fillna("")[~compared].astype(bool).any():
        return setting_line(constant), drop_empty(out), [f"every comparison: {shared.pop()}"]  # one note: no refs
    notes: list[str] = []
    refs = []
    for note in delta["note"].fillna(""):
        if note and note not in notes:
            notes.append(note)
        refs.append(f"[{notes.index(note) + 1}]" if note else "")
    out["note"] = refs
    return setting_line(constant), drop_empty(out), [f"[{i}] {n}" for i, n in enumerate(notes, 1)]


def numeric(cells: pd.Series) -> bool:
    """A column of numbers (right-aligned): digits in it, and no cell starting with a letter (``ghost_eca_p2``)."""
    text = [str(v) for v in cells if str(v)]
    return any(ch.isdigit() for v in text for ch in v) and not any(v[0].isalpha() for v in text)


def render_frame(df: pd.DataFrame, fmt: str = "text") -> str:
    """A frame of display strings as a text (``simple``) or GitHub Markdown table; numbers right-aligned."""
    align = ["right" if numeric(df[c]) else "left" for c in df.columns]
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0  # no 2 spaces beside every header
    try:
        return tabulate(df.values.tolist(), headers=list(df.columns), disable_numparse=True, missingval="",
                        tablefmt="github" if fmt == "md" else "simple", colalign=align)
    finally:
        tabulate_module.MIN_PADDING = padding


def width(text: str) -> int:
    """The widest line of a rendered table (what must fit a terminal)."""
    return max((len(line) for line in text.splitlines()), default=0)
