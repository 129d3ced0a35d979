"""medbench's sweeper: Hydra's basic sweeper with replicates in rounds and cheaper up-front validation.

Hydra's ``BasicSweeper`` runs the cartesian product of the swept keys in the order they are given,
the *last* key varying fastest. Two changes, each because a benchmark sweep is not a training run:

* ``repeat`` (the replicate index) always varies slowest, wherever it is written
  (``model=a,b repeat='range(5)'`` runs like ``repeat='range(5)' model=a,b``): each round of
  replicates covers every point once before the next round starts, so slow drift of the machine
  (thermal state, a neighbour's load) hits every variant alike instead of one variant's block.
  Every other key keeps Hydra's order.
* Before launching, the basic sweeper composes every point's config once to catch mistakes early,
  and the launcher composes it again to run it. Here a point is composed up front only when one of
  its ``key=value`` overrides has not been composed yet, so every value a user typed is still
  checked before anything runs (``model=nosuch`` fails at once), at a fraction of the cost
  (a 3 x 4 x 5 sweep composes 10 points up front, not 60). A mistake that only a *combination* of
  values can cause surfaces when that point is launched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.plugins.sweeper import Sweeper

REPLICATE_KEY = "repeat"


@dataclass
class InterleavedSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.medbench_launcher.interleaved_sweeper.InterleavedSweeper"


def register() -> None:
    """``hydra/sweeper=interleaved`` (config.yaml selects it)."""
    ConfigStore.instance().store(group="hydra/sweeper", name="interleaved", node=InterleavedSweeperConf,
                                 provider="medbench")


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
        if todo:
            super().validate_batch_is_legal(todo)

