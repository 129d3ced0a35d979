"""The Python API: benchmark any callable, ``nn.Module`` or ``DataLoader`` from code (results:
``medbench.api.result``; suites of them: ``medbench.api.benchmark_suite``).

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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from medbench.api.result import BenchmarkResult, result_from_measurement
from medbench.config.schema import RuntimeConfig
from medbench.run.devices import resolve_device
from medbench.run.gpu_lock import exclusive_gpu
from medbench.run.runtime import place_batch, place_model, runtime_settings
from medbench.run.telemetry import Probe
from medbench.run.timing import measure, time_once

__all__ = ["BenchmarkResult", "DataLoaderBenchmark", "ModelBenchmark", "PerformanceBenchmark", "batch_length"]


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

    The model and input are placed as the CLI runner places them (``medbench.run.runtime``): the model moved to
    ``device`` in ``dtype`` (in place, as ``Module.to`` does), in eval mode without gradients, ``channels_last``
    when asked, the input made once on that device in the same dtype and memory format; ``runtime`` settings
    (threads, cuDNN benchmark, TF32) apply during the run; the GPU is held exclusively (``gpu_lock``) and telemetry
    (clocks, throttling, machine load) is read around the timed loop, as for a CLI run. Every call runs under
    ``torch.inference_mode()``. The first forward is timed apart as ``metadata["first_forward_ms"]``; then
    ``warmup_iterations`` discarded calls and ``num_iterations`` timed ones. Throughput is samples/s.
    """

    def __init__(self, model: torch.nn.Module, input_shape: Sequence[int] = (3, 224, 224), device: str | int = "cpu",
                 *, name: str | None = None, warmup_iterations: int = 10, dtype: torch.dtype = torch.float32,
                 seed: int = 0, channels_last: bool = False, runtime: RuntimeConfig | None = None) -> None:
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.device = resolve_device(device)
        self.name = name or type(model).__name__
        self.warmup_iterations = warmup_iterations
        self.dtype = dtype
        self.seed = seed
        self.channels_last = channels_last
        self.runtime = runtime or RuntimeConfig(channels_last=channels_last)

    def run(self, batch_size: int = 32, num_iterations: int = 100) -> BenchmarkResult:
        if batch_size < 1 or num_iterations < 1:
            raise ValueError("need batch_size >= 1 and num_iterations >= 1")
        device, channels_last = self.device, self.runtime.channels_last
        generator = torch.Generator().manual_seed(self.seed)
        with runtime_settings(self.runtime, device) as applied:
            model = place_model(self.model, device, self.dtype, channels_last)
            x = place_batch(torch.randn((batch_size, *self.input_shape), generator=generator).to(device, self.dtype),
                            channels_last)
            probe = Probe(device)
            with exclusive_gpu(device), torch.inference_mode():
                _, first_ms = time_once(lambda: model(x), device)
                m = measure(lambda: model(x), device=device, warmup=self.warmup_iterations, iters=num_iterations,
                            after_warmup=probe.start)
                telemetry = probe.finish()
        params = sum(p.numel() for p in model.parameters())
        first = next(model.parameters(), None)
        return result_from_measurement(
            self.name, m, items=len(m.samples_ms) * batch_size, batch_size=batch_size, unit="samples/s",
            device=device, telemetry=telemetry,
            metadata={"kind": "model", "model": type(model).__name__, "input_shape": [batch_size, *self.input_shape],
                      "dtype": str(self.dtype).removeprefix("torch."), "params": params, "first_forward_ms": first_ms,
                      "model_dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
                      "input_dtype": str(x.dtype).removeprefix("torch."), "channels_last": channels_last,
                      "runtime": applied})


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

