"""Replicates: the ``repeat`` key, medbench's interleaved sweeper (real Hydra parser, real sweeps), the ablation preset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import QUICK
from hydra_plugins.medbench_launcher.interleaved_sweeper import InterleavedSweeper
from medbench.config.schema import to_job
from medbench.errors import ConfigError


def _points(*args: str) -> list[list[str]]:
    overrides = OverridesParser.create().parse_overrides(list(args))
    (batch,) = InterleavedSweeper.split_arguments(overrides, max_batch_size=None)
    return batch


def test_repeat_defaults_to_a_single_run_and_must_not_be_negative(compose_cfg):
    assert to_job(compose_cfg()).repeat == 0
    assert to_job(compose_cfg("repeat=3")).repeat == 3
    with pytest.raises(ConfigError, match="repeat must be >= 0"):
        to_job(compose_cfg("repeat=-1"))


def test_replicate_key_varies_slowest_wherever_it_is_written():
    first = _points("repeat=range(3)", "model=a,b", "imgsz=1,2")
    last = _points("model=a,b", "imgsz=1,2", "repeat=range(3)")
    assert first == last
    assert len(first) == 12
    # each round of 4 points covers every (model, imgsz) once; inside a round Hydra's order (last key fastest)
    rounds = [first[i:i + 4] for i in range(0, 12, 4)]
    for r, points in enumerate(rounds):
        assert [p[0] for p in points] == [f"repeat={r}"] * 4
        assert [p[1:] for p in points] == [["model=a", "imgsz=1"], ["model=a", "imgsz=2"],
                                          ["model=b", "imgsz=1"], ["model=b", "imgsz=2"]]


def test_without_replicates_hydra_order_is_untouched():
    assert _points("model=a,b", "imgsz=1,2") == [["model=a", "imgsz=1"], ["model=a", "imgsz=2"],
                                                 ["model=b", "imgsz=1"], ["model=b", "imgsz=2"]]


def test_ablation_runs_three_interleaved_replicates_on_a_split_budget(compose_cfg):
    cfg = compose_cfg("experiment=ablation", return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    assert list(params) == ["repeat", "model"] and params["repeat"] == "range(3)"
    assert cfg.hydra.sweeper._target_.endswith("InterleavedSweeper")
    job = to_job(compose_cfg("experiment=ablation"))
    # 3 x (20 + 100) iterations per variant: about one default run's 50 + 300
    assert (job.iters.warmup, job.iters.iters) == (20, 100)
    assert 3 * (job.iters.warmup + job.iters.iters) <= 1.1 * (50 + 300)
    # the user's own iteration preset still wins over the experiment's
    assert to_job(compose_cfg("experiment=ablation", "iters=quick")).iters.iters == 10


@pytest.mark.slow
def test_replicate_sweep_runs_in_rounds_and_replicates_share_everything_else(medbench_cli, tmp_path: Path):
    proc = medbench_cli("-m", *QUICK, "input=assets", "model=baseline,ghost", "repeat=range(2)", "device=cpu",
                        "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    records = [json.loads((sweep / str(i) / "result.json").read_text()) for i in range(4)]
    order = [(r["metadata"]["repeat"], r["metadata"]["model_name"]) for r in records]
    assert order == [(0, "baseline"), (0, "ghost"), (1, "baseline"), (1, "ghost")]
    starts = [r["provenance"]["started_at"] for r in records]
    assert starts == sorted(starts)  # job numbers are the order they ran in
    assert all(r["status"] == "ok" for r in records)
    plan = json.loads((sweep / "sweep_plan.json").read_text())["points"]  # the plan has the sweeper's order
    assert [p["overrides"] for p in plan] == [r["metadata"]["overrides"] for r in records]
    for key in ("seed", "benchmark_list_sha256", "benchmark_size", "input_shape"):
        assert len({json.dumps(r["metadata"][key]) for r in records}) == 1, key
    # replicates are not variants: the table has no extra column telling them apart
    table = pd.read_csv(sweep / "comparison.csv")
    assert len(table) == 4
    assert not any("repeat" in str(v) for v in table.get("variant", pd.Series(dtype=str)).fillna(""))


def test_every_swept_value_is_checked_before_anything_runs(medbench_cli, tmp_path: Path):
    proc = medbench_cli("-m", *QUICK, "imgsz=64,96", "model=baseline,nosuch", "device=cpu", "hydra.sweep.dir=sweep")
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "nosuch" in proc.stderr
    assert not list((tmp_path / "sweep").rglob("result.json"))


def test_each_point_is_composed_once_and_values_are_checked_up_front(tmp_path: Path):
    """A real in-process Hydra sweep (trivial task) through the sweeper, counting compositions."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import HydraContext, RunMode

    from medbench.cli.app import register_launchers
    from medbench.config.schema import register_configs

    class Counting(ConfigLoaderImpl):
        calls: list[tuple[str, ...]] = []

        def load_sweep_config(self, master_config, sweep_overrides):
            self.calls.append(tuple(sweep_overrides))
            return super().load_sweep_config(master_config, sweep_overrides)

    register_configs()
    register_launchers()
    loader = Counting(config_search_path=create_config_search_path("pkg://medbench.conf"))
    args = ["model=baseline,ghost,eca", "imgsz=64,96", "repeat=range(2)"]
    master = loader.load_configuration("config", [f"hydra.sweep.dir={tmp_path}"] + args, RunMode.MULTIRUN)
    sweeper = InterleavedSweeper(max_batch_size=None)
    ran: list[tuple] = []
    sweeper.setup(hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks(master)),
                  task_function=lambda cfg: ran.append((cfg.repeat, cfg.model.name, cfg.imgsz)), config=master)
    try:
        sweeper.sweep(arguments=args)
    finally:
        GlobalHydra.instance().clear()
    assert len(ran) == 12 and ran[:6] == [(0, m, s) for m in ("baseline", "ghost", "eca") for s in (64, 96)]
    assert len(Counting.calls) == 12 == len(set(Counting.calls))  # once per point, not twice
