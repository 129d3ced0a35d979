"""Runtime options (precision, memory format, cuDNN/TF32, threads, compile, CUDA graphs) and telemetry, on CPU.

What cannot run on a CPU (fp16, CUDA graphs) must fail in one line with a failed record; NVML telemetry is
checked against a fake NVML here and against the real one in test_gpu.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import QUICK, only_result
from medbench.run import nvml, telemetry, tf32
from medbench.errors import ConfigError, DeviceError
from medbench.run.measured import telemetry_warnings as _telemetry_warnings
from medbench.run.runner import run_job
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
    assert tel["energy_J"] is None and tel["energy_per_image_J"] is None and tel["host_samples_ms"] is None
    assert tel["throttle_share"] is None and tel["other_gpu_processes"] is None and tel["loop_s"] > 0
    mem = rec["memory"]
    assert mem["nvml_used_MB"] is None and mem["peak_gpu_mem_MB"] is None and mem["working_MB"] is None
    assert mem["input_MB"] == pytest.approx(3 * 64 * 64 * 4 / 2**20)  # one synthetic fp32 batch, preloaded
    assert rec["provenance"]["gpu_lock"] is None and rec["env"]["gpu_name"] is None
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
def test_a_failing_compile_is_one_line(compose_cfg, tiny_classifier_yaml, tmp_path):
    import functools

    import torch._inductor.config as inductor_config
    import torch._inductor.cpp_builder as cpp_builder

    job = to_job(compose_cfg("device=cpu", "imgsz=32", "iters=quick", f"model.cfg={tiny_classifier_yaml}",
                             "model.task=classify",
                             "model.name=tiny", "runtime.compile=default"))
    # inductor's own patch(): monkeypatch's undo deletes config attributes it read through __getattr__
    try:
        with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-compiler")),
                                    "force_disable_caches": True}):
            rec = run_job(job, list_dir=tmp_path)
    finally:  # inductor caches what it found about the (missing) compiler: forget it for later compiles
        for value in list(vars(cpp_builder).values()):
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()
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
    saved = (torch.get_num_threads(), torch.backends.cudnn.benchmark, tf32.snapshot())
    with pytest.raises(RuntimeError), runtime_settings(RuntimeConfig(threads=1, cudnn_benchmark=True, tf32=True),
                                                       torch.device("cpu")) as applied:
        assert applied["threads"] == 1 and torch.backends.cudnn.benchmark
        assert applied["tf32_conv"] is True and applied["tf32_matmul"] is True
        assert tf32.effective() == {"tf32_conv": True, "tf32_matmul": True, "tf32_api": applied["tf32_api"]}
        raise RuntimeError("boom")
    assert (torch.get_num_threads(), torch.backends.cudnn.benchmark, tf32.snapshot()) == saved


# ---------------------------------------------------------------- TF32


@pytest.fixture
def tf32_state():
    """Put back whatever a test did to the process's TF32 settings (through either API)."""
    saved = tf32.snapshot()
    yield saved
    tf32._restore(saved)
    torch.set_float32_matmul_precision(saved["matmul_legacy"] or "highest")  # torch's default legacy value
    tf32._restore(saved)
    assert tf32.snapshot() == saved


@pytest.mark.parametrize(("values", "conv", "matmul"), [
    ({"conv": "tf32", "cudnn": "none", "generic": "none", "matmul": "none"}, True, False),  # torch's defaults
    ({"conv": "none", "cudnn": "tf32", "generic": "ieee", "matmul": "none"}, True, True),  # inherits cuda "all"
    ({"conv": "ieee", "cudnn": "tf32", "generic": "tf32", "matmul": "none"}, False, True),  # the op wins
    ({"conv": "none", "cudnn": "none", "generic": "tf32", "matmul": "ieee"}, True, False),  # generic last
    ({"conv": "none", "cudnn": "none", "generic": "bf16", "matmul": "none"}, False, False),  # cuda has no bf16
])
def test_effective_tf32_resolves_like_aten(values, conv, matmul):
    assert tf32.resolve(values, tf32.CONV_CHAIN) is conv and tf32.resolve(values, tf32.MATMUL_CHAIN) is matmul
    assert tf32.effective({"api": "fp32_precision", **values})["tf32_conv"] is conv
    assert tf32.effective({"api": "legacy", "conv": conv, "matmul": matmul}) == {
        "tf32_conv": conv, "tf32_matmul": matmul, "tf32_api": "legacy"}


