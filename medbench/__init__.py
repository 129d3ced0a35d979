"""medbench: reproducible latency / throughput / memory benchmarks for PyTorch and Ultralytics vision models.

The Python API is exported lazily (PEP 562): ``from medbench import ModelBenchmark`` imports torch,
but ``import medbench`` alone (e.g. for ``python -m medbench --help``) does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medbench.api import API_NAMES

__all__ = list(API_NAMES)

_LAZY = {name: "medbench.api.benchmarks" for name in __all__} | {
    "BenchmarkResult": "medbench.api.result", "BenchmarkSuite": "medbench.api.benchmark_suite"}

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time the names come from __getattr__
    from medbench.api.benchmark_suite import BenchmarkSuite  # noqa: F401
    from medbench.api.benchmarks import DataLoaderBenchmark, ModelBenchmark, PerformanceBenchmark  # noqa: F401
    from medbench.api.result import BenchmarkResult  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import an API name on first use; unknown names raise AttributeError as usual (no blanket forwarding)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
