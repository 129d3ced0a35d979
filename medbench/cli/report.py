"""Human-facing text: one-line errors and the one-screen summary of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medbench.text import one_line  # noqa: F401 (the CLI's one-line errors)


def _fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _ci(pair: Any) -> str:
    """`` [lo, hi]`` of a 95% interval, or nothing when the record has none."""
    return f" [{pair[0]:.2f}, {pair[1]:.2f}]" if isinstance(pair, list) and len(pair) == 2 else ""


def _backend_lines(record: dict[str, Any]) -> list[str]:
    """The deployment backend (when not eager PyTorch): runtime, threads, export, outputs check."""
    be, cold = record.get("backend") or {}, record["cold_start"]
    if be.get("name") in (None, "pytorch"):
        return []
    settings = be.get("settings") or {}
    threads = settings.get("intra_op_threads") or settings.get("INFERENCE_NUM_THREADS") or settings.get("threads")
    export = "cache hit" if cold.get("export_cache_hit") else f"{_fmt(cold.get('export_ms'), '.0f')} ms"
    out = be.get("outputs") or {}
    check = (f"outputs {out.get('status')} (max abs diff {out['max_abs_diff']:.2g})" if out else "outputs not checked")
    return [f"  backend {be['name']} {be.get('version')} · threads {threads}"
            + (f" · streams {settings['NUM_STREAMS']}" if "NUM_STREAMS" in settings else "")
            + f" · export {export} · {check}"]


def summary_lines(record: dict[str, Any], path: Path | str) -> list[str]:
    """The end-of-run summary: what was timed, the headline numbers, noise, where the JSON is."""
    meta, cx, lat, thr = record["metadata"], record["model_complexity"], record["latency"], record["throughput"]
    mem, cold, noise = record["memory"], record["cold_start"], record["noise"]
    source = meta.get("weights") or f"{meta.get('cfg')}, random init"
    lines = [
        f"medbench · {meta['model_name']} ({source}) · {meta['device']} · {meta['precision']} · "
        f"input {tuple(meta.get('input_shape') or ())} · scope {meta.get('scope')}",
        f"  params {_fmt(cx['params_M'], '.3f')} M · GFLOPs {_fmt(cx['gflops'], '.2f')} · fused {cx['fused']}",
        f"  latency/batch  mean {_fmt(lat['mean_ms'])}  p50 {_fmt(lat['p50_ms'])}{_ci(lat.get('p50_ci95_ms'))}  "
        f"p95 {_fmt(lat['p95_ms'])}  "
        f"p99 {_fmt(lat['p99_ms'])} ms  ({meta.get('samples')} iters after {meta['warmup']} warm-up)",
        f"  throughput {_fmt(thr['fps_p50'], '.1f')} img/s (p50)"
        + (f" · pipelined {_fmt(thr.get('fps_pipelined'), '.1f')} img/s" if thr.get("fps_pipelined") else ""),
        "  memory " + (f"peak GPU {_fmt(mem['peak_gpu_mem_MB'], '.0f')} MB · " if mem.get("peak_gpu_mem_MB") else "")
        + f"peak RSS {_fmt(mem.get('peak_rss_MB'), '.0f')} MB",
        f"  cold start  load {_fmt(cold['model_load_ms'], '.0f')} ms · first forward {_fmt(cold['first_forward_ms'], '.0f')} ms",
        f"  noise  IQR {_fmt(noise['iqr_over_median'] * 100 if noise['iqr_over_median'] is not None else None, '.1f')}% of median"
        f" · median ±{_fmt(noise.get('ci95_halfwidth_pct'), '.2f')}% (95% CI)"
        + (f" · stopped by {meta['stopped_by']}" if meta.get("stopped_by") not in (None, "iters") else ""),
    ]
    lines[1:1] = _backend_lines(record)
    acc = record.get("accuracy")
    if acc:
        shown = " · ".join(f"{label} {acc[key] * 100:.1f}%" for key, label in
                           (("map50_95", "mAP50-95"), ("map50", "mAP50"), ("top1", "top-1")) if acc.get(key) is not None)
        lines.insert(2, f"  accuracy {shown} (from {acc.get('source')})")
    if record.get("stages"):
        stages = " · ".join(f"{k} {v['p50_ms']:.2f}" for k, v in record["stages"].items())
        lines.append(f"  stages (p50 ms)  {stages}")
    lines += [f"  warning: {w}" for w in record.get("warnings", [])]
    lines.append(f"  result → {path}")
    return lines


def point_summary(record: dict[str, Any], path: Path | str) -> str:
    """A sweep point's one line (the sweep's tables carry the rest): p50 with its interval, throughput, noise,
    how many warnings the record holds, where it is."""
    lat, thr, noise = record["latency"], record["throughput"], record["noise"] or {}
    iqr = noise.get("iqr_over_median")
    warnings = len(record.get("warnings") or [])
    return (f"  {record['metadata']['model_name']}: p50 {_fmt(lat['p50_ms'])} ms{_ci(lat.get('p50_ci95_ms'))} · "
            f"{_fmt(thr['fps_p50'], '.1f')} img/s · IQR {_fmt(iqr * 100 if iqr is not None else None, '.1f')}%"
            + (f" · {warnings} warning{'s' if warnings > 1 else ''}" if warnings else "") + f" · result → {path}")
