"""GPU fidelity on a real CUDA device: runtime options, CUDA graphs, pipelined throughput, NVML telemetry.

Every test is marked ``gpu`` and skips without CUDA (tests/conftest.py). No timing thresholds: the
tests check what is recorded and that it is consistent, not how fast the GPU is.
"""

from __future__ import annotations

import pytest
import torch

from conftest import QUICK, only_result
from medbench.run import nvml, tf32
from medbench.run.runner import run_job
from medbench.run.runtime import CudaGraphStep
from medbench.config.schema import to_job

pytestmark = pytest.mark.gpu

def gpu_run(compose_cfg, tmp_path, *overrides: str) -> dict:
    rec = run_job(to_job(compose_cfg(*QUICK, "device=0", *overrides)), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    return rec


def needs_nvml() -> None:
    if nvml._nvml() is None:
        pytest.skip("NVML (nvidia-ml-py) is not usable on this machine")


def test_fp16_run_on_cuda(medbench_cli, tmp_path):
    proc = medbench_cli(*QUICK, "device=0", "runtime.precision=fp16", "batch=2")
    assert proc.returncode == 0, proc.stderr
    _, rec = only_result(tmp_path / "outputs")
    meta, thr = rec["metadata"], rec["throughput"]
    assert rec["status"] == "ok" and meta["device"] == "cuda:0" and meta["timer"] == "cuda_event"
    assert meta["input_dtype"] == "float16" and meta["model_dtype"] == "float16"
    assert len(rec["samples_ms"]) == 5 and thr["fps_pipelined"] > 0 and thr["pipelined_ms"] > 0
    assert rec["memory"]["peak_gpu_mem_MB"] > 0 and rec["env"]["gpu_uuid"].startswith(("GPU-", "MIG-"))


def test_bf16_channels_last_cudnn_tf32_on_cuda(compose_cfg, tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    before = tf32.snapshot()
    rec = gpu_run(compose_cfg, tmp_path, "runtime.precision=bf16", "runtime.channels_last=true",
                  "runtime.cudnn_benchmark=true", "runtime.tf32=true")
    runtime = rec["metadata"]["runtime"]
    assert rec["metadata"]["input_dtype"] == "bfloat16" and runtime["bf16_emulated"] is (
        torch.cuda.get_device_capability(0)[0] < 8)
    assert runtime["channels_last"] and runtime["cudnn_benchmark"] and runtime["tf32_conv"] and runtime["tf32_matmul"]
    assert torch.backends.cudnn.benchmark is False and tf32.snapshot() == before  # restored


def test_fp32_default_keeps_pytorch_tf32_and_a_matmul_runs_with_tf32_on(compose_cfg, tmp_path):
    """cuBLAS checks that the legacy and new matmul settings agree: medbench's matmul setter writes both."""
    rec = gpu_run(compose_cfg, tmp_path, "runtime.tf32_matmul=true")
    assert rec["metadata"]["runtime"]["tf32_matmul"] is True
    x = torch.randn(64, 64, device="cuda")
    with tf32.apply(tf32_matmul=True):
        torch.testing.assert_close(x @ x, (x.double() @ x.double()).float(), rtol=5e-2, atol=5e-2)
    default = gpu_run(compose_cfg, tmp_path)["metadata"]["runtime"]
    assert (default["tf32_conv"], default["tf32_matmul"]) == (tf32.effective()["tf32_conv"],
                                                              tf32.effective()["tf32_matmul"])


def test_compiled_detect_model_on_gpu_has_no_breaks(compose_cfg, tmp_path):
    rec = gpu_run(compose_cfg, tmp_path, "runtime.compile=default")
    cold = rec["cold_start"]
    assert cold["graph_breaks"] == 0 and cold["recompiles"] == 0 and cold["compiled_graphs"] == 1
    assert cold["first_forward_ms"] < cold["compile_ms"]  # no recompilation leaked into the first forward


def test_timed_device_is_the_one_recorded(compose_cfg, tmp_path):
    last = torch.cuda.device_count() - 1
    rec = run_job(to_job(compose_cfg(*QUICK, f"device=cuda:{last}")), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    assert rec["metadata"]["device"] == f"cuda:{last}"
    assert rec["env"]["gpu_name"] == torch.cuda.get_device_name(last)
    assert rec["env"]["gpu_uuid"] == nvml.torch_uuid(last)
    assert rec["provenance"]["gpu_lock"]["key"].endswith(nvml.bare_uuid(rec["env"]["gpu_uuid"]))


def test_default_memory_format_on_gpu_is_contiguous_like_predict(compose_cfg, tmp_path):
    runtime = gpu_run(compose_cfg, tmp_path)["metadata"]["runtime"]
    assert runtime["channels_last"] is False and runtime["channels_last_requested"] is None


def test_end_to_end_has_no_pipelined_pass(compose_cfg, tmp_path):
    rec = gpu_run(compose_cfg, tmp_path, "scope=end_to_end", "input=assets")
    assert rec["throughput"]["pipelined_ms"] is None and rec["throughput"]["fps_pipelined"] is None
    assert all(len(v) == len(rec["samples_ms"]) for v in [rec["samples_ms"]])


def test_cuda_graphs_run_records_samples_and_pipelined_figure(compose_cfg, tmp_path):
    rec = gpu_run(compose_cfg, tmp_path, "runtime.cuda_graphs=true", "batch=2")
    cold, thr = rec["cold_start"], rec["throughput"]
    assert rec["metadata"]["runtime"]["cuda_graphs"] is True
    assert len(rec["samples_ms"]) == 5 and all(s > 0 for s in rec["samples_ms"])
    assert cold["cuda_graph_capture_ms"] > 0 and cold["first_forward_ms"] > 0 and cold["compile_ms"] is None
    assert thr["pipelined_ms"] > 0 and thr["fps_pipelined"] > 0


def test_cuda_graphs_cycle_several_input_batches(compose_cfg, tmp_path):
    rec = gpu_run(compose_cfg, tmp_path, "runtime.cuda_graphs=true", "input=assets", "batch=1")
    assert rec["metadata"]["benchmark_size"] >= 2 and len(rec["samples_ms"]) == 5


def test_cuda_graph_replay_matches_eager():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).cuda().eval()
    batches = [torch.rand(2, 3, 32, 32, device="cuda") for _ in range(3)]
    with torch.inference_mode():
        step = CudaGraphStep(model, batches, torch.device("cuda:0"))
        for i in range(6):  # cycles through the batches: each replay sees the next one
            out = step().clone()
            torch.testing.assert_close(out, model(batches[i % 3]), rtol=1e-4, atol=1e-4)


def test_cuda_graphs_with_compile_is_refused(compose_cfg, tmp_path):
    rec = run_job(to_job(compose_cfg(*QUICK, "device=0", "runtime.cuda_graphs=true", "runtime.compile=default")),
                  list_dir=tmp_path)
    assert rec["status"] == "failed" and "reduce-overhead" in rec["error"]["message"]


def test_telemetry_before_and_after_on_gpu(compose_cfg, tmp_path):
    needs_nvml()
    rec = gpu_run(compose_cfg, tmp_path)
    tel = rec["telemetry"]
    for snap in (tel["before"], tel["after"]):
        assert snap["sm_clock_MHz"] > 0 and snap["mem_clock_MHz"] > 0 and snap["temperature_C"] is not None
        assert isinstance(snap["throttle_reasons"], list)
    assert isinstance(tel["throttled"], bool) and isinstance(tel["throttle_reasons"], list)
    # device 0: torch and NVML agree on which GPU it is
    assert nvml.bare_uuid(tel["device"]["uuid"]) == nvml.bare_uuid(rec["env"]["gpu_uuid"])
    assert tel["throttle_basis"] in ("clock_event_counters", "reason_snapshots") and tel["loop_s"] > 0
    assert tel["throttle_share"] is None or 0 <= tel["throttle_share"] <= 1
    assert tel["energy_J"] is None or tel["energy_per_image_J"] == tel["energy_J"] / len(rec["samples_ms"])
    assert tel["other_gpu_processes"] in (None, 0, 1, 2, 3)  # a shared node may have others: counted, not failed
    assert len(tel["host_samples_ms"]) == len(rec["samples_ms"]) and tel["host_median_ms"] > 0
    assert rec["env"]["driver"] and rec["env"]["cudnn"]


def test_memory_figures_differ_as_documented(compose_cfg, tmp_path):
    needs_nvml()
    mem = gpu_run(compose_cfg, tmp_path, "batch=2")["memory"]
    assert 0 < mem["peak_gpu_mem_MB"] <= mem["peak_reserved_MB"]
    assert mem["allocated_MB"] <= mem["reserved_MB"]
    assert mem["input_MB"] == pytest.approx(2 * 3 * 64 * 64 * 4 / 2**20)  # one preloaded fp32 batch
    assert mem["working_MB"] == pytest.approx(mem["peak_gpu_mem_MB"] - mem["allocated_before_MB"])
    assert mem["allocated_before_MB"] >= mem["input_MB"]  # weights + inputs were allocated before the loop
    again = gpu_run(compose_cfg, tmp_path, "batch=2")["memory"]  # same process: no carry-over from the last job
    assert again["peak_reserved_MB"] == pytest.approx(mem["peak_reserved_MB"], rel=0.25)
    assert mem["nvml_used_MB"] >= mem["reserved_MB"]  # NVML also counts the CUDA context (and other processes)


def test_compile_time_is_not_in_the_samples_on_gpu(compose_cfg, tiny_classifier_yaml, tmp_path):
    rec = gpu_run(compose_cfg, tmp_path, f"model.cfg={tiny_classifier_yaml}", "model.task=classify", "model.name=tiny",
                  "imgsz=32",
                  "runtime.compile=default")
    cold, samples = rec["cold_start"], rec["samples_ms"]
    assert cold["compile_ms"] > 10 * max(samples) and len(samples) == 5
    assert rec["metadata"]["runtime"]["compile"] == "default"
