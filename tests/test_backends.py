"""Deployment backends: real exports of a random-init YOLOv8n to each CPU runtime, outputs checked against
PyTorch, the on-disk export cache, the one-line errors, and one real sweep over backends."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import QUICK
from medbench.backends import check_backend
from medbench.backends.cache import cached_export, file_sha256
from medbench.backends.check import compare_outputs
from medbench.backends.graph import ExportGraph
from medbench.config.schema import to_job
from medbench.errors import ConfigError, DeviceError, MedbenchError
from medbench.run.runner import run_job

CPU = [*QUICK, "device=cpu"]
CPU_BACKENDS = ["torchscript", "onnxruntime", "openvino"]


def _run(compose_cfg, tmp_path, *overrides, cache=None):
    job = to_job(compose_cfg(*CPU, f"backend.cache_dir={cache or tmp_path / 'cache'}", *overrides))
    return job, run_job(job, list_dir=tmp_path)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One export cache for the tests that do not test the cache itself (exports are the slow part)."""
    return tmp_path_factory.mktemp("exports")


def _fused_yolov8n(imgsz: int = 64) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model as medbench builds it (seed 42, fused) and the synthetic input of a QUICK run."""
    from medbench.inputs.synthetic import synthetic_batch
    from medbench.models import prepare_for_inference
    from medbench.models.ultralytics_models import build_from_yaml

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(42)
        module, _, _ = build_from_yaml("yolov8n.yaml", "detect", None)
    module, _ = prepare_for_inference(module.float().eval(), fuse=True)
    x = synthetic_batch(1, (imgsz, imgsz), seed=42, device=torch.device("cpu"), dtype=torch.float32)
    return module, x


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backend_exports_matches_pytorch_and_caches(compose_cfg, tmp_path, backend):
    _, rec = _run(compose_cfg, tmp_path, f"backend={backend}")
    assert rec["status"] == "ok", rec["error"]
    be, cold = rec["backend"], rec["cold_start"]
    assert rec["metadata"]["backend"] == be["name"] == backend and be["version"]
    assert be["outputs"]["status"] == "match" and be["outputs"]["compared"] == 1
    assert be["outputs"]["shapes"] == [[1, 84, 84]]  # (4 box + 80 class) x anchors at 64 px
    assert 0 <= be["outputs"]["max_abs_diff"] < 1e-3 and be["outputs"]["rtol"] == 1e-3
    assert be["export_cache_hit"] is False and cold["export_cache_hit"] is False and cold["export_ms"] > 0
    assert cold["backend_load_ms"] > 0 and cold["first_forward_ms"] > 0
    path = be["file"]
    assert str(tmp_path / "cache") in path
    files = [path, path.replace(".xml", ".bin")] if backend == "openvino" else [path]
    assert be["file_sha256"] == file_sha256(*map(Path, files))
    assert len(rec["samples_ms"]) == 5 and rec["latency"]["p50_ms"] > 0
    assert rec["model_complexity"]["params"] == 3_157_200 and rec["model_complexity"]["fused"] is True
    if backend != "torchscript":  # ORT / OpenVINO take plain NCHW arrays: no channels_last copy in the timed call
        assert rec["metadata"]["runtime"]["channels_last"] is False
    threads = be["settings"].get("intra_op_threads") or be["settings"].get("INFERENCE_NUM_THREADS") \
        or be["settings"].get("threads")
    assert threads == torch.get_num_threads()

    _, again = _run(compose_cfg, tmp_path, f"backend={backend}")  # second run: the cache serves the export
    assert again["status"] == "ok"
    assert again["cold_start"]["export_cache_hit"] is True and again["cold_start"]["export_ms"] is None
    assert again["backend"]["file"] == path and again["backend"]["file_sha256"] == be["file_sha256"]

    if backend == "onnxruntime":  # (once: exports are slow) another shape is another export
        _, other = _run(compose_cfg, tmp_path, f"backend={backend}", "imgsz=96")
        assert other["status"] == "ok" and other["cold_start"]["export_cache_hit"] is False
        assert other["backend"]["file"] != path
        _, eager = _run(compose_cfg, tmp_path)  # params and GFLOPs are the source PyTorch model's
        assert eager["metadata"]["backend"] == eager["backend"]["name"] == "pytorch"
        assert rec["model_complexity"] == eager["model_complexity"]


def test_exported_files_match_an_independent_pytorch_build(compose_cfg, tmp_path, shared_cache):
    """Run each exported file with its runtime directly, against a model built here, on another input."""
    import onnxruntime as ort
    import openvino as ov

    recs = {b: _run(compose_cfg, tmp_path, f"backend={b}", cache=shared_cache)[1] for b in ("onnxruntime", "openvino")}
    module, _ = _fused_yolov8n()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = ExportGraph(module)(x)[0].numpy()
    got_ort = ort.InferenceSession(recs["onnxruntime"]["backend"]["file"]).run(None, {"images": x.numpy()})[0]
    got_ov = ov.Core().compile_model(recs["openvino"]["backend"]["file"], "CPU",
                                     {"INFERENCE_PRECISION_HINT": "f32"})(x.numpy())[0]
    for got in (got_ort, got_ov):
        assert got.shape == ref.shape == (1, 84, 84)
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def test_the_timed_step_is_one_runtime_call(tmp_path):
    """ORT: ``session.run`` bound to a pre-built feed; OpenVINO: ``infer`` of a request whose input is set."""
    from medbench.backends import get_backend
    from medbench.backends.base import Context
    from medbench.config.schema import BackendConfig

    module, x = _fused_yolov8n()
    ctx = Context(BackendConfig(), torch.device("cpu"), torch.float32, "fp32", (64, 64), 1, 1, tmp_path,
                  {"test": "step"})  # its own key: a cache of its own
    ort_step = get_backend("onnxruntime").prepare(module, [x], ctx).step
    assert isinstance(ort_step, functools.partial) and ort_step.func.__name__ == "run"
    assert ort_step.args[0] is None and ort_step.args[1]["images"].shape == (1, 3, 64, 64)
    assert ort_step()[0].shape == (1, 84, 84)
    ov_step = get_backend("openvino").prepare(module, [x], ctx).step
    assert ov_step.__name__ == "infer" and type(ov_step.__self__).__name__ == "InferRequest"
    np.testing.assert_array_equal(ov_step.__self__.get_input_tensor().data, x.numpy())


def test_outputs_that_differ_fail_an_fp32_run(compose_cfg, tmp_path, shared_cache):
    # ORT's kernels round differently from PyTorch's (~1e-5): a zero tolerance must catch that
    _, rec = _run(compose_cfg, tmp_path, "backend=onnxruntime", "backend.rtol=0", "backend.atol=0",
                  cache=shared_cache)
    assert rec["status"] == "failed" and rec["error"]["message"].startswith("outputs differ: onnxruntime vs PyTorch")
    assert rec["backend"]["outputs"]["status"] == "outputs differ" and rec["backend"]["outputs"]["max_abs_diff"] > 0
    assert rec["latency"] is None


def test_compare_outputs_tolerances_and_mismatches():
    ref = [torch.tensor([[100.0, 0.5, 0.0]])]
    ok = compare_outputs(ref, [torch.tensor([[100.05, 0.5004, 5e-5]])], "fp32")
    assert ok["status"] == "match" and ok["max_abs_diff"] == pytest.approx(0.05, rel=1e-3)
    assert compare_outputs(ref, [torch.tensor([[100.0, 0.51, 0.0]])], "fp32")["status"] == "outputs differ"
    assert compare_outputs(ref, [torch.tensor([[100.0, 0.51, 0.0]])], "fp16")["status"] == "match"
    bad_shape = compare_outputs(ref, [torch.zeros(1, 2)], "fp32")
    assert bad_shape["status"] == "outputs differ" and "shape" in bad_shape["note"]
    nan = compare_outputs(ref, [torch.tensor([[100.0, float("nan"), 0.0]])], "fp16")
    assert nan["status"] == "outputs differ" and "NaN" in nan["note"]
    assert compare_outputs(ref, [], "fp32")["status"] == "outputs differ"


@pytest.mark.parametrize("overrides, error, message", [
    (["backend=tensorrt"], DeviceError, "backend=tensorrt runs on cuda only (this job runs on cpu)"),
    (["backend=onnxruntime", "runtime.precision=fp16"], DeviceError,
     "backend=onnxruntime cannot run precision=fp16 on cpu (it can: fp32)"),
    (["backend=openvino", "runtime.precision=bf16"], DeviceError, "backend=openvino cannot run precision=bf16"),
    (["backend=onnxruntime", "runtime.compile=default"], ConfigError, "apply to backend=pytorch only"),
    (["backend=openvino", "runtime.channels_last=true"], ConfigError, "channels_last applies to"),
    (["backend=torchscript", "backend.threads=1"], ConfigError, "runs on torch's threads: use runtime.threads=1"),
])
def test_impossible_combinations_are_one_line(compose_cfg, overrides, error, message):
    job = to_job(compose_cfg(*CPU, *overrides))
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        check_backend(job, torch.device("cpu"))
    assert "\n" not in str(info.value)


def test_unknown_backend_is_refused_at_config_time(compose_cfg):
    with pytest.raises(ConfigError, match="backend must be one of pytorch, torchscript, onnxruntime, openvino"):
        to_job(compose_cfg(*CPU, "backend.name=tflite"))


@pytest.mark.parametrize("backend, blocked, extra", [("openvino", "openvino", "openvino"),
                                                     ("onnxruntime", "onnxruntime", "onnx")])
def test_a_missing_runtime_names_its_extra(compose_cfg, tmp_path, monkeypatch, backend, blocked, extra):
    monkeypatch.setitem(sys.modules, blocked, None)  # as if the package were not installed
    job, rec = _run(compose_cfg, tmp_path, f"backend={backend}")
    assert rec["status"] == "failed"
    assert rec["error"]["message"] == f"backend={backend} needs {blocked}: pip install 'medbench[{extra}]'"
    with pytest.raises(MedbenchError):
        check_backend(job, torch.device("cpu"))


def test_a_failing_export_is_a_failed_record(compose_cfg, tmp_path):
    _, rec = _run(compose_cfg, tmp_path, "backend=onnxruntime", "backend.opset=6")  # Resize/upsample needs >= 9
    assert rec["status"] == "failed" and rec["error"]["type"] == "backend"
    assert rec["error"]["message"].startswith("backend=onnxruntime: export or load failed:")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]  # no half-written entry


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_end_to_end_runs_through_the_backend(compose_cfg, tmp_path, shared_cache, backend):
    _, rec = _run(compose_cfg, tmp_path, f"backend={backend}", "scope=end_to_end", "input=assets",
                  cache=shared_cache)
    assert rec["status"] == "ok", rec["error"]
    assert set(rec["stages"]) == {"read", "preprocess", "forward", "postprocess"}
    assert rec["backend"]["name"] == backend and rec["backend"]["outputs"]["status"] == "match"


def test_cache_entries_are_keyed_and_complete(tmp_path):
    calls = []

    def export(path):
        calls.append(path)
        path.write_text("graph")

    key = {"format": "onnx", "state_sha256": "a", "input_shape": [1, 3, 64, 64]}
    first = cached_export(tmp_path, key, "model.onnx", export)
    second = cached_export(tmp_path, key, "model.onnx", export)
    third = cached_export(tmp_path, {**key, "input_shape": [1, 3, 96, 96]}, "model.onnx", export)
    assert first[2] is False and second[2] is True and third[2] is False and len(calls) == 2
    assert first[0] == second[0] != third[0] and first[0].read_text() == "graph"
    assert json.loads((first[0].parent / "key.json").read_text())["input_shape"] == [1, 3, 64, 64]

    def broken(path):
        path.write_text("half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        cached_export(tmp_path, {**key, "state_sha256": "b"}, "model.onnx", broken)
    assert len(list((tmp_path / "onnx").iterdir())) == 2  # nothing left of the failed export


def test_sweep_over_backends_one_table(medbench_cli, tmp_path):
    proc = medbench_cli("-m", *CPU, "backend=pytorch,onnxruntime,openvino,tensorrt", "model=eca",
                        f"backend.cache_dir={tmp_path / 'cache'}", "hydra.sweep.dir=sweep")
    assert proc.returncode == 1  # tensorrt cannot run on the CPU: that point fails, the sweep goes on
    recs = {json.loads(p.read_text())["metadata"]["backend"]: json.loads(p.read_text())
            for p in (tmp_path / "sweep").rglob("result.json")}
    assert set(recs) == {"pytorch", "onnxruntime", "openvino", "tensorrt"}
    assert recs["tensorrt"]["status"] == "failed" and "runs on cuda only" in recs["tensorrt"]["error"]["message"]
    for name in ("pytorch", "onnxruntime", "openvino"):
        assert recs[name]["status"] == "ok" and recs[name]["metadata"]["model_name"] == "eca"
    assert recs["onnxruntime"]["backend"]["outputs"]["status"] == "match"
    table = pd.read_csv(tmp_path / "sweep" / "comparison.csv")
    assert sorted(table["backend"]) == ["onnxruntime", "openvino", "pytorch", "tensorrt"]
    assert set(table["variant"].fillna("")) == {""}  # the backend is a column of its own, not a "variant"
    versions = table.set_index("backend")["backend_version"]  # and its version (CSV; a warning when they differ)
    assert versions["onnxruntime"] == recs["onnxruntime"]["backend"]["version"] and versions["pytorch"] == torch.__version__
    proc = medbench_cli(str(tmp_path / "sweep"), "--baseline-backend", "pytorch", "--output",
                        str(tmp_path / "t.csv"), module="medbench.collate")
    assert proc.returncode == 0, proc.stderr
    assert "Δ% vs backend pytorch" in proc.stdout
    delta = pd.read_csv(tmp_path / "t_backend_delta.csv", keep_default_na=False).set_index("backend")
    assert sorted(delta.index) == ["onnxruntime", "openvino", "pytorch"] and delta.loc["pytorch", "d_latency_p50_pct"] == 0
    assert delta.loc["pytorch", "verdict"] == "(baseline)"
    flagged = set(delta.index[delta["runs"] == "0/1"])  # this machine is shared: a loaded run is never a verdict
    for name in ("onnxruntime", "openvino"):  # 5 samples a run: no interval, so no verdict (not even "same")
        want = (recs[name]["latency"]["p50_ms"] / recs["pytorch"]["latency"]["p50_ms"] - 1) * 100
        assert delta.loc[name, "d_latency_p50_pct"] == pytest.approx(want, rel=1e-6)
        if flagged & {"pytorch", name}:
            assert delta.loc[name, "verdict"] == "unreliable"
            continue
        assert delta.loc[name, "verdict"] == ""
        assert "1 run each" in delta.loc[name, "note"] and "an interval needs 20" in delta.loc[name, "note"]
        assert "note: backend Δ%: 1 run each: run-to-run variance not measured" in proc.stdout


def test_backends_experiment_composes_the_full_grid(compose_cfg):
    cfg = compose_cfg("experiment=backends", return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["backend"] == "pytorch,torchscript,onnxruntime,openvino" and params["repeat"] == "range(4)"
    assert len(params["model"].split(",")) == 6 and params["imgsz"] == "320,640"
    assert cfg.batch == 1 and cfg.device == "cpu" and cfg.backend.name == "pytorch"
    assert cfg.hydra.callbacks.collate.baseline_backend == "pytorch"
    assert (cfg.iters.warmup, cfg.iters.iters, cfg.iters.min_time_s, cfg.iters.max_iters) == (10, 20, 2.0, 200)
    assert compose_cfg("experiment=backends", "iters=quick").iters.iters == 10  # the user's preset still wins


def test_backends_experiment_ends_with_the_backend_delta_table(medbench_cli, tmp_path):
    """The committed study on a tiny setting: replicates in rounds, then each backend vs eager PyTorch with the
    run-level interval and a verdict mark, written by the end-of-sweep callback."""
    proc = medbench_cli("experiment=backends", "imgsz=64", "model=eca", "backend=pytorch,onnxruntime",
                        "repeat=range(3)", "iters.warmup=2", "iters.iters=12", "iters.min_time_s=0",
                        f"backend.cache_dir={tmp_path / 'cache'}", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr
    order = [json.loads((tmp_path / "sweep" / str(i) / "result.json").read_text())["metadata"] for i in range(6)]
    assert [(m["repeat"], m["backend"]) for m in order] == [(r, b) for r in range(3) for b in ("pytorch", "onnxruntime")]
    delta = pd.read_csv(tmp_path / "sweep" / "comparison_backend_delta.csv", keep_default_na=False)
    ort = delta.set_index("backend").loc["onnxruntime"]
    assert ort["model"] == "eca" and ort["imgsz"] == 64 and ort["baseline"] == "pytorch"
    if ort["runs"] == "3/3" and delta.set_index("backend").loc["pytorch", "runs"] == "3/3":  # no run flagged loaded
        assert float(ort["d_p50_ci_lo_pct"]) <= float(ort["d_latency_p50_pct"]) <= float(ort["d_p50_ci_hi_pct"])
        assert ort["verdict"] in {"slower", "faster", "~", "same"} and "interval" not in ort["note"]  # paired: 95%
        assert "95% CI |" in (tmp_path / "sweep" / "comparison.md").read_text()
    else:
        assert ort["verdict"] == "unreliable" and "of 3 run(s)" in ort["note"]  # a flagged run: no verdict
    assert "## Δ% vs backend pytorch" in (tmp_path / "sweep" / "comparison.md").read_text()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnxruntime_cuda_io_binding(compose_cfg, tmp_path, precision):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without its CUDA provider (install onnxruntime-gpu)")
    job = to_job(compose_cfg(*QUICK, "device=0", f"runtime.precision={precision}", "backend=onnxruntime",
                             f"backend.cache_dir={tmp_path / 'cache'}"))
    rec = run_job(job, list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    assert rec["backend"]["settings"]["providers"][0] == "CUDAExecutionProvider"
    assert rec["backend"]["outputs"]["status"] == "match"
    assert rec["telemetry"] is not None and rec["latency"]["p50_ms"] > 0


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine(compose_cfg, tmp_path, precision):
    pytest.importorskip("tensorrt")
    overrides = [*QUICK, "device=0", f"runtime.precision={precision}", "backend=tensorrt",
                 f"backend.cache_dir={tmp_path / 'cache'}"]
    rec = run_job(to_job(compose_cfg(*overrides)), list_dir=tmp_path)
    assert rec["status"] == "ok", rec["error"]
    assert rec["backend"]["format"] == "tensorrt_engine" and rec["backend"]["outputs"]["status"] == "match"
    again = run_job(to_job(compose_cfg(*overrides)), list_dir=tmp_path)
    assert again["cold_start"]["export_cache_hit"] is True


def test_a_checkpoint_exports_with_its_own_head(compose_cfg, tmp_path):
    """A trainer-style ECA checkpoint with 3 classes (fp16 'ema', as Ultralytics saves it) through ONNX Runtime."""
    import copy

    from medbench.config.schema import ModelConfig
    from medbench.models import build_model

    lm = build_model(ModelConfig(name="eca", cfg="yolov8n-eca.yaml", num_classes=3))
    path = tmp_path / "best.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": None, "ema": copy.deepcopy(lm.module).half(),
                "train_args": {}}, path)
    _, rec = _run(compose_cfg, tmp_path, "backend=onnxruntime", "model=eca", f"model.weights={path}")
    assert rec["status"] == "ok", rec["error"]
    assert rec["backend"]["outputs"]["status"] == "match"
    assert rec["backend"]["outputs"]["shapes"] == [[1, 7, 84]]  # 4 box + 3 classes
    _, random_init = _run(compose_cfg, tmp_path, "backend=onnxruntime", "model=eca")
    assert random_init["backend"]["file"] != rec["backend"]["file"]  # another model: another cache entry


def test_state_hash_covers_scalars_dtypes_and_values():
    from medbench.backends.cache import state_sha256

    bn = torch.nn.BatchNorm2d(4)  # holds a 0-dim int64 buffer (num_batches_tracked)
    h = state_sha256(bn)
    assert h == state_sha256(torch.nn.BatchNorm2d(4)) and len(h) == 64
    assert state_sha256(torch.nn.BatchNorm2d(4).to(torch.bfloat16)) != h
    changed = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        changed.weight[0] = 2.0
    assert state_sha256(changed) != h


def test_compare_keys_on_the_backend():
    from medbench.analysis.entries import load_entries

    meta = {"model_name": "baseline", "imgsz": 320, "batch": 1, "device": "cpu", "precision": "fp32"}
    rec = {"schema_version": 1, "status": "ok", "metadata": meta, "latency": {"mean_ms": 1.0}}
    eager = load_entries(rec)[0]
    ort = load_entries({**rec, "metadata": {**meta, "backend": "onnxruntime"}})[0]
    assert eager.key != ort.key and eager.key[-1] == "pytorch" and ort.key[-1] == "onnxruntime"
    assert ort.label.endswith(" onnxruntime") and not eager.label.endswith("pytorch")
