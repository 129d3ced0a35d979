"""GPU fidelity on a real CUDA device: runtime options, CUDA graphs, pipelined throughput, NVML telemetry.

Every test is marked ``gpu`` and skips without CUDA (tests/conftest.py). No timing thresholds: the
tests check what is recorded and that it is consistent, not how fast the GPU is.
"""

from __future__ import annotations

import pytest
import torch

from conftest import QUICK, only_result
from medbench.run import telemetry
from medbench.run.runner import run_job
from medbench.run.runtime import CudaGraphStep
from medbench.config.schema import to_job

pytestmark = pytest.mark.gpu

def gpu_run(compose_cfg, tmp_path, *overrides: str) -> dict:
    rec = run_job(to_job(compose_cfg(*QUICK, "device=0", *overrides)), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    return rec


def needs_nvml() -> None:
    if telemetry._nvml() is None:
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
    rec = gpu_run(compose_cfg, tmp_path, "runtime.precision=bf16", "runtime.channels_last=true",
                  "runtime.cudnn_benchmark=true", "runtime.tf32=true")
    runtime = rec["metadata"]["runtime"]
    assert rec["metadata"]["input_dtype"] == "bfloat16"
    assert runtime["channels_last"] and runtime["cudnn_benchmark"] and runtime["tf32"]
    assert torch.backends.cudnn.benchmark is False and torch.backends.cuda.matmul.allow_tf32 is False  # restored


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
    assert telemetry._bare_uuid(tel["device"]["uuid"]) == telemetry._bare_uuid(rec["env"]["gpu_uuid"])
    assert rec["env"]["driver"] and rec["env"]["cudnn"]


def test_memory_figures_differ_as_documented(compose_cfg, tmp_path):
    needs_nvml()
    mem = gpu_run(compose_cfg, tmp_path)["memory"]
    assert 0 < mem["peak_gpu_mem_MB"] <= mem["peak_reserved_MB"]
    assert mem["allocated_MB"] <= mem["reserved_MB"]
    assert mem["nvml_used_MB"] >= mem["reserved_MB"]  # NVML also counts the CUDA context (and other processes)


def test_compile_time_is_not_in_the_samples_on_gpu(compose_cfg, tiny_classifier_yaml, tmp_path):
    rec = gpu_run(compose_cfg, tmp_path, f"model.cfg={tiny_classifier_yaml}", "model.task=classify", "model.name=tiny",
                  "imgsz=32",
                  "runtime.compile=default")
    cold, samples = rec["cold_start"], rec["samples_ms"]
    assert cold["compile_ms"] > 10 * max(samples) and len(samples) == 5
    assert rec["metadata"]["runtime"]["compile"] == "default"
