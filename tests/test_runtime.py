"""Runtime options (precision, memory format, cuDNN/TF32, threads, compile, CUDA graphs) and telemetry, on CPU.

What cannot run on a CPU (fp16, CUDA graphs) must fail in one line with a failed record; NVML telemetry is
checked against a fake NVML here and against the real one in test_gpu.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import QUICK, only_result
from medbench.run import telemetry
from medbench.errors import ConfigError, DeviceError
from medbench.run.runner import _telemetry_warnings, run_job
from medbench.run.runtime import check_runtime, compile_mode, runtime_settings
from medbench.config.schema import RuntimeConfig, to_job

def cli_record(medbench_cli, tmp_path, *overrides: str) -> dict:
    proc = medbench_cli(*QUICK, "device=cpu", *overrides)
    _, rec = only_result(tmp_path / "outputs")
    return {"proc": proc, **rec}


# ---------------------------------------------------------------- CLI runs, read field by field


def test_bf16_on_cpu_casts_model_and_input(medbench_cli, tmp_path):
    rec = cli_record(medbench_cli, tmp_path, "runtime.precision=bf16")
    assert rec["proc"].returncode == 0, rec["proc"].stderr
    meta = rec["metadata"]
    assert rec["status"] == "ok" and meta["precision"] == "bf16" and meta["runtime"]["precision"] == "bf16"
    assert meta["input_dtype"] == "bfloat16" and meta["model_dtype"] == "bfloat16"
    assert len(rec["samples_ms"]) == 5


def test_channels_last_on_cpu_is_recorded(medbench_cli, tmp_path):
    rec = cli_record(medbench_cli, tmp_path, "runtime.channels_last=true")
    assert rec["proc"].returncode == 0, rec["proc"].stderr
    assert rec["status"] == "ok" and rec["metadata"]["runtime"]["channels_last"] is True
    assert rec["metadata"]["input_dtype"] == "float32"


def test_cudnn_benchmark_and_tf32_are_recorded(medbench_cli, tmp_path):
    rec = cli_record(medbench_cli, tmp_path, "runtime.cudnn_benchmark=true", "runtime.tf32=true")
    assert rec["proc"].returncode == 0, rec["proc"].stderr
    runtime = rec["metadata"]["runtime"]
    assert rec["status"] == "ok" and runtime["cudnn_benchmark"] is True and runtime["tf32"] is True
    assert runtime["compile"] is None and runtime["cuda_graphs"] is False


@pytest.mark.parametrize(("override", "message"), [
    ("runtime.precision=fp16", "precision=fp16 is not supported on cpu"),
    ("runtime.cuda_graphs=true", "runtime.cuda_graphs needs a CUDA device"),
    ("runtime.compile=fastest", "runtime.compile must be null/off or one of"),
])
def test_what_cpu_cannot_do_fails_in_one_line(medbench_cli, tmp_path, override, message):
    rec = cli_record(medbench_cli, tmp_path, override)
    proc = rec["proc"]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]) == 1, proc.stderr
    assert rec["status"] == "failed" and message in rec["error"]["message"]
    assert rec["error"]["type"] in ("device", "config") and rec["samples_ms"] is None


def test_cpu_record_has_telemetry_block(medbench_cli, tmp_path):
    rec = cli_record(medbench_cli, tmp_path)
    assert rec["status"] == "ok", rec["error"]
    tel = rec["telemetry"]
    assert tel["before"] is None and tel["after"] is None and tel["device"] is None
    assert tel["throttled"] is None and tel["throttle_reasons"] is None
    assert tel["loadavg_1m_before"] >= 0 and tel["loadavg_1m_after"] >= 0
    assert isinstance(tel["loaded"], bool) and tel["other_cpu_cores"] >= 0 and tel["cpu_cores"] >= 1
    assert rec["memory"]["nvml_used_MB"] is None and rec["memory"]["peak_gpu_mem_MB"] is None
    cold = rec["cold_start"]
    assert cold["compile_ms"] is None and cold["cuda_graph_capture_ms"] is None and cold["first_forward_ms"] > 0
    thr = rec["throughput"]
    assert thr["fps_pipelined"] is None and thr["pipelined_ms"] is None  # CPU: back to back = per iteration
    assert rec["env"]["gpu_uuid"] is None


# ---------------------------------------------------------------- in-process runs


def test_threads_are_applied_recorded_and_restored(compose_cfg, tmp_path):
    before = torch.get_num_threads()
    job = to_job(compose_cfg(*QUICK, "device=cpu", "runtime.threads=1"))
    rec = run_job(job, list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    assert rec["metadata"]["runtime"]["threads"] == 1 and rec["telemetry"]["threads"] == 1
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_compile_time_is_reported_apart_from_the_samples(compose_cfg, tiny_classifier_yaml, tmp_path):
    job = to_job(compose_cfg("device=cpu", "imgsz=32", "iters.warmup=2", "iters.iters=5",
                             f"model.cfg={tiny_classifier_yaml}",
                             "model.task=classify", "model.name=tiny", "runtime.compile=default"))
    rec = run_job(job, list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    assert rec["metadata"]["runtime"]["compile"] == "default"
    cold, samples = rec["cold_start"], rec["samples_ms"]
    assert len(samples) == 5 and cold["compile_ms"] > 0 and cold["first_forward_ms"] > 0
    assert cold["compile_ms"] > 10 * max(samples)  # the compilation is not in the samples


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")
def test_a_failing_compile_is_one_line(compose_cfg, tiny_classifier_yaml, tmp_path, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    monkeypatch.setattr(inductor_config, "force_disable_caches", True)
    job = to_job(compose_cfg("device=cpu", "imgsz=32", "iters=quick", f"model.cfg={tiny_classifier_yaml}",
                             "model.task=classify",
                             "model.name=tiny", "runtime.compile=default"))
    rec = run_job(job, list_dir=tmp_path)
    assert rec["status"] == "failed" and rec["error"]["type"] == "device"
    assert rec["error"]["message"].startswith("torch.compile(mode=default) failed on cpu")
    assert "\n" not in rec["error"]["message"] and "traceback" not in rec["error"]


# ---------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(("value", "mode"), [
    (None, None), (False, None), ("off", None), ("False", None), ("null", None), ("", None),
    (True, "default"), ("true", "default"), ("default", "default"), ("reduce-overhead", "reduce-overhead"),
    ("Max-Autotune", "max-autotune"),
])
def test_compile_mode(value, mode):
    assert compile_mode(value) == mode


def test_compile_mode_rejects_unknown():
    with pytest.raises(ConfigError, match="runtime.compile must be"):
        compile_mode("turbo")


def test_cuda_graph_combinations_are_refused():
    cuda = torch.device("cuda", 0)  # check_runtime only looks at the device type: no GPU needed
    assert check_runtime(RuntimeConfig(cuda_graphs=True), cuda, "forward") is None
    with pytest.raises(ConfigError, match="reduce-overhead"):
        check_runtime(RuntimeConfig(cuda_graphs=True, compile="default"), cuda, "forward")
    with pytest.raises(ConfigError, match="scope=forward"):
        check_runtime(RuntimeConfig(cuda_graphs=True), cuda, "end_to_end")
    with pytest.raises(DeviceError, match="needs a CUDA device"):
        check_runtime(RuntimeConfig(cuda_graphs=True), torch.device("cpu"), "forward")
    assert check_runtime(RuntimeConfig(compile="reduce-overhead"), torch.device("cpu"), "forward") == "reduce-overhead"


def test_runtime_settings_are_restored_after_an_error():
    saved = (torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    with pytest.raises(RuntimeError), runtime_settings(RuntimeConfig(threads=1, cudnn_benchmark=True, tf32=True),
                                                       torch.device("cpu")) as applied:
        assert applied["threads"] == 1 and torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        raise RuntimeError("boom")
    assert (torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == saved


def test_throttle_reasons_decode_and_capping():
    assert telemetry.decode_throttle_reasons(0) == []
    assert telemetry.decode_throttle_reasons(0x1 | 0x4) == ["GpuIdle", "SwPowerCap"]
    assert telemetry.decode_throttle_reasons(0x1000) == ["0x1000"]
    assert telemetry.capping(["GpuIdle", "ApplicationsClocksSetting", "SyncBoost"]) == []
    assert telemetry.capping(["GpuIdle", "HwThermalSlowdown", "SwPowerCap"]) == ["HwThermalSlowdown", "SwPowerCap"]


def test_loaded_rule():
    assert not telemetry.loaded_rule(0.3, cores=2, threads=2)  # a little background noise
    assert telemetry.loaded_rule(0.8, cores=2, threads=2)  # another process took most of a core
    assert not telemetry.loaded_rule(0.8, cores=2, threads=1)  # ... but a core was left free for it
    assert telemetry.loaded_rule(1.5, cores=2, threads=1)


class FakeNVML:
    """Just enough of pynvml for gpu_snapshot and the probe."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL = 0, 1

    def __init__(self) -> None:
        self.mask, self.violation = 0x1, {0: 1_000_000, 1: 0}

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self.mask

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {1: 1980, 2: 2619}[kind]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, kind):
        return 41

    def nvmlDeviceGetPowerUsage(self, h):
        return 123_456

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=97)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=2048 * 1024 * 1024, total=80 * 1024 ** 3)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        import os

        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=1024 * 1024 * 1024)]

    def nvmlDeviceGetViolationStatus(self, h, policy):
        return SimpleNamespace(violationTime=self.violation[policy])

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-1234"

    def nvmlDeviceGetIndex(self, h):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")


