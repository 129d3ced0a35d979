"""The sweep plan: every point's overrides, written into the sweep dir when a sweep starts.

``sweep_plan.json`` is what lets a reader tell a point that never started (the sweep was interrupted, a
launcher died) from one that was never asked for: ``medbench.results.crashes.not_run_records`` lists the
planned points without a run dir, and ``python -m medbench.resume`` re-runs them. The file is written once,
atomically, and never rewritten by a re-run. The points come from Hydra's sweeper
(``medbench.cli.sweep_plan.plan_points``); this module only writes and reads the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLAN_FILE = "sweep_plan.json"
PLAN_VERSION = 1


def write_plan(sweep_dir: Path, points: list[dict[str, Any]]) -> Path | None:
    """Write ``sweep_plan.json`` atomically, unless the sweep dir already has one (a re-run keeps the original)."""
    from medbench.results.store import utc_now, write_json_atomic

    path = sweep_dir / PLAN_FILE
    if path.exists():
        return None
    return write_json_atomic(path, {"plan_version": PLAN_VERSION, "created_at": utc_now(), "points": points})


def read_plan(sweep_dir: Path) -> list[dict[str, Any]]:
    """The planned points of ``sweep_dir`` (empty without a readable plan). Malformed entries are left out."""
    try:
        data = json.loads((Path(sweep_dir) / PLAN_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return []
    points = data.get("points") if isinstance(data, dict) else None
    out = []
    for p in points if isinstance(points, list) else []:
        if (isinstance(p, dict) and isinstance(p.get("overrides"), list) and isinstance(p.get("num"), int)
                and all(isinstance(o, str) for o in p["overrides"])):
            subdir = p.get("subdir")
            out.append({"num": p["num"], "subdir": subdir if isinstance(subdir, str) else None,
                        "overrides": list(p["overrides"])})
    return out
