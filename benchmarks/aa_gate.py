"""How often does the regression gate cry wolf, and does it catch a real slowdown? (the README's CI workflow)

Each trial runs the recommended workflow: ``R`` rounds, and in each round one run of every side, each its own
process (``python -m medbench device=cpu imgsz=S runtime.threads=1 ... repeat=r hydra.run.dir=<side>/<r>``), so
the sides interleave and drift of the machine hits them alike. The sides:

* ``base``  — the baseline;
* ``same``  — exactly the same command (an A/A pair with ``base``);
* ``slow``  — the same model with Conv+BatchNorm folding switched off (``model.fuse=false``): the same weights and
  architecture (params and unfused GFLOPs equal, so the gate compares them), every forward runs the extra
  BatchNorm kernels — a real regression of the kind CI should catch ("someone broke fusing"); its size is measured
  here (median over trials of the paired run ratios) and reported next to the detection rate.

The order of the sides rotates from round to round. Then ``medbench compare --baseline base --current X
--fail-on-regression --fail-on-unreliable`` for X = same and X = slow, and — as the README's workflow does — while
a comparison's gate exits 3 (unreliable: too few clean runs, or too noisy to judge) five more rounds of its sides
and another look, up to 20 rounds. Counted: A/A trials that report a regression at any look (false alarms, the
repeated looks included), slowdown trials that do (detections), trials that needed more rounds, and those still
``unreliable`` at the end (with ``--fail-on-unreliable`` the gate fails: rerun). Each look's report is kept
(``trialNN/aa_10.json``, ``slowdown_15.json``, ...). Not a test: on a shared machine the figures depend on the
load, which is recorded (load average, flagged runs, the runs' own spread).

    python benchmarks/aa_gate.py                     # 20 trials x 10-20 rounds x 3 sides, imgsz 160 (~75 min)
    python benchmarks/aa_gate.py --trials 3 --replicates 3 --more 2 --max-replicates 5 --imgsz 64 --iters 30
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

from medbench.cli.compare import EXIT_UNRELIABLE  # the gate's "cannot tell" status: add rounds

QUIET_IQR_PCT = 8.0  # a trial whose runs' median IQR is at most this is "quiet" in the summary


def one_run(out: Path, r: int, args: argparse.Namespace, extra: list[str]) -> float:
    """Replicate ``r`` of one side into ``out``, its own process; returns its wall time."""
    cmd = [sys.executable, "-m", "medbench", "device=cpu", f"imgsz={args.imgsz}", f"iters.warmup={args.warmup}",
           f"iters.iters={args.iters}", "iters.min_time_s=0", f"runtime.threads={args.threads}", f"repeat={r}",
           f"hydra.run.dir={out}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def gate(base: Path, cur: Path, report: Path) -> dict[str, Any]:
    """The gate's exit status and its p50 verdict for one pair of sweeps."""
    cmd = [sys.executable, "-m", "medbench.compare", "--baseline", str(base), "--current", str(cur),
           "--fail-on-regression", "--fail-on-unreliable", "--output", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    data = json.loads(report.read_text())
    changes = [c for key in ("regressions", "improvements", "within_noise", "stable", "unreliable", "no_verdict")
               for c in data.get(key, [])]
    p50 = next((c for c in changes if c["metric"] == "latency.p50_ms"), {})
    return {"exit": proc.returncode, "regression": bool(data.get("regressions")), "p50_verdict": p50.get("verdict"),
            "p50_delta_pct": p50.get("delta_pct"), "test": p50.get("test"),
            "p50_ci_pct": p50.get("ci_pct"), "runs": p50.get("runs"), "note": p50.get("note"),
            "regressed_metrics": [c["metric"] for c in data.get("regressions", [])],
            "flagged_runs": len(data.get("flagged_runs", []))}


def paired_ratio(slow: Path, base: Path) -> float:
    """Median over rounds of (slow run r's median / base run r's median): the size of the injected slowdown."""
    def p50(root: Path) -> dict[str, float]:
        return {p.parent.name: json.loads(p.read_text())["latency"]["p50_ms"] for p in root.glob("*/result.json")}

    b, s = p50(base), p50(slow)
    return median(s[k] / b[k] for k in b.keys() & s.keys())


def median_run_iqr_pct(trial: Path) -> float:
    """Median over the trial's runs of their IQR / median (%): the noise the records show, flagged or not."""
    return 100 * median(json.loads(p.read_text())["noise"]["iqr_over_median"] for p in trial.glob("*/*/result.json"))


def run_trial(d: Path, t: int, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """One trial of the workflow, for both comparisons: rounds, a look, and — while a comparison's gate exits
    ``EXIT_UNRELIABLE`` — ``--more`` rounds of its sides and another look, up to ``--max-replicates`` rounds.
    Returns every look of each comparison (the last one is its outcome)."""
    sides = {"base": [], "same": [], "slow": ["model.fuse=false"]}
    compared = {"aa": "same", "slowdown": "slow"}
    looks: dict[str, list[dict[str, Any]]] = {name: [] for name in compared}
    open_, done, target = set(compared), 0, args.replicates
    while open_:
        need = ["base", *(compared[name] for name in compared if name in open_)]
        for r in range(done, target):
            k = (t + r) % len(need)  # rotate the order: no side always runs first in its round
            for name in need[k:] + need[:k]:
                one_run(d / name / str(r), r, args, sides[name])
        done = target
        for name in sorted(open_):
            look = gate(d / "base", d / compared[name], d / f"{name}_{done}.json")
            looks[name].append({**look, "rounds": done})
            if look["exit"] != EXIT_UNRELIABLE or done >= args.max_replicates:
                open_.discard(name)
        target = min(done + args.more, args.max_replicates)
    return looks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--replicates", type=int, default=10, help="rounds before the first look (default: 10)")
    parser.add_argument("--more", type=int, default=5,
                        help=f"rounds added while the gate exits {EXIT_UNRELIABLE} (unreliable; default: 5)")
    parser.add_argument("--max-replicates", type=int, default=20, help="rounds at most (default: 20)")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="runtime.threads of every run (default: 1)")
    parser.add_argument("--out", type=Path, default=Path("outputs/aa_gate") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trials, started = [], time.perf_counter()
    for t in range(args.trials):
        d = args.out / f"trial{t:02d}"
        load = os.getloadavg()[0]
        looks = run_trial(d, t, args)
        aa, slow = looks["aa"][-1], looks["slowdown"][-1]
        ratio = paired_ratio(d / "slow", d / "base")
        trials.append({"trial": t, "loadavg_1m": load, "aa": aa, "slowdown": slow, "slow_over_base": ratio,
                       "aa_looks": looks["aa"], "slowdown_looks": looks["slowdown"],
                       "median_run_iqr_pct": median_run_iqr_pct(d)})
        print(f"trial {t:2d}: A/A exit {aa['exit']} p50 {aa['p50_verdict']} {aa['p50_delta_pct'] or 0:+.1f}% "
              f"{aa['p50_ci_pct']} ({aa['rounds']} rounds) | slow exit {slow['exit']} p50 {slow['p50_verdict']} "
              f"{slow['p50_delta_pct'] or 0:+.1f}% {slow['p50_ci_pct']} ({slow['rounds']} rounds) | "
              f"load {load:.1f} | run IQR {trials[-1]['median_run_iqr_pct']:.1f}% | "
              f"{time.perf_counter() - started:.0f}s", flush=True)
    n = len(trials)
    summary = {
        "workflow": f"{args.replicates} rounds, each side one process per round (repeat=r), device=cpu "
                    f"imgsz={args.imgsz} iters.warmup={args.warmup} iters.iters={args.iters} "
                    f"runtime.threads={args.threads}, then medbench compare "
                    "--fail-on-regression --fail-on-unreliable (default threshold 5%); while it exits "
                    f"{EXIT_UNRELIABLE} (unreliable), {args.more} more rounds and again, up to "
                    f"{args.max_replicates} rounds",
        "trials": n,
        "aa_false_alarms": sum(t["aa"]["regression"] for t in trials),
        "aa_false_alarms_first_look": sum(t["aa_looks"][0]["regression"] for t in trials),
        "aa_gate_failed": sum(t["aa"]["exit"] != 0 for t in trials),
        "aa_unreliable": sum(t["aa"]["exit"] == EXIT_UNRELIABLE for t in trials),
        "aa_more_rounds": sum(len(t["aa_looks"]) > 1 for t in trials),
        "slowdown_detected_first_look": sum(t["slowdown_looks"][0]["regression"] for t in trials),
        "slowdown_more_rounds": sum(len(t["slowdown_looks"]) > 1 for t in trials),
        "rounds_mean": sum(max(t["aa"]["rounds"], t["slowdown"]["rounds"]) for t in trials) / n if n else None,
        "slowdown_detected": sum(t["slowdown"]["regression"] for t in trials),
        "slowdown_p50_regression": sum(t["slowdown"]["p50_verdict"] == "regression" for t in trials),
        "slowdown_unreliable": sum(t["slowdown"]["exit"] == EXIT_UNRELIABLE for t in trials),
        "injected_slowdown_pct": 100 * (median(t["slow_over_base"] for t in trials) - 1) if trials else None,
        "loadavg_1m_median": median(t["loadavg_1m"] for t in trials) if trials else None,
        "quiet_trials": sum(t["median_run_iqr_pct"] <= QUIET_IQR_PCT for t in trials),
        "quiet_slowdown_detected": sum(t["slowdown"]["regression"] for t in trials
                                       if t["median_run_iqr_pct"] <= QUIET_IQR_PCT),
        "wall_s": time.perf_counter() - started,
        "per_trial": trials,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nA/A false alarms (a regression reported): {summary['aa_false_alarms']}/{n}   "
          f"(first look: {summary['aa_false_alarms_first_look']}/{n}; more rounds: {summary['aa_more_rounds']}/{n}; "
          f"unreliable at the end: {summary['aa_unreliable']}/{n}; gate failed: {summary['aa_gate_failed']}/{n})")
    print(f"slowdown detected at the first look: {summary['slowdown_detected_first_look']}/{n}; more rounds: "
          f"{summary['slowdown_more_rounds']}/{n}; rounds per trial {summary['rounds_mean']:.1f} on average")
    print(f"slowdown detected (a regression reported): {summary['slowdown_detected']}/{n}, p50 regression "
          f"{summary['slowdown_p50_regression']}/{n}   (unreliable: {summary['slowdown_unreliable']}/{n}); "
          f"injected slowdown measured {summary['injected_slowdown_pct']:+.1f}% (median over trials)")
    quiet, caught = summary["quiet_trials"], summary["quiet_slowdown_detected"]
    print(f"quiet trials (median run IQR <= {QUIET_IQR_PCT:g}%): slowdown detected {caught}/{quiet}; "
          f"noisier trials: {summary['slowdown_detected'] - caught}/{n - quiet}")
    print(f"median load average {summary['loadavg_1m_median']:.1f}; {summary['wall_s']:.0f}s; "
          f"details: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
