"""How often does the regression gate cry wolf, and does it catch a real slowdown? (the README's CI workflow)

Each trial runs three sweeps of the recommended workflow, one process each, in a rotating order:

* ``base``  — ``python -m medbench -m repeat='range(R)' device=cpu imgsz=S iters...``
* ``same``  — exactly the same command again (an A/A pair with ``base``)
* ``slow``  — the same model with Conv+BatchNorm folding switched off (``model.fuse=false``): the same weights and
  architecture (params and unfused GFLOPs equal, so the gate compares them), every forward runs ~60 extra
  BatchNorm kernels — a real regression of the kind CI should catch ("someone broke fusing"), and measured here:
  its size is the pooled ratio of run medians over all trials, reported next to the detection rate.

then ``medbench compare --baseline base --current X --fail-on-regression`` for X = same and X = slow. Counted: A/A
trials that exit 1 (false alarms), slowdown trials that exit 1 (detections), and ``unreliable`` verdicts (a side
loaded, throttled or very noisy: the gate refuses to judge). Not a test: on a shared machine the figures depend on
the load, which is recorded (load average, flagged runs).

    python benchmarks/aa_gate.py                     # 20 trials, 5 replicates, imgsz 64 (about 10-15 min quiet)
    python benchmarks/aa_gate.py --trials 3 --replicates 3 --iters 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any


def sweep(out: Path, args: argparse.Namespace, extra: list[str]) -> float:
    """One sweep of ``args.replicates`` replicates into ``out``; returns its wall time."""
    replicates = f"repeat=range({args.replicates})" if args.repeat_key else \
        "seed=" + ",".join(str(42 + i) for i in range(args.replicates))  # before the `repeat` key existed
    cmd = [sys.executable, "-m", "medbench", "-m", replicates, "device=cpu", f"imgsz={args.imgsz}",
           f"iters.warmup={args.warmup}", f"iters.iters={args.iters}", "iters.min_time_s=0",
           f"hydra.sweep.dir={out}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def gate(base: Path, cur: Path, report: Path) -> dict[str, Any]:
    """The gate's exit status and its p50 verdict for one pair of sweeps."""
    cmd = [sys.executable, "-m", "medbench.compare", "--baseline", str(base), "--current", str(cur),
           "--fail-on-regression", "--output", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    data = json.loads(report.read_text())
    changes = [c for key in ("regressions", "improvements", "within_noise", "stable", "unreliable", "no_verdict")
               for c in data.get(key, [])]
    p50 = next((c for c in changes if c["metric"] == "latency.p50_ms"), {})
    return {"exit": proc.returncode, "p50_verdict": p50.get("verdict"), "p50_delta_pct": p50.get("delta_pct"),
            "p50_ci_pct": p50.get("ci_pct"), "runs": p50.get("runs"), "note": p50.get("note"),
            "regressed_metrics": [c["metric"] for c in data.get("regressions", [])],
            "flagged_runs": len(data.get("flagged_runs", []))}


def run_medians(root: Path) -> list[float]:
    return [json.loads(p.read_text())["latency"]["p50_ms"] for p in sorted(root.glob("*/result.json"))]


def has_repeat_key() -> bool:
    from dataclasses import fields

    from medbench.config import schema

    return any(f.name == "repeat" for f in fields(schema.Config))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--replicates", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("outputs/aa_gate") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    args = parser.parse_args()
    args.repeat_key = has_repeat_key()
    args.out.mkdir(parents=True, exist_ok=True)
    trials, started = [], time.perf_counter()
    for t in range(args.trials):
        d = args.out / f"trial{t:02d}"
        sides = [("base", []), ("same", []), ("slow", ["model.fuse=false"])]
        sides = sides[t % 3:] + sides[: t % 3]  # rotate the order: drift hits every side alike over the trials
        load = os.getloadavg()[0]
        for name, extra in sides:
            sweep(d / name, args, extra)
        aa = gate(d / "base", d / "same", d / "aa.json")
        slow = gate(d / "base", d / "slow", d / "slow.json")
        ratio = median(run_medians(d / "slow")) / median(run_medians(d / "base"))
        trials.append({"trial": t, "order": [s[0] for s in sides], "loadavg_1m": load, "aa": aa, "slowdown": slow,
                       "slow_over_base": ratio})
        print(f"trial {t:2d}: A/A exit {aa['exit']} p50 {aa['p50_verdict']} {aa['p50_delta_pct'] or 0:+.1f}% "
              f"{aa['p50_ci_pct']} | slow exit {slow['exit']} p50 {slow['p50_verdict']} "
              f"{slow['p50_delta_pct'] or 0:+.1f}% {slow['p50_ci_pct']} | load {load:.1f} | "
              f"{time.perf_counter() - started:.0f}s", flush=True)
    n = len(trials)
    summary = {
        "workflow": f"2 sweeps of -m {'repeat' if args.repeat_key else 'seed'} x{args.replicates} device=cpu "
                    f"imgsz={args.imgsz} iters.warmup={args.warmup} iters.iters={args.iters}, then medbench compare "
                    "--fail-on-regression (default threshold 5%)",
        "trials": n,
        "aa_false_alarms": sum(t["aa"]["exit"] == 1 for t in trials),
        "aa_unreliable": sum(t["aa"]["p50_verdict"] == "unreliable" for t in trials),
        "slowdown_detected": sum(t["slowdown"]["exit"] == 1 for t in trials),
        "slowdown_p50_regression": sum(t["slowdown"]["p50_verdict"] == "regression" for t in trials),
        "slowdown_unreliable": sum(t["slowdown"]["p50_verdict"] == "unreliable" for t in trials),
        "injected_slowdown_pct": 100 * (median(t["slow_over_base"] for t in trials) - 1) if trials else None,
        "loadavg_1m_median": median(t["loadavg_1m"] for t in trials) if trials else None,
        "wall_s": time.perf_counter() - started,
        "per_trial": trials,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nA/A false alarms (gate exit 1): {summary['aa_false_alarms']}/{n}   "
          f"(unreliable p50 verdicts: {summary['aa_unreliable']}/{n})")
    print(f"slowdown detected (gate exit 1): {summary['slowdown_detected']}/{n}, p50 regression "
          f"{summary['slowdown_p50_regression']}/{n}   (unreliable: {summary['slowdown_unreliable']}/{n}); "
          f"injected slowdown measured {summary['injected_slowdown_pct']:+.1f}% (median over trials)")
    print(f"median load average {summary['loadavg_1m_median']:.1f}; {summary['wall_s']:.0f}s; "
          f"details: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
