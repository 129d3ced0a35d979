"""medbench's sweeper: Hydra's basic sweeper with replicates in rounds and cheaper up-front validation.

Hydra's ``BasicSweeper`` runs the cartesian product of the swept keys in the order they are given,
the *last* key varying fastest. Two changes, each because a benchmark sweep is not a training run:

* ``repeat`` (the replicate index) always varies slowest, wherever it is written
  (``model=a,b repeat='range(5)'`` runs like ``repeat='range(5)' model=a,b``): each round of
  replicates covers every point once before the next round starts, so slow drift of the machine
  (thermal state, a neighbour's load) hits every variant alike instead of one variant's block.
  Every other key keeps Hydra's order.
* Before launching, the basic sweeper composes every point's config once to catch mistakes early,
  and the launcher composes it again to run it (~0.1-0.2 s each time). Here a point is composed up
  front only when one of its ``key=value`` overrides has not been composed yet, so every value a
  user typed is still checked before anything runs (``model=nosuch`` fails at once), and the
  launcher takes that composed config instead of composing it again: every point is composed once
  (a 3 x 4 x 5 sweep composes 60 configs, not 120). A mistake that only a *combination* of values
  can cause surfaces when that point is launched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig

REPLICATE_KEY = "repeat"


@dataclass
class InterleavedSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.medbench_launcher.interleaved_sweeper.InterleavedSweeper"


def register() -> None:
    """``hydra/sweeper=interleaved`` (config.yaml selects it)."""
    ConfigStore.instance().store(group="hydra/sweeper", name="interleaved", node=InterleavedSweeperConf,
                                 provider="medbench")


class _ComposeOnce(ConfigLoader):
    """Hydra's config loader, except that a sweep point composed for validation is handed to the launcher
    (once: the launcher changes it) instead of being composed again."""

    def __init__(self, inner: ConfigLoader) -> None:
        self.inner = inner
        self.composed: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def validate(self, master_config: DictConfig, sweep_overrides: List[str]) -> None:
        key = (id(master_config), tuple(sweep_overrides))
        self.composed[key] = self.inner.load_sweep_config(master_config, list(sweep_overrides))

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        done = self.composed.pop((id(master_config), tuple(sweep_overrides)), None)
        return done if done is not None else self.inner.load_sweep_config(master_config, sweep_overrides)

    def load_configuration(self, config_name: Optional[str], overrides: List[str], run_mode: RunMode,
                           from_shell: bool = True, validate_sweep_overrides: bool = True) -> DictConfig:
        return self.inner.load_configuration(config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    def get_search_path(self) -> Any:
        return self.inner.get_search_path()

    def get_sources(self) -> Any:
        return self.inner.get_sources()

    def list_groups(self, parent_name: str) -> List[str]:
        return self.inner.list_groups(parent_name)

    def get_group_options(self, group_name: str, results_filter: Optional[ObjectType] = ObjectType.CONFIG,
                          config_name: Optional[str] = None, overrides: Optional[List[str]] = None) -> List[str]:
        return self.inner.get_group_options(group_name, results_filter, config_name, overrides)

    def compute_defaults_list(self, config_name: Optional[str], overrides: List[str], run_mode: RunMode) -> Any:
        return self.inner.compute_defaults_list(config_name, overrides, run_mode)


class InterleavedSweeper(BasicSweeper):
    """``BasicSweeper`` with the replicate key outermost and each override value composed once up front."""

    def __init__(self, max_batch_size: Optional[int], params: Optional[dict[str, str]] = None) -> None:
        # BasicSweeper.__init__ calls super(BasicSweeper, self), which breaks once Hydra's plugin scan has
        # re-executed its module (the name then means a new class): set its attributes here instead.
        Sweeper.__init__(self)
        self.overrides = None
        self.batch_index = 0
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.hydra_context = self.config = self.launcher = None
        self._checked: set[str] = set()
        self._loader: _ComposeOnce | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._loader = _ComposeOnce(hydra_context.config_loader)
        shared = HydraContext(config_loader=self._loader, callbacks=hydra_context.callbacks)
        super().setup(hydra_context=shared, task_function=task_function, config=config)

    @staticmethod
    def split_arguments(overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        # sorted() is stable: the replicate key moves to the front, the others keep their order.
        ordered = sorted(overrides, key=lambda o: o.get_key_element().lstrip("+~") != REPLICATE_KEY)
        return BasicSweeper.split_arguments(ordered, max_batch_size)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        todo = []
        for point in batch:
            fresh = set(point) - self._checked
            if fresh:
                todo.append(point)
                self._checked |= fresh
        assert self._loader is not None and self.config is not None
        for point in todo:
            self._loader.validate(self.config, list(point))

