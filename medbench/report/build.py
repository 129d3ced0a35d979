"""One self-contained HTML page per sweep: what ran, on what, how the variants compare, and which are worth it.

``render(collated, root)`` turns a ``Collated`` (``medbench.analysis.collate.build``: the same tables, intervals
and verdicts as ``medbench collate``, nothing recomputed here) into the page; ``write_report`` writes it
atomically. Sections: summary, settings and environment, the Δ% comparison with its verdict marks, the Pareto
front (accuracy vs latency and vs GFLOPs), latency distributions of the raw samples, every run, warnings with the
runs they name, and the points that failed, crashed or never ran. Figures are inline PNGs: the page opens offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from medbench.analysis.collate import Collated, setting_label
from medbench.analysis.deltas import DELTA_HEADERS
from medbench.analysis.pareto import Front, pareto
from medbench.report import figures
from medbench.report.html import bullets, esc, figure, key_values, number, page, section, table
from medbench.results.metrics import ACCURACY, DELTAS
from medbench.results.record import Record
from medbench.results.store import write_text_atomic

REPORT_NAME = "report.html"
SETTING_COLUMNS = {"model": "model", "imgsz": "imgsz", "batch": "batch", "device": "device",
                   "precision": "precision", "backend": "backend", "variant": "variant"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medbench")
    except PackageNotFoundError:
        return "(not installed)"


def _run_name(run_dir: Any) -> str:
    return Path(str(run_dir)).name if run_dir else ""


def _interval_cell(value: str, lo: str, hi: str, digits: int = 2) -> Any:
    def cell(row: pd.Series) -> tuple[str, str]:
        v = number(row.get(value), digits)
        if not v:
            return "", "num"
        lo_v, hi_v = number(row.get(lo), digits), number(row.get(hi), digits)
        return esc(f"{v} [{lo_v}, {hi_v}]" if lo_v and hi_v else v), "num"
    return cell


def _status_cell(column: str) -> Any:
    return lambda row: (esc(row.get(column) or ""), str(row.get(column) or "").replace(" ", "_"))


def _settings(c: Collated, root: Path) -> str:
    t = c.table
    ok = [r for r in c.found.records if r.ok]
    first = ok[0] if ok else (c.found.records[0] if c.found.records else None)
    varied = [(label, ", ".join(sorted({str(v) for v in t[col].dropna() if str(v)}, key=_natural)))
              for col, label in (("model", "models"), ("imgsz", "imgsz"), ("batch", "batch"), ("device", "device"),
                                 ("precision", "precision"), ("backend", "backend"), ("variant", "variants"))
              if col in t] if not t.empty else []

    def distinct(path: str) -> str:
        values = sorted({str(v) for r in c.found.records if (v := r.get(path)) is not None})
        return " | ".join(values)

    measured = [("scope", distinct("metadata.scope")), ("input", distinct("metadata.input_kind")),
                ("warm-up iterations", distinct("metadata.warmup")), ("timed iterations", distinct("metadata.samples")
                                                                       or distinct("metadata.iters")),
                ("seed", distinct("metadata.seed")), ("replicates per point", _replicates(t)),
                ("verdict threshold", f"±{c.threshold:g}% and the 95% interval excludes 0"),
                ("baseline", c.baseline)]
    env_keys = list((first.env.model_dump(exclude_none=True) if first is not None and first.env else {}).keys())
    env = [(k, distinct(f"env.{k}")) for k in env_keys if not isinstance(first.env.get(k), (dict, list))]
    env += [("host", distinct("provenance.hostname"))]
    if "medbench" not in env_keys:
        env.append(("medbench", _version()))
    return section("Settings and environment",
                   f"<h3>Sweep</h3>{key_values([('directory', str(root)), *varied])}"
                   f"<h3>Measurement</h3>{key_values(measured)}"
                   f"<h3>Environment</h3>{key_values(env)}"
                   '<p class="muted">Several values separated by | mean the runs differ; the warnings say where '
                   "that matters.</p>", "settings")


def _natural(text: str) -> tuple:
    return (0, float(text), "") if text.replace(".", "", 1).isdigit() else (1, 0.0, text)


def _replicates(t: pd.DataFrame) -> str:
    if t.empty or "repeat" not in t:
        return ""
    counts = t[t["status"] == "ok"].groupby(["model", "imgsz", "batch", "device", "precision", "backend", "variant"],
                                            dropna=False).size()
    return "" if counts.empty else " | ".join(str(n) for n in sorted(set(counts)))


def _comparison(c: Collated) -> str:
    if c.delta.empty:
        why = "no baseline run" if c.baseline is None else f"nothing to compare with {c.baseline}"
        return section("Comparison", f'<p class="muted">No Δ% table: {esc(why)}.</p>', "comparison")
    cols: dict[str, Any] = {k: v for k, v in SETTING_COLUMNS.items()}
    cols |= {"runs (clean/all)": "runs", DELTA_HEADERS["p50_ms"]: "p50_ms", DELTA_HEADERS["spread_pct"]: "spread_pct",
             "p50 Δ% [95% interval]": _interval_cell("d_latency_p50_pct", "d_p50_ci_lo_pct", "d_p50_ci_hi_pct", 1),
             "verdict": _status_cell("verdict")}
    cols |= {m.delta_label: m.delta_column for m in DELTAS} | {"note": "note"}
    caveats = bullets(esc(line) for line in c.caveats or [])
    text = (f"<p>Each model against <b>{esc(c.baseline)}</b> at the same setting, replicates aggregated (median of "
            f"the run medians). A verdict (slower / faster) needs the Δ% beyond ±{c.threshold:g}% and its 95% "
            "interval to exclude 0; ~ is beyond the threshold but not certain; loaded, throttled or very noisy runs "
            "are never used for a verdict.</p>")
    return section("Comparison", text + table(c.delta, cols) + caveats, "comparison")


def _pareto_table(front: Front) -> str:
    cols: dict[str, Any] = {k: v for k, v in SETTING_COLUMNS.items() if k != "model"} | {"model": "model"}
    cols |= {"runs (clean/all)": "runs", front.accuracy_label: "accuracy",
             f"{front.cost_label} [interval]": _interval_cell("cost", "cost_lo", "cost_hi"),
             "interval": "interval", "status": _status_cell("status"), "dominated by": "dominated_by", "note": "note"}
    return table(front.table, cols)


def _pareto(c: Collated) -> str:
    by_latency = pareto(c.table, "latency_p50_ms")
    if by_latency.accuracy is None:
        return section("Accuracy vs speed (Pareto front)",
                       '<p class="muted">No run carries an accuracy (random-init models, or weights without '
                       "training metrics): give <code>model.weights</code> from an Ultralytics training run, or "
                       "<code>model.accuracy.map50_95=…</code> by hand.</p>", "pareto")
    by_flops = pareto(c.table, "gflops", by_latency.accuracy)
    parts = ["<p>A model is on the <b>front</b> when no other model at the same setting is at least as accurate "
             "and at least as fast (strictly better in one). Latency intervals: with replicates that of the median "
             "of the run medians, else the run's own interval of its median (run-to-run variance not included).</p>",
             "<h3>Accuracy vs latency</h3>", _pareto_table(by_latency),
             figure(_uri(figures.pareto_figure(by_latency)), "Pareto plot: accuracy vs latency",
                    "Filled: on the front; hollow: dominated. Error bars: the latency interval of each point.")]
    if by_flops.table["cost"].notna().any():
        parts += ["<h3>Accuracy vs GFLOPs</h3>", _pareto_table(by_flops),
                  figure(_uri(figures.pareto_figure(by_flops)), "Pareto plot: accuracy vs GFLOPs",
                         "GFLOPs as Ultralytics counts them for the model as timed.")]
    return section("Accuracy vs speed (Pareto front)", "\n".join(parts), "pareto")


def _uri(fig: Any) -> str | None:
    return None if fig is None else figures.data_uri(figures.png_bytes(fig))


def _distributions(c: Collated) -> str:
    samples = {str(r.run_dir): list(r.samples_ms or []) for r in c.found.records if r.ok and r.run_dir}
    groups = figures.samples_by_setting(c.table, samples, setting_label)
    return section("Latency distributions", figure(
        _uri(figures.distributions_figure(groups)), "Latency distributions of the raw samples",
        "Every timed iteration (warm-up excluded) of every run, pooled per model: violin = density of what is "
        "drawn, box = median and quartiles (whiskers 1.5 IQR, outliers not drawn), red dots = each run's median "
        "(the unit of evidence). The axis stops at 3 IQR above the upper quartile: slower spikes count in every "
        "statistic but are not drawn (their number is written in the corner)."), "distributions")


def _runs(c: Collated) -> str:
    cols: dict[str, Any] = dict(SETTING_COLUMNS) | {"repeat": "repeat", "status": _status_cell("status")}
    cols |= {"params (M)": lambda r: (esc(number(r.get("params_M"), 3)), "num"), "GFLOPs": "gflops",
             "p50 ms [95% interval]": _interval_cell("latency_p50_ms", "p50_ci_lo_ms", "p50_ci_hi_ms"),
             "mean ms": "latency_mean_ms", "p95 ms": "latency_p95_ms", "FPS": "fps", "GPU mem MB": "peak_gpu_mem_MB",
             "IQR %": "iqr_pct"}
    cols |= {f"{m.label} %": m.column for m in ACCURACY}
    cols |= {"flag": "flag", "run": lambda r: (esc(_run_name(r.get("run_dir"))), "")}
    return section("Runs", table(c.table, cols) if not c.table.empty else "<p>No runs found.</p>", "runs")


def _record_warnings(records: Iterable[Record]) -> list[str]:
    """Each distinct warning of the records once, with the runs that carry it."""
    seen: dict[str, list[str]] = {}
    for r in records:
        where = f"{r.get('metadata.model_name') or '?'} (run {_run_name(r.run_dir) or '?'})"
        for w in r.warnings:
            seen.setdefault(str(w), []).append(where)
    return [f"{esc(w)} <span class='muted'>— {esc(', '.join(runs))}</span>" for w, runs in seen.items()]


def _warnings(c: Collated) -> str:
    items = [esc(w) for w in c.warnings] + _record_warnings(c.found.records)
    items += [f"skipped <code>{esc(p)}</code>: {esc(why)}" for p, why in c.found.skipped]
    body = bullets(items) or '<p class="muted">None.</p>'
    return section("Warnings", body, "warnings")


def _failed(c: Collated) -> str:
    failed = c.failed
    if failed.empty:
        return section("Failed, crashed and not-run points", '<p class="muted">None: every point finished ok.</p>',
                       "failed")
    cols: dict[str, Any] = {"status": _status_cell("status")} | dict(SETTING_COLUMNS)
    cols |= {"error": "error_type", "message": "error", "run": lambda r: (esc(r.get("run_dir") or ""), "")}
    intro = (f"<p>{len(failed)} of {len(c.table)} points did not finish ok; <code>medbench resume DIR</code> "
             "re-runs them.</p>")
    return section("Failed, crashed and not-run points", intro + table(failed, cols), "failed")


def _summary(c: Collated) -> str:
    counts = c.table["status"].value_counts().to_dict() if not c.table.empty else {}
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items())]
    links = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("settings", "settings"), ("comparison", "comparison"), ("pareto", "Pareto"),
        ("distributions", "distributions"), ("runs", "runs"), ("warnings", "warnings"), ("failed", "failed")))
    return f"<p><b>{esc(', '.join(parts) or 'no runs')}</b> · {links}</p>"


def render(c: Collated, root: Path | str) -> str:
    """The whole page for a collated sweep (pure apart from matplotlib drawing in memory)."""
    root = Path(root)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return page(f"medbench report · {root.name or root}", f"{root} · written {stamp} by medbench {_version()}",
                [_summary(c), _settings(c, root), _comparison(c), _pareto(c), _distributions(c), _runs(c),
                 _warnings(c), _failed(c)])


def write_report(c: Collated, path: Path | str, root: Path | str | None = None) -> Path:
    """Render and write the page atomically; returns its path."""
    path = Path(path)
    return write_text_atomic(path, render(c, root if root is not None else path.parent))