def test_tf32_requests_specific_keys_win_over_the_shorthand():
    assert tf32.requested(None, None, None) == (None, None)
    assert tf32.requested(True, None, None) == (True, True)
    assert tf32.requested(True, False, None) == (False, True)
    assert tf32.requested(None, None, False) == (None, False)


def test_default_fp32_leaves_pytorch_tf32_alone_and_records_it(compose_cfg, tmp_path, tf32_state):
    job = to_job(compose_cfg(*QUICK, "device=cpu"))
    assert (job.runtime.tf32, job.runtime.tf32_conv, job.runtime.tf32_matmul) == (None, None, None)
    expected = tf32.effective()  # torch's own defaults here: conv on, matmul off
    rec = run_job(job, list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    runtime = rec["metadata"]["runtime"]
    assert (runtime["tf32_conv"], runtime["tf32_matmul"]) == (expected["tf32_conv"], expected["tf32_matmul"])
    assert runtime["tf32_requested"] == {"tf32": None, "tf32_conv": None, "tf32_matmul": None}
    assert runtime["tf32_api"] == ("fp32_precision" if tf32.has_fp32_precision_api() else "legacy")
    assert tf32.snapshot() == tf32_state  # nothing was written


@pytest.mark.parametrize(("overrides", "conv", "matmul"), [
    (["runtime.tf32_conv=false", "runtime.tf32_matmul=true"], False, True),
    (["runtime.tf32=true"], True, True),
    (["runtime.tf32=true", "runtime.tf32_conv=false"], False, True),
])
def test_explicit_tf32_is_applied_recorded_and_restored(compose_cfg, tmp_path, tf32_state, overrides, conv, matmul):
    rec = run_job(to_job(compose_cfg(*QUICK, "device=cpu", *overrides)), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    runtime = rec["metadata"]["runtime"]
    assert (runtime["tf32_conv"], runtime["tf32_matmul"]) == (conv, matmul)
    assert tf32.snapshot() == tf32_state


@pytest.mark.skipif(not tf32.has_fp32_precision_api(), reason="torch < 2.9 has no fp32_precision API")
@pytest.mark.parametrize("overrides", [[], ["runtime.tf32=true"], ["runtime.tf32_matmul=false"]])
def test_a_process_that_set_the_fp32_precision_api_first(compose_cfg, tmp_path, tf32_state, overrides):
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.fp32_precision = "tf32"
    with pytest.raises(RuntimeError, match="mix of the legacy and new"):
        torch.backends.cudnn.allow_tf32  # the legacy getter the old code read: every job failed
    before = tf32.snapshot()
    rec = run_job(to_job(compose_cfg(*QUICK, "device=cpu", *overrides)), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    runtime = rec["metadata"]["runtime"]
    assert runtime["tf32_api"] == "fp32_precision"
    assert runtime["tf32_conv"] is (True if overrides == ["runtime.tf32=true"] else False)  # conv "ieee" wins
    assert runtime["tf32_matmul"] is (False if overrides == ["runtime.tf32_matmul=false"] else True)  # generic
    after = tf32.snapshot()
    assert before["matmul_legacy"] is None  # the legacy matmul precision is unreadable in this mixed state ...
    # ... so only the new API's values, the ones this process set, can be (and are) put back exactly
    assert {k: v for k, v in after.items() if k != "matmul_legacy"} == {
        k: v for k, v in before.items() if k != "matmul_legacy"}


@pytest.mark.slow
def test_compiled_yolo_has_no_graph_break_after_the_eager_forward(compose_cfg, tmp_path):
    """Inductor on CPU (needs a C compiler; ~1 min on 2 busy cores): the Detect head's lazy anchors and shape
    exist before dynamo traces, so yolov8n compiles to one graph without breaks or recompilations."""
    rec = run_job(to_job(compose_cfg(*QUICK, "device=cpu", "runtime.compile=default")), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    cold = rec["cold_start"]
    assert rec["metadata"]["cfg"] == "yolov8n.yaml"
    assert cold["graph_breaks"] == 0 and cold["graph_break_reasons"] == [] and cold["compiled_graphs"] == 1
    assert cold["recompiles"] == 0 and cold["recompiled"] == {}
    assert cold["eager_forward_ms"] > 0 and cold["compile_ms"] > 0
    assert not any("torch.compile" in w for w in rec["warnings"])


def test_compile_stats_count_breaks_and_recompiles():
    """The counters themselves, on dynamo's eager backend (no compiler): a forward with an explicit graph
    break, called on two shapes with dynamic shapes off (a recompilation)."""
    class Branchy(torch.nn.Module):
        def forward(self, x):
            y = x * 2
            torch._dynamo.graph_break()
            return y + 1

    from medbench.run.runtime import compile_stats

    model = Branchy()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model, backend="eager", dynamic=False)
    compiled(torch.ones(2))
    compiled(torch.ones(3))
    stats = compile_stats(compiled)
    assert stats["graph_breaks"] >= 1 and stats["graph_break_reasons"]
    assert stats["recompiles"] >= 1 and "Branchy.forward" in stats["recompiled"]
    torch._dynamo.reset()


def test_throttle_reasons_decode_and_capping():
    assert telemetry.decode_throttle_reasons(0) == []
    assert telemetry.decode_throttle_reasons(0x1 | 0x4) == ["GpuIdle", "SwPowerCap"]
    assert telemetry.decode_throttle_reasons(0x1000) == ["0x1000"]
    assert telemetry.capping(["GpuIdle", "ApplicationsClocksSetting", "SyncBoost"]) == []
    assert telemetry.capping(["GpuIdle", "HwThermalSlowdown", "SwPowerCap"]) == ["HwThermalSlowdown", "SwPowerCap"]


def test_throttle_rule_is_a_share_of_loop_time():
    assert telemetry.throttle_rule(None, 1000.0) == (None, None)
    assert telemetry.throttle_rule({"SwPowerCap": None}, 1000.0) == (None, None)  # unsupported counters
    assert telemetry.throttle_rule({"SwPowerCap": 5.0, "HwThermalSlowdown": 0.0}, 1000.0) == (False, 0.005)
    assert telemetry.throttle_rule({"SwPowerCap": 8.0, "HwThermalSlowdown": 4.0}, 1000.0) == (True, 0.012)
    assert telemetry.throttle_rule({"SwPowerCap": 5000.0}, 1000.0) == (True, 1.0)  # capped at the whole loop
    assert telemetry.throttle_rule({"SwPowerCap": 10.0}, 0.0) == (None, None)
    assert telemetry.counter_growth_ms({"clock_event_ns": {"SwPowerCap": 1_000_000, "HwThermalSlowdown": None}},
                                       {"clock_event_ns": {"SwPowerCap": 6_000_000, "HwThermalSlowdown": None}}) == \
        {"SwPowerCap": 5.0, "HwThermalSlowdown": None}


def test_loaded_rule():
    assert not telemetry.loaded_rule(0.3, cores=2, threads=2)  # a little background noise
    assert telemetry.loaded_rule(0.8, cores=2, threads=2)  # another process took most of a core
    assert not telemetry.loaded_rule(0.8, cores=2, threads=1)  # ... but a core was left free for it
    assert telemetry.loaded_rule(1.5, cores=2, threads=1)
    # a GPU job keeps one core busy (the launching thread), whatever torch's CPU thread count says
    assert not telemetry.loaded_rule(10.0, cores=16, threads=16, gpu=True)
    assert telemetry.loaded_rule(15.5, cores=16, threads=16, gpu=True)
    assert telemetry.loaded_rule(0.8, cores=1, threads=1, gpu=True)  # at least half a core, even on one core


def test_other_gpu_processes_in_and_out_of_pid_namespaces():
    assert nvml.count_other_processes([], 42) == 0
    assert nvml.count_other_processes([42], 42) == 0
    assert nvml.count_other_processes([42, 7, 7], 42) == 1
    assert nvml.count_other_processes([9001], 42) == 0  # a container: host pids; the one process is us
    assert nvml.count_other_processes([9001, 9002], 42) == 1


class FakeField:
    def __init__(self, value, ret=0):
        self.nvmlReturn, self.valueType, self.value = ret, 3, SimpleNamespace(ullVal=value)


class FakeNVML:
    """Just enough of pynvml for gpu_snapshot and the probe."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL = 0, 1

    def __init__(self) -> None:
        import os

        self.mask, self.events, self.energy = 0x1, {74: 1_000_000, 269: 0, 270: 0, 271: None}, 5_000_000
        self.pids = [os.getpid()]

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
        return [SimpleNamespace(pid=p, usedGpuMemory=1024 * 1024 * 1024) for p in self.pids]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return []

    def nvmlDeviceGetFieldValues(self, h, ids):
        return [FakeField(0, ret=3) if self.events[i] is None else FakeField(self.events[i]) for i in ids]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self.energy

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-1234"

    def nvmlDeviceGetIndex(self, h):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = FakeNVML()
    monkeypatch.setattr(nvml, "_nvml", lambda: fake)
    return fake


def test_gpu_snapshot_reads_and_converts(fake_nvml):
    snap = telemetry.gpu_snapshot("handle")
    assert (snap["sm_clock_MHz"], snap["mem_clock_MHz"], snap["temperature_C"]) == (1980, 2619, 41)
    assert snap["power_W"] == pytest.approx(123.456) and snap["power_limit_W"] == 700
    assert snap["throttle_reasons"] == ["GpuIdle"] and snap["memory_used_MB"] == 2048
    assert snap["process_used_MB"] == 1024 and snap["energy_mJ"] == 5_000_000
    assert snap["clock_event_ns"] == {"SwPowerCap": 1_000_000, "SwThermalSlowdown": 0, "HwThermalSlowdown": 0,
                                      "HwPowerBrakeSlowdown": None}  # a field the driver refuses → None
    assert nvml.gpu_identity("handle") == {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1234",
                                           "nvml_index": None, "mig_uuid": None}  # unsupported query → None


def _probe(fake_nvml, monkeypatch, mask_after: int, power_ns_after: int, loop_s: float = 1.0) -> dict:
    clock = iter([100.0, 100.0 + loop_s])
    monkeypatch.setattr(telemetry.time, "perf_counter", lambda: next(clock))
    probe = telemetry.Probe(torch.device("cpu"))
    probe.handle = "handle"
    probe.start()
    fake_nvml.mask, fake_nvml.events[74] = mask_after, power_ns_after
    fake_nvml.energy += 250_000  # 250 J over the loop
    return probe.finish()


def test_probe_flags_only_time_held_down_over_the_loop(fake_nvml, monkeypatch):
    # a capping reason read at an instant, but the counters barely moved: 5 ms of a 1 s loop is not throttled
    calm = _probe(fake_nvml, monkeypatch, 0x4, 6_000_000)
    assert calm["throttled"] is False and calm["throttle_basis"] == "clock_event_counters"
    assert calm["throttle_share"] == pytest.approx(0.005) and calm["throttle_reasons"] == ["SwPowerCap"]
    assert calm["throttle_time_ms"]["SwPowerCap"] == pytest.approx(5.0) and calm["loop_s"] == pytest.approx(1.0)
    assert calm["energy_J"] == pytest.approx(250.0) and calm["other_gpu_processes"] == 0
    # no reason at either instant, but the power cap held the clocks for 50 ms of the 1 s loop
    capped = _probe(fake_nvml, monkeypatch, 0x1, 56_000_000)
    assert capped["throttled"] is True and capped["throttle_share"] == pytest.approx(0.05)


def test_probe_falls_back_to_reasons_without_counters(fake_nvml, monkeypatch):
    fake_nvml.events = {74: None, 269: None, 270: None, 271: None}
    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetViolationStatus", lambda h, p: 1 / 0, raising=False)
    tel = _probe(fake_nvml, monkeypatch, 0x40, 0)
    assert tel["throttle_basis"] == "reason_snapshots" and tel["throttled"] is True
    assert tel["throttle_share"] is None and tel["throttle_reasons"] == ["HwThermalSlowdown"]


def test_probe_counts_other_processes_on_the_gpu(fake_nvml, monkeypatch):
    import os

    fake_nvml.pids = [os.getpid(), 4242]
    tel = _probe(fake_nvml, monkeypatch, 0x1, 1_000_000)
    assert tel["other_gpu_processes"] == 1
    assert any("other process" in w for w in _telemetry_warnings(tel))


def test_telemetry_warnings():
    assert _telemetry_warnings(telemetry.empty_block()) == []
    warnings = _telemetry_warnings({**telemetry.empty_block(), "throttled": True, "throttle_share": 0.05,
                                    "throttle_time_ms": {"SwPowerCap": 50.0, "HwThermalSlowdown": 0.0},
                                    "loaded": True, "other_cpu_cores": 1.2, "cpu_cores": 2})
    assert any("SwPowerCap" in w and "5.0% of the loop" in w for w in warnings)
    assert any("machine loaded" in w for w in warnings)


def test_gpu_lock_wraps_placement_preloading_and_the_loop(compose_cfg, tmp_path, monkeypatch):
    """The lock is taken right after the device is resolved: model placement and input preloading (host-to-device
    copies, context creation) happen inside it, as do the timed loop and its telemetry."""
    import contextlib

    from medbench.run import runner

    events = []

    @contextlib.contextmanager
    def recording_lock(device):
        events.append(("lock", str(device)))
        yield None
        events.append(("unlock", str(device)))

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            events.append((name, None))
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(runner, "exclusive_gpu", recording_lock)
    monkeypatch.setattr(runner, "_load_model", spy("place", runner._load_model))
    monkeypatch.setattr(runner, "_load_inputs", spy("preload", runner._load_inputs))
    monkeypatch.setattr(runner, "measure", spy("loop", runner.measure))
    rec = runner.run_job(to_job(compose_cfg(*QUICK, "device=cpu")), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    assert [e[0] for e in events] == ["lock", "place", "preload", "loop", "unlock"]


# ---------------------------------------------------------------- channels_last default = Ultralytics' predict()


@pytest.mark.parametrize(("args", "expected"), [
    (("cpu", "x86_64", "Linux", True), True), (("cpu", "AMD64", "Windows", True), True),
    (("cuda", "x86_64", "Linux", True), False), (("cpu", "aarch64", "Linux", True), False),
    (("cpu", "x86_64", "Darwin", True), False), (("cpu", "x86_64", "Linux", False), False),
])
def test_channels_last_rule_mirrors_autobackend(args, expected):
    from medbench.run.runtime import channels_last_rule

    assert channels_last_rule(*args) is expected


def test_default_memory_format_is_what_predict_uses():
    """Ultralytics' own AutoBackend (what predict() runs) decides the memory format of the same model here;
    medbench's null default must come out the same, and explicit values win."""
    from ultralytics.nn.autobackend import AutoBackend

    from medbench.config.schema import ModelConfig
    from medbench.models import build_model
    from medbench.run.runtime import effective_channels_last

    cpu = torch.device("cpu")
    backend = AutoBackend(model=build_model(ModelConfig(name="n", cfg="yolov8n.yaml")).module, device=cpu,
                          verbose=False)
    weight = next(p for p in backend.model.parameters() if p.dim() == 4)
    predict_cl = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert effective_channels_last(None, cpu, "ultralytics") is predict_cl
    assert effective_channels_last(None, cpu, "torchvision") is False
    assert effective_channels_last(False, cpu, "ultralytics") is False
    assert effective_channels_last(True, cpu, "torchvision") is True


def test_default_channels_last_is_recorded_as_effective(compose_cfg, tmp_path):
    from medbench.run.runtime import effective_channels_last

    rec = run_job(to_job(compose_cfg(*QUICK, "device=cpu")), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    runtime = rec["metadata"]["runtime"]
    assert runtime["channels_last_requested"] is None
    assert runtime["channels_last"] is effective_channels_last(None, torch.device("cpu"), "ultralytics")
