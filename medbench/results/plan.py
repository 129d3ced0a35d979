"""The sweep plan: every point's overrides, written into the sweep dir when a sweep starts.

``sweep_plan.json`` is what lets a reader tell a point that never started (the sweep was interrupted, a
launcher died) from one that was never asked for: ``medbench.results.crashes.not_run_records`` lists the
planned points without a run dir, and ``python -m medbench.resume`` re-runs them. The file is written once,
atomically, and never rewritten by a re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PLAN_FILE = "sweep_plan.json"
PLAN_VERSION = 1


def plan_points(config: DictConfig) -> list[dict[str, Any]] | None:
    """The points Hydra's basic sweeper (or a subclass, such as medbench's) will launch, in job-number order: ``[{"num", "subdir", "overrides"}]``.

    Computed exactly as ``BasicSweeper.sweep`` does (``hydra.sweeper.params`` then the command line's task
    overrides, expanded by ``split_arguments``); None for a sweeper that is not a BasicSweeper.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import get_class

    try:
        sweeper = get_class(str(config.hydra.sweeper._target_))
    except Exception:
        return None
    # by name: Hydra's plugin scan may have re-executed basic_sweeper, leaving subclasses on the earlier class object
    if not (isinstance(sweeper, type) and any(c.__name__ == BasicSweeper.__name__ for c in sweeper.__mro__)):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in config.hydra.overrides.task]
    overrides = OverridesParser.create().parse_overrides(arguments)
    batches = sweeper.split_arguments(overrides, None)  # the sweeper's own order (medbench's: replicates outermost)
    subdir = OmegaConf.select(config, "hydra.sweep.subdir", throw_on_resolution_failure=False)
    raw_subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    by_num = raw_subdir == "${hydra.job.num}"
    return [{"num": num, "subdir": str(num) if by_num else None, "overrides": list(point)}
            for num, point in enumerate(batches[0])] if subdir is not None or by_num else None


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
