"""The points of a sweep as Hydra's sweeper will launch them (written by ``medbench.results.plan.write_plan``
into the sweep dir when the sweep starts)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


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
