"""The Python API on small real workloads: a tiny model, an in-memory dataset, plain callables."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from medbench import BenchmarkResult, BenchmarkSuite, DataLoaderBenchmark, ModelBenchmark, PerformanceBenchmark
from medbench.api.benchmark_suite import SUITE_KIND, load_suite
from medbench.api.benchmarks import batch_length
from medbench.errors import ResultError

LATENCY_KEYS = {"mean_ms", "median_ms", "p50_ms", "p50_ci95_ms", "p95_ms", "p99_ms", "std_ms", "min_ms", "max_ms"}


class RangeDataset(torch.utils.data.Dataset):
    """Module level, so DataLoader workers can pickle it under fork and spawn alike."""

    def __init__(self, n: int = 20, shape: tuple[int, ...] = (3, 8, 8)) -> None:
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full(self.shape, float(i)), i


class ModeRecorder(nn.Module):
    """Records whether each forward ran in inference mode and eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_inference_mode_enabled(), self.training))
        return self.conv(x)


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def assert_consistent(r: BenchmarkResult, items: int) -> None:
    """duration = sum of samples; throughput = items / duration; statistics from the same samples."""
    assert r.ok and r.status == "ok" and r.error is None
    assert r.duration == pytest.approx(sum(r.samples_ms) / 1e3, rel=1e-12)
    assert r.throughput.items_per_s == pytest.approx(items / r.duration, rel=1e-9)
    assert r.metadata["items"] == items
    assert r.metadata["iterations"] == len(r.samples_ms)
    assert set(r.latency.model_dump()) == LATENCY_KEYS
    assert r.latency["min_ms"] == min(r.samples_ms) and r.latency["max_ms"] == max(r.samples_ms)
    assert {"iqr_ms", "iqr_over_median", "warning"} <= set(r.noise.model_dump())


# --- PerformanceBenchmark -----------------------------------------------------------------------------------------

def test_performance_benchmark_spec_example() -> None:
    calls = []

    def work(n: int, *, scale: int = 1) -> int:
        calls.append(n)
        return sum(range(n)) * scale

    r = PerformanceBenchmark("sum", warmup_iterations=10, test_iterations=100, device="cpu").run(work, 1000, scale=2)
    assert len(calls) == 110  # warm-up calls run and are discarded
    assert len(r.samples_ms) == 100 and r.metadata["warmup"] == 10
    assert_consistent(r, items=100)
    assert r.metadata["unit"] == "calls/s" and r.metadata["device"] == "cpu" and r.metadata["batch_size"] == 1
    assert r.metadata["timer"] == "perf_counter"
    assert r.memory.peak_gpu_mem_MB is None and r.memory.reserved_MB is None  # no GPU memory on CPU
    assert r.memory.peak_rss_MB > 0


def test_performance_benchmark_sees_a_sleep() -> None:
    r = PerformanceBenchmark("sleep", warmup_iterations=1, test_iterations=10).run(time.sleep, 0.002)
    assert r.latency["min_ms"] >= 2.0  # a sleep can overrun on a busy machine, never underrun
    assert r.throughput.items_per_s <= 500


def test_items_per_call_scales_throughput() -> None:
    r = PerformanceBenchmark("batch", warmup_iterations=0, test_iterations=20, items_per_call=16,
                             unit="images/s").run(lambda: None)
    assert_consistent(r, items=320)
    assert r.metadata["unit"] == "images/s" and r.metadata["batch_size"] == 16


@pytest.mark.gpu
def test_performance_benchmark_on_cuda_uses_events() -> None:
    x = torch.randn(512, 512, device="cuda")
    r = PerformanceBenchmark("mm", warmup_iterations=3, test_iterations=20, device="cuda").run(torch.mm, x, x)
    assert r.metadata["timer"] == "cuda_event" and r.metadata["device"] == "cuda:0"
    assert r.memory.peak_gpu_mem_MB is not None and r.throughput.pipelined_ms > 0


# --- ModelBenchmark -----------------------------------------------------------------------------------------------

def test_model_benchmark_spec_example(tiny_model: nn.Module) -> None:
    tiny_model.train()
    r = ModelBenchmark(tiny_model, input_shape=(3, 32, 32), device="cpu").run(batch_size=4, num_iterations=20)
    assert len(r.samples_ms) == 20
    assert_consistent(r, items=80)
    md = r.metadata
    assert md["unit"] == "samples/s" and md["batch_size"] == 4 and md["input_shape"] == [4, 3, 32, 32]
    assert md["params"] == sum(p.numel() for p in tiny_model.parameters())
    assert md["first_forward_ms"] > 0 and md["warmup"] == 10
    assert not tiny_model.training  # benchmarked in eval mode


