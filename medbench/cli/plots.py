"""Plots of a collated sweep (``medbench collate DIR --plot``): PNGs with headless matplotlib.

matplotlib is optional (``pip install medbench[plot]``); it is imported only when a plot is asked for, and
its absence is a one-line error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medbench.errors import MedbenchError
from medbench.results.store import write_atomic

MARKERS = "osD^v<>pPX*h"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MedbenchError("--plot needs matplotlib: pip install 'medbench[plot]'") from None
    matplotlib.use("Agg")  # headless: no display on CI machines or cluster nodes
    import matplotlib.pyplot as plt

    return plt


def _setting(row: pd.Series) -> str:
    label = f"{row['imgsz']} px · b{row['batch']} · {row['device']} · {row['precision']}"
    return f"{label} · {row['variant']}" if row.get("variant") else label


def latency_vs_size_figure(table: pd.DataFrame, x: str = "params_M") -> Any:
    """Scatter of median latency against params (M) or GFLOPs: one marker per setting, points labelled by model
    (labels placed so that near-identical variants, e.g. eca and baseline, do not overwrite each other)."""
    plt = _pyplot()
    from medbench.report.labels import place_labels

    ok = table[(table["status"] == "ok") & table["latency_p50_ms"].notna() & table[x].notna()]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for i, (setting, group) in enumerate(ok.groupby(ok.apply(_setting, axis=1), sort=False)):
        ax.scatter(group[x], group["latency_p50_ms"], marker=MARKERS[i % len(MARKERS)], s=50, label=setting)
    ax.set_xlabel("parameters (M)" if x == "params_M" else "GFLOPs")
    ax.set_ylabel("latency p50 per batch (ms)")
    ax.set_title(f"latency vs {'parameters' if x == 'params_M' else 'GFLOPs'}")
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    if len(ok):
        ax.legend(fontsize=8, title="setting", title_fontsize=8)
    fig.tight_layout()
    place_labels(ax, list(ok[x]), list(ok["latency_p50_ms"]), [str(m) for m in ok["model"]])
    return fig


def plot_latency_vs_size(table: pd.DataFrame, path: Path | str, x: str = "params_M") -> Path:
    """``latency_vs_size_figure`` written as a PNG."""
    return _save(latency_vs_size_figure(table, x), _pyplot(), path, layout=False)


def plot_latency_by_setting(table: pd.DataFrame, path: Path | str) -> Path:
    """Grouped bars of median latency per setting and model, whiskers from p5 to p95 of the raw samples."""
    plt = _pyplot()
    ok = table[(table["status"] == "ok") & table["latency_p50_ms"].notna()].copy()
    ok["setting"] = ok.apply(_setting, axis=1) if len(ok) else []
    settings = list(dict.fromkeys(ok["setting"]))
    models = sorted({str(m) for m in ok["model"]})
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(settings) * max(len(models), 1) ** 0.5 + 2), 5), dpi=120)
    xs = np.arange(len(settings))
    for j, model in enumerate(models):
        rows = ok[ok["model"] == model].set_index("setting")
        rows = rows[~rows.index.duplicated()].reindex(settings)
        p50 = rows["latency_p50_ms"].to_numpy(dtype=float)
        low = np.clip(p50 - rows["latency_p5_ms"].fillna(rows["latency_p50_ms"]).to_numpy(dtype=float), 0, None)
        high = np.clip(rows["latency_p95_ms"].fillna(rows["latency_p50_ms"]).to_numpy(dtype=float) - p50, 0, None)
        ax.bar(xs + (j - (len(models) - 1) / 2) * width, p50, width, yerr=[low, high], capsize=3, label=model)
    ax.set_xticks(xs, settings, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("latency per batch (ms): p50, whiskers p5–p95")
    ax.set_title("latency by setting")
    ax.grid(True, axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path | str, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    return write_atomic(path, png.getvalue())


def write_plots(table: pd.DataFrame, out_dir: Path | str, x: str = "params_M") -> list[Path]:
    """Both plots into ``out_dir``: ``latency_vs_params.png`` (or ``latency_vs_gflops.png``) and
    ``latency_by_setting.png``."""
    out_dir = Path(out_dir)
    name = "latency_vs_params.png" if x == "params_M" else "latency_vs_gflops.png"
    return [plot_latency_vs_size(table, out_dir / name, x), plot_latency_by_setting(table, out_dir / "latency_by_setting.png")]
