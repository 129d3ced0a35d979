"""``BenchmarkSuite``: named API benchmarks run together, saved as one suite file and compared with a baseline."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medbench.api.benchmarks import PerformanceBenchmark
from medbench.api.result import BenchmarkResult
from medbench.results.load import read_suite
from medbench.results.record import SUITE_KIND, Suite
from medbench.results.store import collect_env, utc_now, write_json_atomic
from medbench.run.devices import resolve_device
from medbench.run.timing import time_once

__all__ = ["BenchmarkSuite", "SUITE_KIND", "load_suite"]


class BenchmarkSuite:
    """Named benchmarks run together, saved as one JSON file (with env info) and compared with a baseline file.

    ``add_benchmark(name, fn)``: ``fn`` is called with no arguments (use ``functools.partial`` or a lambda to bind
    some). If it returns a ``BenchmarkResult`` (e.g. ``lambda: ModelBenchmark(m).run(8, 50)``) that is the
    benchmark's result, renamed to ``name``. Otherwise ``fn`` itself is the workload: that first call is its cold
    start (``metadata["first_call_ms"]``), and it is then timed by ``PerformanceBenchmark`` with the suite's
    settings (``warmup_iterations``, ``test_iterations``, ``device``; per benchmark overridable by keyword).
    A benchmark that raises is recorded as failed with its error and the others still run.

    The suite file is ``{"schema_version": 1, "kind": "medbench-suite", "name", "created", "env", "results"}``:
    a valid ``--baseline`` / ``--current`` for ``python -m medbench.compare``.
    """

    def __init__(self, name: str, output_dir: str | os.PathLike = "./benchmarks", *, warmup_iterations: int = 10,
                 test_iterations: int = 100, device: str | int = "cpu") -> None:
        self.name = name
        self.output_dir = Path(output_dir)
        self.defaults = {"warmup_iterations": warmup_iterations, "test_iterations": test_iterations,
                         "device": device}
        self.benchmarks: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {}
        self.results: list[BenchmarkResult] = []
        self.created: str | None = None

    def add_benchmark(self, name: str, fn: Callable[[], Any], **settings: Any) -> BenchmarkSuite:
        """Register ``fn`` under ``name`` (unique); ``settings`` override the suite's PerformanceBenchmark ones."""
        if name in self.benchmarks:
            raise ValueError(f"benchmark {name!r} is already in suite {self.name!r}")
        if not callable(fn):
            raise TypeError(f"benchmark {name!r}: expected a callable, got {type(fn).__name__}")
        self.benchmarks[name] = (fn, settings)
        return self

    def run_benchmark(self, name: str) -> BenchmarkResult:
        """Run one registered benchmark; an exception becomes a failed result."""
        fn, settings = self.benchmarks[name]
        device = settings.get("device", self.defaults["device"])
        try:
            value, first_ms = time_once(fn, resolve_device(device))
            if isinstance(value, BenchmarkResult):
                value.name = name
                return value
            bench = PerformanceBenchmark(name, **{**self.defaults, **settings})
            result = bench.run(fn)
            result.metadata["first_call_ms"] = first_ms
            return result
        except Exception as exc:  # recorded, never raised: one broken benchmark must not lose the others
            return BenchmarkResult.failed(name, exc, {"device": str(device)})

    def run_all(self, *, progress: Callable[[BenchmarkResult], None] | None = None) -> list[BenchmarkResult]:
        """Run every benchmark in registration order; returns (and keeps) the results of this run.

        ``progress`` is called with each result as it is done (e.g. ``progress=print``)."""
        self.created = utc_now()
        self.results = []
        for name in self.benchmarks:
            result = self.run_benchmark(name)
            self.results.append(result)
            if progress is not None:
                progress(result)
        return self.results

    def to_dict(self) -> dict[str, Any]:
        """The suite file's content (runs the suite first when it has not run yet)."""
        if not self.results:
            self.run_all()
        return Suite(name=self.name, created=self.created or utc_now(), env=collect_env(),
                     results=self.results).to_json()

    def save_results(self, filename: str | os.PathLike | None = None) -> Path:
        """Write the suite file atomically to ``output_dir / filename`` (default ``<name>.json``); returns its path."""
        path = self.output_dir / (filename or f"{self.name}.json")
        return write_json_atomic(path, self.to_dict())

    def compare_with(self, baseline_file: str | os.PathLike, thresholds: dict[str, float] | None = None,
                     default_threshold: float = 5.0) -> Any:
        """Compare these results (current) with a baseline file by ``medbench.analysis.compare`` — the same verdicts as
        ``python -m medbench.compare``. A relative path not found from the working directory is looked up in
        ``output_dir``. Returns its ``ComparisonReport`` (``.has_regressions``, ``.regressions``, ``.to_dict()``; the text:
        ``medbench.cli.compare.render(report)``)."""
        from medbench.analysis.compare import compare_sources

        path = Path(baseline_file)
        if not path.exists() and not path.is_absolute() and (self.output_dir / path).exists():
            path = self.output_dir / path
        return compare_sources(str(path), self.to_dict(), thresholds=thresholds,
                               default_threshold=default_threshold)

    def __str__(self) -> str:
        body = "\n".join(str(r) for r in self.results) if self.results else "  (not run yet)"
        return f"suite {self.name}: {len(self.benchmarks)} benchmark(s)\n{body}"


def load_suite(path: str | os.PathLike) -> dict[str, Any]:
    """Read a suite file (any readable version, as version 2); a one-line ``ResultError`` when it is missing,
    unreadable or not a suite."""
    return read_suite(path).to_json()