def test_model_benchmark_runs_in_inference_and_eval_mode() -> None:
    model = ModeRecorder()
    ModelBenchmark(model, input_shape=(3, 16, 16), warmup_iterations=2).run(batch_size=2, num_iterations=5)
    assert len(model.seen) == 1 + 2 + 5  # first forward (cold start) + warm-up + timed
    assert all(inference and not training for inference, training in model.seen)


# --- DataLoaderBenchmark ------------------------------------------------------------------------------------------

def test_dataloader_benchmark_spec_example() -> None:
    dataset = torch.utils.data.TensorDataset(torch.randn(200, 3, 16, 16), torch.arange(200))
    r = DataLoaderBenchmark(dataset, batch_size=8, num_workers=0).run(num_batches=10)
    assert len(r.samples_ms) == 10
    assert_consistent(r, items=80)
    assert r.metadata["num_workers"] == 0 and r.metadata["first_batch_ms"] > 0
    assert r.metadata["unit"] == "samples/s"


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_counts_real_batch_sizes_across_epochs(workers: int) -> None:
    # 20 items in batches of 8 → 8, 8, 4 per epoch. First batch (cold start) and 2 warm-up batches are not
    # counted; the 10 timed ones wrap over three more epochs: 8 8 4 | 8 8 4 | 8 8 4 | 8 = 68 samples.
    r = DataLoaderBenchmark(RangeDataset(20), batch_size=8, num_workers=workers).run(num_batches=10)
    assert_consistent(r, items=68)
    assert r.metadata["num_workers"] == workers
    assert r.metadata["persistent_workers"] is (workers > 0)


def test_dataloader_benchmark_accepts_a_dataloader() -> None:
    loader = torch.utils.data.DataLoader(RangeDataset(32), batch_size=4)
    r = DataLoaderBenchmark(loader, name="given", warmup_batches=0).run(num_batches=5)
    assert r.name == "given" and r.metadata["batch_size"] == 4
    assert_consistent(r, items=20)


def test_batch_length() -> None:
    assert batch_length(torch.zeros(5, 3)) == 5
    assert batch_length((torch.zeros(7, 2), torch.zeros(7))) == 7
    assert batch_length({"image": torch.zeros(3, 1), "label": [1, 2, 3]}) == 3
    assert batch_length(["a", "b"]) == 2


# --- BenchmarkResult ----------------------------------------------------------------------------------------------

def test_to_dict_shape_and_json_round_trip(tiny_model: nn.Module) -> None:
    r = ModelBenchmark(tiny_model, input_shape=(3, 16, 16), warmup_iterations=1).run(batch_size=2, num_iterations=5)
    d = r.to_dict()
    assert {"schema_version", "kind", "status", "name", "throughput", "memory", "metadata", "latency", "noise",
            "samples_ms", "telemetry"} <= set(d)
    assert d["kind"] == "api" and d["schema_version"] == 2
    assert {"fps_mean", "fps_p50", "items_per_s"} <= set(d["throughput"]) and "peak_rss_MB" in d["memory"]
    assert {"device", "batch_size", "unit", "warmup", "iterations", "duration_s"} <= set(d["metadata"])
    assert set(d["latency"]) == LATENCY_KEYS and len(d["samples_ms"]) == 5
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back == d
    assert BenchmarkResult.from_dict(back) == r
    assert BenchmarkResult.from_dict(back).to_dict() == d


def test_str_is_readable() -> None:
    r = PerformanceBenchmark("noop", warmup_iterations=1, test_iterations=20).run(lambda: None)
    text = str(r)
    assert text.startswith("noop [cpu]")
    for word in ("duration", "throughput", "calls/s", "p50", "p95", "memory"):
        assert word in text
    assert 3 <= len(text.splitlines()) <= 6


def test_failed_result_is_json_safe() -> None:
    r = BenchmarkResult.failed("broken", ValueError("bad input"))
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["status"] == "failed" and d["error"]["type"] == "ValueError" and d["error"]["message"] == "bad input"
    assert d["throughput"] is None and d["samples_ms"] is None
    assert "FAILED" in str(r)
    assert BenchmarkResult.from_dict(d).status == "failed"


def test_non_finite_numbers_become_null() -> None:
    r = BenchmarkResult(name="x", status="ok", throughput={"items_per_s": math.inf}, metadata={"v": math.nan})
    d = r.to_dict()
    assert d["throughput"]["items_per_s"] is None and d["metadata"]["v"] is None


# --- BenchmarkSuite -----------------------------------------------------------------------------------------------

def _spin(n: int = 2000) -> int:
    return sum(range(n))


