"""The Python API (SPEC §9): benchmark any callable, ``nn.Module`` or ``DataLoader`` from code, and group
benchmarks into a suite that is saved as one JSON file and compared like CLI results.

Nothing here times or summarises anything itself: every timed loop is ``medbench.run.timing.measure`` (warm-up,
``perf_counter`` or CUDA event pairs with a synchronize, peak-memory reset) and every statistic comes from
``medbench.analysis.stats.summarize``, exactly as in the CLI runner. What this module adds is the bookkeeping around the
engine: how many *items* one call handles (1 for a callable, the batch for a model, the real size of each batch
for a loader), so that ``throughput = items / duration`` with ``duration`` the total timed seconds.

    >>> from medbench import PerformanceBenchmark
    >>> result = PerformanceBenchmark("sum", warmup_iterations=10, test_iterations=100).run(sum, range(1000))
    >>> print(result)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from medbench.analysis import stats
from medbench.run.devices import resolve_device
from medbench.errors import ResultError
from medbench.results.store import SCHEMA_VERSION, SUITE_KIND, collect_env, error_block, finite, read_json, utc_now, write_json_atomic
from medbench.run.timing import Measurement, measure, time_once

__all__ = [
    "BenchmarkResult",
    "BenchmarkSuite",
    "DataLoaderBenchmark",
    "ModelBenchmark",
    "PerformanceBenchmark",
    "SUITE_KIND",
    "load_suite",
]



# --- the result ---------------------------------------------------------------------------------------------------

@dataclass
class BenchmarkResult:
    """One API benchmark: totals, the SPEC §4 latency/noise blocks and the raw samples, as the CLI JSON has them.

    ``duration`` is the total timed seconds (sum of the samples, warm-up excluded); ``throughput`` is items per
    second over that time (calls/s for a callable, samples/s for a model or a loader; the unit is
    ``metadata["unit"]``). ``memory_allocated`` is the peak CUDA memory allocated during the timed loop and
    ``memory_reserved`` the memory held by the CUDA caching allocator after it, both in MB; both are ``None`` on
    CPU, where ``metadata["peak_rss_MB"]`` gives the process' peak resident memory instead.
    """

    name: str
    duration: float
    throughput: float | None
    memory_allocated: float | None
    memory_reserved: float | None
    metadata: dict[str, Any]
    latency: dict[str, float] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)
    status: str = "ok"  # "ok" | "failed" (a suite records a benchmark that raised instead of stopping)
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain dict (NaN/inf become null); ``from_dict`` reads it back."""
        return finite(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        """Rebuild a result from ``to_dict()`` output (or one entry of a suite file's ``results``)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("metadata", {})
        values.setdefault("duration", 0.0)
        values.setdefault("throughput", None)
        values.setdefault("memory_allocated", None)
        values.setdefault("memory_reserved", None)
        values["samples_ms"] = [float(s) for s in values.get("samples_ms") or []]
        return cls(**values)

    @classmethod
    def failed(cls, name: str, exc: BaseException, metadata: dict[str, Any] | None = None) -> BenchmarkResult:
        """The record of a benchmark that raised: no numbers, the error block the CLI JSON uses."""
        return cls(name=name, duration=0.0, throughput=None, memory_allocated=None, memory_reserved=None,
                   metadata={"timestamp": utc_now(), **(metadata or {})}, status="failed", error=error_block(exc))

    def __str__(self) -> str:
        md = self.metadata
        head = f"{self.name} [{md.get('device', '?')}]"
        if not self.ok:
            err = self.error or {}
            return f"{head}: FAILED ({err.get('type')}: {err.get('message')})"
        unit = md.get("unit", "items/s")
        batch = f", batch {md['batch_size']}" if md.get("batch_size") not in (None, 1) else ""
        lines = [
            f"{head}: {md.get('iterations', len(self.samples_ms))} timed iterations{batch}, "
            f"{md.get('warmup', 0)} warm-up",
            f"  duration {self.duration:.3f} s   throughput {_num(self.throughput)} {unit}",
            f"  latency  p50 {_num(self.latency.get('p50_ms'))} ms   p95 {_num(self.latency.get('p95_ms'))} ms   "
            f"mean {_num(self.latency.get('mean_ms'))} ms",
            f"  memory   {self._memory_text()}",
        ]
        if self.noise.get("warning"):
            lines.append(f"  warning: {self.noise['warning']}")
        return "\n".join(lines)

    def _memory_text(self) -> str:
        if self.memory_allocated is not None:
            return f"allocated (peak) {self.memory_allocated:.1f} MB, reserved {_num(self.memory_reserved)} MB"
        rss = self.metadata.get("peak_rss_MB")
        return f"peak RSS {rss:.0f} MB (no GPU memory on {self.metadata.get('device', 'cpu')})" if rss else "n/a"


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def result_from_measurement(name: str, m: Measurement, *, items: int, batch_size: int, unit: str,
                            device: torch.device, metadata: dict[str, Any] | None = None) -> BenchmarkResult:
    """Engine output → ``BenchmarkResult``: statistics by ``stats.summarize``, throughput = items / timed seconds."""
    summary = stats.summarize(m.samples_ms, batch_size)
    duration = sum(m.samples_ms) / 1e3
    memory = m.memory or {}
    md = {
        "device": str(device),
        "batch_size": batch_size,
        "unit": unit,
        "warmup": m.warmup,
        "iterations": len(m.samples_ms),
        "items": items,
        "timer": m.timer,
        "timestamp": utc_now(),
        "throughput_p50": stats.fps(summary["latency"]["p50_ms"], batch_size),
        "peak_rss_MB": memory.get("peak_rss_MB"),
        "peak_gpu_mem_MB": memory.get("peak_gpu_mem_MB"),
        **(metadata or {}),
    }
    if m.pipelined_ms is not None:  # CUDA: calls queued back to back (see timing.py)
        md["pipelined_ms"] = m.pipelined_ms
        md["throughput_pipelined"] = stats.fps(m.pipelined_ms, batch_size)
    return BenchmarkResult(
        name=name,
        duration=duration,
        throughput=items / duration if duration > 0 else None,
        memory_allocated=memory.get("peak_gpu_mem_MB"),
        memory_reserved=memory.get("reserved_MB"),
        metadata=md,
        latency=summary["latency"],
        noise=summary["noise"],
        samples_ms=list(m.samples_ms),
    )


# --- callables ----------------------------------------------------------------------------------------------------

class PerformanceBenchmark:
    """Time any callable: ``PerformanceBenchmark(name, warmup_iterations=10, test_iterations=100, device="cpu")
    .run(fn, *args, **kwargs)``.

    ``device`` only tells the engine which clock to use: on CUDA every call is timed with event pairs and a
    ``torch.cuda.synchronize`` so queued kernels count (``fn`` must put its own work on that device). ``fn`` is
    called as is (no ``inference_mode``: wrap it yourself when it runs a model). ``items_per_call`` turns calls/s
    into items/s (e.g. images per call) with ``unit`` naming it. ``min_time_s`` keeps timing past
    ``test_iterations`` until that much timed work has passed (at most 10x the iterations).
    """

    def __init__(self, name: str, warmup_iterations: int = 10, test_iterations: int = 100, device: str | int = "cpu",
                 *, items_per_call: int = 1, unit: str | None = None, min_time_s: float = 0.0) -> None:
        if test_iterations < 1 or warmup_iterations < 0 or items_per_call < 1:
            raise ValueError("need test_iterations >= 1, warmup_iterations >= 0 and items_per_call >= 1")
        self.name = name
        self.warmup_iterations = warmup_iterations
        self.test_iterations = test_iterations
        self.device = resolve_device(device)
        self.items_per_call = items_per_call
        self.unit = unit or ("calls/s" if items_per_call == 1 else "items/s")
        self.min_time_s = min_time_s

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BenchmarkResult:
        """Warm up, time ``fn(*args, **kwargs)`` and return the result (statistics of the timed calls only)."""
        call = (lambda: fn(*args, **kwargs)) if args or kwargs else fn
        m = measure(call, device=self.device, warmup=self.warmup_iterations, iters=self.test_iterations,
                    min_time_s=self.min_time_s)
        return result_from_measurement(
            self.name, m, items=len(m.samples_ms) * self.items_per_call, batch_size=self.items_per_call,
            unit=self.unit, device=self.device,
            metadata={"kind": "callable", "function": getattr(fn, "__qualname__", repr(fn))})


# --- models -------------------------------------------------------------------------------------------------------

class ModelBenchmark:
    """Time a ``torch.nn.Module`` forward on a seeded random input of ``(batch_size, *input_shape)``.

    The model is put in eval mode and moved to ``device`` (in place, as ``Module.to`` does), the input is made
    once on that device, and every call runs under ``torch.inference_mode()``. The first forward is timed apart
    as ``metadata["first_forward_ms"]`` (a cold-start cost, like the CLI's ``cold_start``); then
    ``warmup_iterations`` discarded calls and ``num_iterations`` timed ones. Throughput is samples/s.
    """

    def __init__(self, model: torch.nn.Module, input_shape: Sequence[int] = (3, 224, 224), device: str | int = "cpu",
                 *, name: str | None = None, warmup_iterations: int = 10, dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> None:
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.device = resolve_device(device)
        self.name = name or type(model).__name__
        self.warmup_iterations = warmup_iterations
        self.dtype = dtype
        self.seed = seed

    def run(self, batch_size: int = 32, num_iterations: int = 100) -> BenchmarkResult:
        if batch_size < 1 or num_iterations < 1:
            raise ValueError("need batch_size >= 1 and num_iterations >= 1")
        generator = torch.Generator().manual_seed(self.seed)
        x = torch.randn((batch_size, *self.input_shape), generator=generator).to(self.device, self.dtype)
        model = self.model.to(self.device).eval()
        with torch.inference_mode():
            _, first_ms = time_once(lambda: model(x), self.device)
            m = measure(lambda: model(x), device=self.device, warmup=self.warmup_iterations, iters=num_iterations)
        params = sum(p.numel() for p in model.parameters())
        return result_from_measurement(
            self.name, m, items=len(m.samples_ms) * batch_size, batch_size=batch_size, unit="samples/s",
            device=self.device,
            metadata={"kind": "model", "model": type(model).__name__, "input_shape": [batch_size, *self.input_shape],
                      "dtype": str(self.dtype).removeprefix("torch."), "params": params,
                      "first_forward_ms": first_ms})


# --- data loaders -------------------------------------------------------------------------------------------------

def batch_length(batch: Any) -> int | None:
    """Number of samples in a collated batch: the first dimension of its first tensor (tuples, lists, dicts)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for part in batch:
            n = batch_length(part)
            if n is not None:
                return n
        return len(batch) or None
    return None


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [_to_device(v, device) for v in batch]
    return batch


class _BatchPuller:
    """The timed call of a loader benchmark: the next batch (a fresh epoch when one ends), its size recorded."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device, nominal: int) -> None:
        self.loader, self.device, self.nominal = loader, device, nominal
        self.iterator: Iterator[Any] = iter(loader)
        self.sizes: list[int] = []

    def __call__(self) -> Any:
        try:
            batch = next(self.iterator)
        except StopIteration:  # epoch boundary: included in this sample, as it is in training
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        self.sizes.append(batch_length(batch) or self.nominal)
        return _to_device(batch, self.device) if self.device.type != "cpu" else batch

    def reset(self) -> None:
        self.sizes.clear()


class DataLoaderBenchmark:
    """Samples/s of iterating a ``torch.utils.data.DataLoader`` built from ``dataset`` (or given directly).

    Each timed sample is one ``next(iterator)``. The first batch — which starts the worker processes and fills
    their prefetch queue — is timed apart as ``metadata["first_batch_ms"]`` (cold start, not in the samples).
    With ``num_workers > 0`` the loader uses ``persistent_workers=True`` unless told otherwise, so an epoch
    boundary inside the timed loop costs a new iterator but not new worker processes. Throughput is the number of
    samples actually delivered (a short last batch counts its real size) over the timed seconds. With a CUDA
    ``device`` each batch is also copied to it (set ``pin_memory=True`` for async copies).
    """

    def __init__(self, dataset: Any, batch_size: int = 32, num_workers: int = 0, *, name: str | None = None,
                 device: str | int = "cpu", warmup_batches: int = 2, shuffle: bool = False,
                 **loader_kwargs: Any) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = resolve_device(device)
        self.warmup_batches = warmup_batches
        self.shuffle = shuffle
        self.loader_kwargs = loader_kwargs
        default = type(dataset.dataset).__name__ if isinstance(dataset, torch.utils.data.DataLoader) else type(dataset).__name__
        self.name = name or f"{default}_w{num_workers}"

    def _loader(self) -> torch.utils.data.DataLoader:
        if isinstance(self.dataset, torch.utils.data.DataLoader):
            return self.dataset
        kwargs = dict(self.loader_kwargs)
        if self.num_workers > 0:
            kwargs.setdefault("persistent_workers", True)
        return torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                                           shuffle=self.shuffle, **kwargs)

    def run(self, num_batches: int = 100) -> BenchmarkResult:
        if num_batches < 1:
            raise ValueError("need num_batches >= 1")
        loader = self._loader()
        if _safe_len(loader) == 0:
            raise ValueError(f"{self.name}: the DataLoader yields no batches (empty dataset, or drop_last with "
                             f"fewer than batch_size items)")
        puller = _BatchPuller(loader, self.device, self.batch_size)
        try:
            _, first_ms = time_once(puller, self.device)
            m = measure(puller, device=self.device, warmup=self.warmup_batches, iters=num_batches,
                        after_warmup=puller.reset, pipelined_iters=0)  # back to back would only pull more batches
            items = sum(puller.sizes[:len(m.samples_ms)])
        finally:
            del puller  # shut the workers down now, not at some later garbage collection
        return result_from_measurement(
            self.name, m, items=items, batch_size=loader.batch_size or self.batch_size, unit="samples/s",
            device=self.device,
            metadata={"kind": "dataloader", "dataset": type(loader.dataset).__name__,
                      "dataset_size": _safe_len(loader.dataset), "num_workers": loader.num_workers,
                      "persistent_workers": bool(getattr(loader, "persistent_workers", False)),
                      "pin_memory": bool(loader.pin_memory), "first_batch_ms": first_ms})


def _safe_len(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


# --- suites -------------------------------------------------------------------------------------------------------

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
        return {"schema_version": SCHEMA_VERSION, "kind": SUITE_KIND, "name": self.name,
                "created": self.created or utc_now(), "env": collect_env(),
                "results": [r.to_dict() for r in self.results]}

    def save_results(self, filename: str | os.PathLike | None = None) -> Path:
        """Write the suite file atomically to ``output_dir / filename`` (default ``<name>.json``); returns its path."""
        path = self.output_dir / (filename or f"{self.name}.json")
        return write_json_atomic(path, self.to_dict())

    def compare_with(self, baseline_file: str | os.PathLike, thresholds: dict[str, float] | None = None,
                     default_threshold: float = 5.0) -> Any:
        """Compare these results (current) with a baseline file by ``medbench.analysis.compare`` — the same verdicts as
        ``python -m medbench.compare``. A relative path not found from the working directory is looked up in
        ``output_dir``. Returns its ``ComparisonReport`` (``.has_regressions``, ``.regressions``, ``.render()``)."""
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
    """Read a suite file; raises a one-line ``ResultError`` when it is missing, unreadable or not a suite."""
    data = read_json(path, "suite")
    if not isinstance(data, dict) or data.get("kind") != SUITE_KIND or not isinstance(data.get("results"), list):
        raise ResultError(f"{path} is not a medbench suite file (kind != {SUITE_KIND!r})")
    return data