@pytest.fixture
def fake_nvml(monkeypatch):
    nvml = FakeNVML()
    monkeypatch.setattr(telemetry, "_nvml", lambda: nvml)
    return nvml


def test_gpu_snapshot_reads_and_converts(fake_nvml):
    snap = telemetry.gpu_snapshot("handle")
    assert (snap["sm_clock_MHz"], snap["mem_clock_MHz"], snap["temperature_C"]) == (1980, 2619, 41)
    assert snap["power_W"] == pytest.approx(123.456) and snap["power_limit_W"] == 700
    assert snap["throttle_reasons"] == ["GpuIdle"] and snap["memory_used_MB"] == 2048
    assert snap["process_used_MB"] == 1024 and snap["violation_ns"] == {"power": 1_000_000, "thermal": 0}
    assert telemetry.gpu_identity("handle") == {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1234",
                                                "nvml_index": None}  # unsupported query → None


def _probe(fake_nvml, mask_after: int, power_violation_after: int) -> dict:
    probe = telemetry.Probe(torch.device("cpu"))
    probe.handle = "handle"
    probe.start()
    fake_nvml.mask, fake_nvml.violation = mask_after, {0: power_violation_after, 1: 0}
    return probe.finish()


def test_probe_flags_power_capping_not_idle(fake_nvml):
    calm = _probe(fake_nvml, 0x1 | 0x2, 1_000_000)  # idle + app clocks: settings, not capping
    assert calm["throttled"] is False and calm["throttle_reasons"] == []
    assert calm["throttle_time_ms"] == {"power": 0.0, "thermal": 0.0}
    assert calm["before"]["sm_clock_MHz"] == 1980 and calm["after"]["throttle_reasons"] == ["GpuIdle",
                                                                                            "ApplicationsClocksSetting"]
    capped = _probe(fake_nvml, 0x4, 1_000_000)
    assert capped["throttled"] is True and capped["throttle_reasons"] == ["SwPowerCap"]
    counted = _probe(fake_nvml, 0x0, 6_000_000)  # no reason at the instant read, but the counter moved
    assert counted["throttled"] is True and counted["throttle_time_ms"]["power"] == pytest.approx(5.0)


def test_telemetry_warnings():
    assert _telemetry_warnings(telemetry.empty_block()) == []
    warnings = _telemetry_warnings({**telemetry.empty_block(), "throttled": True, "throttle_reasons": ["SwPowerCap"],
                                    "loaded": True, "other_cpu_cores": 1.2, "cpu_cores": 2})
    assert any("SwPowerCap" in w for w in warnings) and any("machine loaded" in w for w in warnings)