def _boom() -> None:
    raise RuntimeError("this benchmark is broken")


def test_suite_runs_all_records_failures_and_saves(tmp_path, tiny_model: nn.Module) -> None:
    suite = BenchmarkSuite("unit", output_dir=tmp_path / "bench", warmup_iterations=2, test_iterations=15)
    suite.add_benchmark("spin", _spin)
    suite.add_benchmark("broken", _boom)
    suite.add_benchmark("model", lambda: ModelBenchmark(tiny_model, input_shape=(3, 16, 16),
                                                        warmup_iterations=1).run(batch_size=2, num_iterations=5))
    suite.add_benchmark("spin_more", _spin, test_iterations=25)
    with pytest.raises(ValueError, match="already"):
        suite.add_benchmark("spin", _spin)

    seen = []
    results = suite.run_all(progress=seen.append)
    assert [r.name for r in results] == ["spin", "broken", "model", "spin_more"] == [r.name for r in seen]
    spin, broken, model, more = results
    assert spin.ok and len(spin.samples_ms) == 15 and spin.metadata["first_call_ms"] > 0
    assert broken.status == "failed" and "broken" in broken.error["message"]
    assert model.ok and model.metadata["kind"] == "model"  # a returned BenchmarkResult is used (renamed)
    assert len(more.samples_ms) == 25

    path = suite.save_results("run.json")
    assert path == tmp_path / "bench" / "run.json"
    data = load_suite(path)
    assert data["schema_version"] == 2 and data["kind"] == SUITE_KIND and data["name"] == "unit"
    assert data["created"].endswith("+00:00")
    assert {"python", "torch", "cpu", "git_commit"} <= set(data["env"])
    assert [r["name"] for r in data["results"]] == ["spin", "broken", "model", "spin_more"]
    assert [BenchmarkResult.from_dict(r) for r in data["results"]] == results
    assert "spin" in str(suite) and "FAILED" in str(suite)


def test_save_results_default_name_runs_the_suite(tmp_path) -> None:
    suite = BenchmarkSuite("auto", output_dir=tmp_path, test_iterations=5, warmup_iterations=0)
    suite.add_benchmark("noop", lambda: None)
    path = suite.save_results()
    assert path.name == "auto.json" and len(load_suite(path)["results"]) == 1


def test_load_suite_rejects_other_files(tmp_path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"schema_version": 1, "status": "ok"}))
    (tmp_path / "bad.json").write_text("{trunc")
    with pytest.raises(ResultError, match="not a medbench suite"):
        load_suite(tmp_path / "x.json")
    with pytest.raises(ResultError, match="unreadable"):
        load_suite(tmp_path / "bad.json")
    with pytest.raises(ResultError, match="not found"):
        load_suite(tmp_path / "none.json")


def test_import_medbench_does_not_import_torch() -> None:
    code = ("import sys, medbench; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
            "from medbench import BenchmarkSuite, BenchmarkResult; assert 'torch' in sys.modules; "
            "assert sorted(medbench.__all__) == ['BenchmarkResult', 'BenchmarkSuite', 'DataLoaderBenchmark', "
            "'ModelBenchmark', 'PerformanceBenchmark']\n"
            "try:\n    medbench.NoSuchThing\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# --- compare_with: the same comparison as python -m medbench.compare ----------------------------------------------

def _sleep_suite(tmp_path, delay_s: float, iters: int = 60) -> BenchmarkSuite:
    suite = BenchmarkSuite("gate", output_dir=tmp_path, warmup_iterations=3, test_iterations=iters)
    suite.add_benchmark("sleepy", lambda: time.sleep(delay_s) if delay_s else None)
    return suite


def test_suite_compared_with_itself_has_no_regression(tmp_path) -> None:
    from medbench.cli.compare import render

    suite = _sleep_suite(tmp_path, 0.001)
    suite.run_all()
    first = suite.save_results("a.json")
    second = suite.save_results("b.json")
    report = suite.compare_with("a.json")  # looked up in output_dir
    assert not report.has_regressions, render(report)
    assert not suite.compare_with(second).has_regressions
    assert first.exists()


def test_slowed_benchmark_is_caught_as_regression(tmp_path) -> None:
    from medbench.cli.compare import render

    baseline = _sleep_suite(tmp_path, 0.0)
    baseline.run_all()
    path = baseline.save_results("baseline.json")
    slowed = _sleep_suite(tmp_path, 0.005)  # 5 ms added to every call
    slowed.run_all()
    report = slowed.compare_with(path)
    assert report.has_regressions, render(report)
    assert report.regressions
    assert isinstance(render(report), str) and isinstance(report.to_dict(), dict)
