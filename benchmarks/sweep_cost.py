"""Sweep cost: how much longer an in-process sweep takes than the benchmarking it does.

Runs ``python -m medbench -m ...`` (12 points by default: 3 models x 2 sizes x 2 batch sizes, CPU,
50 warm-up + 50 timed iterations) in a fresh process and compares its wall time with the work the
points had to do anyway, summed from their records:

    work = Σ model build/copy + placement (cold_start.model_load_ms) + first forward + warm-up
           (cold_start.warmup_ms) + the timed loop (Σ samples_ms)

and prints ``wall / work`` twice: for the whole process (interpreter start, imports, Hydra start-up,
collation at the end: what a user waits for) and for the sweep proper (first point started → tables
written). Target: the whole-process ratio <= 1.15. A ratio, measured in one go: on a loaded machine
both sides stretch, and the figure moves by a few percent from run to run.

    python benchmarks/sweep_cost.py                    # the 12-point sweep above
    python benchmarks/sweep_cost.py --repeats 3        # three sweeps, one after the other: median ratio
    python benchmarks/sweep_cost.py --sizes 128,160    # smaller images: less work, so the overhead weighs more
    python benchmarks/sweep_cost.py --python /path/to/other/venv/bin/python   # another checkout, same sweep
    python benchmarks/sweep_cost.py --profile sweep.prof                      # cProfile the sweep process
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

def run_sweep(python: str, sweep_dir: Path, iters: int, warmup: int, sizes: str, profile: str | None) -> float:
    """Wall seconds of one sweep process (fresh interpreter): 3 models x 2 sizes x batch 1,2."""
    sweep = ["model=baseline,ghost,eca", f"imgsz={sizes}", "batch=1,2"]
    cmd = [python, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "medbench", "-m", *sweep,
           "device=cpu", f"iters.warmup={warmup}", f"iters.iters={iters}", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=sweep_dir.parent)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def work_seconds(sweep_dir: Path) -> tuple[float, float, int, dict[str, float]]:
    """(Σ work, sweep-proper wall, points, work by part) from the records and the tables' mtime."""
    records = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/result.json"))]
    parts = {"build": 0.0, "first_forward": 0.0, "warmup": 0.0, "timed": 0.0}
    for r in records:
        cold = r["cold_start"]
        parts["build"] += cold["model_load_ms"] / 1e3
        parts["first_forward"] += cold["first_forward_ms"] / 1e3
        # records before cold_start.warmup_ms existed: warm-up ≈ warm-up count x median iteration
        warm = cold.get("warmup_ms")
        parts["warmup"] += (warm if warm is not None else r["metadata"]["warmup"] * r["latency"]["p50_ms"]) / 1e3
        parts["timed"] += sum(r["samples_ms"]) / 1e3
    first_start = min(datetime.fromisoformat(r["provenance"]["started_at"]) for r in records)
    tables = datetime.fromtimestamp((sweep_dir / "comparison.csv").stat().st_mtime, tz=first_start.tzinfo)
    return sum(parts.values()), (tables - first_start).total_seconds(), len(records), parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter whose medbench runs the sweep")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--sizes", default="256,320", help="the two image sizes of the sweep")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps to run one after the other (median ratio)")
    parser.add_argument("--profile", help="write a cProfile of the (first) sweep process here")
    args = parser.parse_args()
    ratios, inner = [], []
    with tempfile.TemporaryDirectory(prefix="medbench-sweep-cost-") as tmp:
        for i in range(args.repeats):
            sweep_dir = Path(tmp) / f"sweep{i}"
            sweep_dir.mkdir()
            wall = run_sweep(args.python, sweep_dir, args.iters, args.warmup, args.sizes,
                             args.profile if i == 0 else None)
            work, sweep_wall, points, parts = work_seconds(sweep_dir)
            ratios.append(wall / work)
            inner.append(sweep_wall / work)
            detail = ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
            print(f"sweep {i + 1}: {points} points, process wall {wall:.1f} s, sweep wall {sweep_wall:.1f} s, "
                  f"work {work:.1f} s ({detail}) → ratio {wall / work:.3f} (sweep proper {sweep_wall / work:.3f})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"ratio (process wall / work): median {statistics.median(ratios):.3f} over {len(ratios)} sweep(s); "
          f"sweep proper {statistics.median(inner):.3f}; target <= 1.15; load average now {load:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
