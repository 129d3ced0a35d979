"""The report's figures (headless matplotlib): the Pareto plot and the latency distributions, as PNG data URIs.

Images are embedded in the page (``data:image/png;base64,...``), so the report opens offline and travels as one
file. One subplot per setting; labels placed without overlaps (``medbench.report.labels``).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medbench.analysis.pareto import DOMINATED, ON_FRONT, Front
from medbench.report.labels import place_labels

MAX_COLUMNS = 3


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI machines or cluster nodes
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG (layout already done by the caller), closed afterwards."""
    plt = pyplot()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _grid(n: int, width: float = 5.2, height: float = 4.0) -> tuple[Any, list[Any]]:
    plt = pyplot()
    cols = min(n, MAX_COLUMNS)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), dpi=100, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def pareto_figure(front: Front) -> Any | None:
    """Accuracy (y) against cost (x) per setting: front points filled and joined, dominated ones hollow, latency
    intervals as horizontal error bars. None when no point has both numbers."""
    settings = [(label, rows[rows["accuracy"].notna() & rows["cost"].notna()]) for label, rows in front.settings()]
    settings = [(label, rows) for label, rows in settings if len(rows)]
    if not settings:
        return None
    fig, axes = _grid(len(settings))
    for ax, (label, rows) in zip(axes, settings):
        on = rows[rows["status"] == ON_FRONT].sort_values("cost")
        off = rows[rows["status"] == DOMINATED]
        for part, filled in ((on, True), (off, False)):
            if part.empty:
                continue
            err = None
            if part["cost_lo"].notna().any():
                err = np.vstack([(part["cost"] - part["cost_lo"]).clip(lower=0).fillna(0),
                                 (part["cost_hi"] - part["cost"]).clip(lower=0).fillna(0)])
            ax.errorbar(part["cost"], part["accuracy"], xerr=err, fmt="o", ms=7, capsize=3, lw=1,
                        color="tab:blue" if filled else "0.45", mfc="tab:blue" if filled else "white",
                        label="Pareto front" if filled else "dominated")
        if len(on) > 1:
            ax.step(on["cost"], on["accuracy"], where="post", color="tab:blue", alpha=0.4, lw=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(front.cost_label, fontsize=9)
        ax.set_ylabel(front.accuracy_label, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.25, y=0.25)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_xlim(left=max(0.0, ax.get_xlim()[0]))  # latency and GFLOPs are never negative
    fig.tight_layout()
    for ax, (_, rows) in zip(axes, settings):
        place_labels(ax, list(rows["cost"]), list(rows["accuracy"]), [str(m) for m in rows["model"]])
    return fig


def distributions_figure(groups: Sequence[tuple[str, Mapping[str, list[list[float]]]]]) -> Any | None:
    """Per setting: a violin of every model's raw samples (its runs pooled), a box over it (median, IQR, whiskers
    at 1.5 IQR), and each run's median as a dot. ``groups``: ``(setting label, {model: [samples of each run]})``."""
    groups = [(label, {m: runs for m, runs in models.items() if any(runs)}) for label, models in groups]
    groups = [(label, models) for label, models in groups if models]
    if not groups:
        return None
    widest = max(len(models) for _, models in groups)
    fig, axes = _grid(len(groups), width=max(4.0, 1.1 * widest + 1.5), height=3.8)
    for ax, (label, models) in zip(axes, groups):
        names = list(models)
        pooled = [np.concatenate([np.asarray(r, dtype=float) for r in models[m] if r]) for m in names]
        pos = np.arange(1, len(names) + 1)
        q1, q3 = (np.array([np.percentile(p, q) for p in pooled]) for q in (25, 75))
        top = float(max(q3 + 3.0 * (q3 - q1))) * 1.1  # far beyond the whiskers: spikes must not flatten the rest
        above = sum(int((p > top).sum()) for p in pooled)
        shown = [p[p <= top] if (p <= top).sum() > 1 else p for p in pooled]  # the density of what is drawn
        violins = ax.violinplot(shown, positions=pos, showextrema=False, widths=0.8)
        for body in violins["bodies"]:
            body.set_alpha(0.35)
        ax.boxplot(pooled, positions=pos, widths=0.25, showfliers=False, medianprops={"color": "black"})
        for x, m in zip(pos, names):
            medians = [float(np.median(r)) for r in models[m] if r]
            ax.scatter(np.full(len(medians), x) + np.linspace(-0.08, 0.08, len(medians)), medians, s=14,
                       color="tab:red", zorder=3, label="run median" if x == 1 else None)
        if above:
            ax.set_ylim(bottom=0, top=top)
            ax.text(0.01, 0.99, f"{above} slower iteration(s) above the axis", transform=ax.transAxes, fontsize=7,
                    va="top", color="0.35")
        ax.set_xticks(pos, names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("latency per batch (ms)", fontsize=9)
        ax.set_title(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def samples_by_setting(table: pd.DataFrame, samples: Mapping[str, list[float]],
                       label: Any) -> list[tuple[str, dict[str, list[list[float]]]]]:
    """The raw samples of the ok runs grouped per setting (``label(row)``) and model, in table order."""
    out: dict[str, dict[str, list[list[float]]]] = {}
    ok = table[table["status"] == "ok"] if not table.empty else table
    for _, row in ok.iterrows():
        run = samples.get(str(row["run_dir"]))
        if run:
            out.setdefault(label(row), {}).setdefault(str(row["model"]), []).append(list(run))
    return list(out.items())
