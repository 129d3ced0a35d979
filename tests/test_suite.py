"""Built-in suites (python -m medbench.suite) and performance targets (medbench.analysis.targets)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import run_medbench
from medbench.api.benchmark_suite import SUITE_KIND, BenchmarkSuite, load_suite
from medbench.api.result import BenchmarkResult
from medbench.errors import ConfigError, ResultError
from medbench.api.suite import (CachedDataset, ImageFileDataset, Settings, add_data, add_model, decode, preprocess_ops,
                                 write_images)
from medbench.cli.suite import render_table
from medbench.analysis.targets import (MET, MISSED, NOT_MEASURED, Target, check_targets, device_type, load_targets,
                                       parse_targets)
from medbench.cli.targets import render_report

TINY = Settings(quick=True, device="cpu", data_batches=4, data_batch_size=4, preprocess_iters=5,
                model_batch_size=1, model_warmup=0, model_iters=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("images"), count=8)


# --- workloads ----------------------------------------------------------------------------------------------------

def test_written_images_are_real_jpegs(images: list[Path]) -> None:
    import cv2

    assert len(images) == 8 and all(p.suffix == ".jpg" for p in images)
    img = cv2.imread(str(images[0]))
    assert img.shape == (320, 320, 3) and img.std() > 10  # not a flat colour
    assert not (cv2.imread(str(images[1])) == img).all()


def test_cached_and_uncached_datasets_agree(images: list[Path]) -> None:
    uncached, cached = ImageFileDataset(images), CachedDataset(images)
    assert len(uncached) == len(cached) == 8
    x, i = uncached[3]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and i == 3
    assert torch.equal(x, cached[3][0]) and 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(decode(images[3]), x)


def test_preprocess_ops_run_on_a_real_image(images: list[Path]) -> None:
    import cv2

    img = torch.from_numpy(cv2.imread(str(images[0]))[:, :, ::-1].copy()).permute(2, 0, 1)
    ops = preprocess_ops()
    assert set(ops) == {"preprocess_resize", "preprocess_normalize", "preprocess_hflip", "preprocess_color_jitter",
                        "preprocess_pipeline"}
    assert ops["preprocess_resize"](img).shape == (3, 224, 224)
    assert torch.equal(ops["preprocess_hflip"](img), img.flip(-1))
    assert ops["preprocess_normalize"](img).dtype == torch.float32
    assert ops["preprocess_pipeline"](img).shape == (3, 224, 224)


def test_data_suite_with_two_workers(tmp_path: Path, images: list[Path]) -> None:
    suite = BenchmarkSuite("data", output_dir=tmp_path)
    add_data(suite, images, TINY)
    results = suite.run_all()
    assert [r.name for r in results] == ["data_uncached_w0", "data_uncached_w2", "data_cached_w0", "data_cached_w2"]
    for r in results:
        assert r.ok, r.error
        assert r.metadata["unit"] == "samples/s" and r.metadata["items"] == 16 and len(r.samples_ms) == 4
        assert r.metadata["component"] in ("data_uncached", "data_cached")
        assert r.throughput.items_per_s == pytest.approx(16 / r.duration)
    assert [r.metadata["num_workers"] for r in results] == [0, 2, 0, 2]
    assert "data_cached_w2" in render_table(results)


@pytest.mark.slow
def test_model_suite_resnet50_and_vit(tmp_path: Path) -> None:
    suite = BenchmarkSuite("model", output_dir=tmp_path)
    add_model(suite, TINY)
    results = suite.run_all()
    assert [r.name for r in results] == ["resnet50", "vit_b_16"]
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[0].metadata["params"] == 25_557_032 and results[1].metadata["params"] == 86_567_656
    assert all(r.metadata["input_shape"] == [1, 3, 224, 224] and r.metadata["random_init"] for r in results)


def test_suite_cli_writes_a_valid_suite_file(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "pre.json"
    proc = run_medbench("--tests", "preprocess", "--quick", "--device", "cpu", "--output", str(out),
                        "--targets", "default", cwd=tmp_path, module="medbench.suite", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = load_suite(out)
    assert data["schema_version"] == 2 and data["kind"] == SUITE_KIND and data["name"] == "builtin"
    assert {"python", "torch", "cpu"} <= set(data["env"])
    names = [r["name"] for r in data["results"]]
    assert names == list(preprocess_ops())
    for entry in data["results"]:
        r = BenchmarkResult.from_dict(entry)
        assert r.ok and r.metadata["unit"] == "ops/s" and len(r.samples_ms) == 50 and r.latency["p50_ms"] > 0
    assert "preprocess_color_jitter" in proc.stdout and f"wrote {out.relative_to(tmp_path)}\n" in proc.stdout  # cwd-relative
    assert "not measured" in proc.stdout  # the target table: nothing of it is in a preprocess-only run


def test_suite_cli_rejects_unknown_suite(tmp_path: Path) -> None:
    proc = run_medbench("--tests", "nope", cwd=tmp_path, module="medbench.suite", timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_suite_file_compares_with_itself(tmp_path: Path) -> None:
    from medbench.analysis import compare
    from medbench.cli.compare import main
    suite = BenchmarkSuite("self", output_dir=tmp_path, warmup_iterations=1, test_iterations=30)
    suite.add_benchmark("spin", lambda: sum(range(1000)))
    suite.run_all()
    a, b = suite.save_results("a.json"), suite.save_results("b.json")
    report = compare.compare_sources(str(a), str(b))
    assert not report.has_regressions and report.matched == 1
    assert main(["--baseline", str(a), "--current", str(b), "--fail-on-regression"]) == 0


# --- targets ------------------------------------------------------------------------------------------------------

def _entry(name: str, throughput: float | None, device: str = "cpu", component: str | None = None,
           status: str = "ok") -> dict:
    md = {"device": device, "unit": "samples/s", **({"component": component} if component else {})}
    return {"name": name, "duration": 1.0, "throughput": throughput, "memory_allocated": None,
            "memory_reserved": None, "metadata": md, "noise": {}, "samples_ms": [],
            # a version-1 entry: throughput.fps_p50 (what a target reads) comes from latency.p50_ms
            "latency": {"p50_ms": 1000.0 / throughput} if throughput else None,
            "status": status, "error": None if status == "ok" else {"type": "RuntimeError", "message": "x"}}


HAND_MADE = {
    "schema_version": 1, "kind": SUITE_KIND, "name": "hand", "created": "2024-01-01T00:00:00+00:00", "env": {},
    "results": [
        _entry("resnet50", 60.0),
        _entry("data_uncached_w0", 400.0, component="data_uncached"),
        _entry("data_uncached_w2", 650.0, component="data_uncached"),
        _entry("data_cached_w0", 4000.0, component="data_cached"),
        _entry("data_cached_w2", 9000.0, component="data_cached", status="failed"),  # failed: does not count
        _entry("vit_b_16", 150.0, device="cuda:0"),
    ],
}


def test_default_targets_file_is_shipped() -> None:
    targets = load_targets("default")
    assert Target("resnet50", "cpu", "throughput", ">", 50.0, "samples/s") in targets
    assert {(t.component, t.device, t.bound) for t in targets} == {
        ("resnet50", "cpu", 50), ("resnet50", "cuda", 500), ("vit_b_16", "cuda", 200),
        ("data_uncached", "cpu", 500), ("data_cached", "cpu", 5000)}
    assert load_targets() == targets


def test_targets_met_missed_not_measured() -> None:
    report = check_targets(load_targets(), HAND_MADE)
    status = {(c.target.component, c.target.device): c for c in report.checks}
    assert status["resnet50", "cpu"].status == MET and status["resnet50", "cpu"].measured == pytest.approx(60.0)
    assert status["resnet50", "cuda"].status == NOT_MEASURED and status["resnet50", "cuda"].measured is None
    assert status["vit_b_16", "cuda"].status == MISSED and status["vit_b_16", "cuda"].measured == pytest.approx(150.0)
    uncached = status["data_uncached", "cpu"]
    assert uncached.status == MET and uncached.measured == pytest.approx(650.0) and uncached.source.endswith("data_uncached_w2")
    cached = status["data_cached", "cpu"]
    assert cached.status == MISSED and cached.measured == pytest.approx(4000.0)  # the failed 9000 does not count
    assert len(report.met) == 2 and len(report.missed) == 2 and len(report.not_measured) == 1
    table = render_report(report)
    for word in ("component", "device", "target", "measured", "status", "MISSED", "met", "not measured"):
        assert word in table
    assert re.search(r"\| resnet50 +\| cpu +\|", render_report(report, markdown=True))
    assert json.loads(json.dumps(report.to_dict()))["summary"] == {"met": 2, "missed": 2, "not_measured": 1}


def test_latency_targets_take_the_lowest() -> None:
    targets = parse_targets({"targets": [{"component": "data_uncached", "device": "cpu", "metric": "latency_p50_ms",
                                          "op": "<", "bound": 12}]})
    suite = {**HAND_MADE, "results": [_entry("data_uncached_w0", 100.0, component="data_uncached"),
                                      {**_entry("data_uncached_w2", 100.0, component="data_uncached"),
                                       "latency": {"p50_ms": 11.0}}]}
    check = check_targets(targets, suite).checks[0]
    assert check.status == MET and check.measured == 10.0


def _run_json(run_dir: Path, model: str, device: str, fps_p50: float, batch: int = 1) -> None:
    run_dir.mkdir(parents=True)
    record = {"schema_version": 1, "status": "ok", "error": None,
              "metadata": {"model_name": model, "device": device, "imgsz": 224, "batch": batch},
              "latency": {"p50_ms": 1000 / fps_p50 * batch}, "throughput": {"fps_mean": fps_p50, "fps_p50": fps_p50},
              "memory": {"peak_gpu_mem_MB": None}}
    (run_dir / "result.json").write_text(json.dumps(record))


def test_targets_on_a_sweep_directory(tmp_path: Path) -> None:
    _run_json(tmp_path / "0", "resnet50", "cuda:0", 450.0, batch=1)
    _run_json(tmp_path / "1", "resnet50", "cuda:0", 800.0, batch=8)
    _run_json(tmp_path / "2", "resnet50", "cpu", 30.0)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "result.json").write_text("{truncated")  # unreadable: skipped
    report = check_targets(load_targets(), tmp_path)
    status = {(c.target.component, c.target.device): c for c in report.checks}
    assert status["resnet50", "cuda"].status == MET and status["resnet50", "cuda"].measured == 800.0
    assert "batch=8" in status["resnet50", "cuda"].source
    assert status["resnet50", "cpu"].status == MISSED
    assert status["vit_b_16", "cuda"].status == NOT_MEASURED
    single = check_targets(load_targets(), tmp_path / "2" / "result.json")
    assert [c.status for c in single.checks if c.target.component == "resnet50"] == [MISSED, NOT_MEASURED]


def test_targets_cli_exit_codes(tmp_path: Path) -> None:
    from medbench.cli.targets import main

    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps(HAND_MADE))
    assert main([str(suite_file)]) == 0  # missed targets are reported, not failed, by default
    assert main([str(suite_file), "--fail-on-miss", "--output", str(tmp_path / "report.json")]) == 1
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["missed"] == 2
    easy = tmp_path / "easy.yaml"
    easy.write_text("targets:\n  - {component: resnet50, device: cpu, metric: throughput, op: '>', bound: 1}\n"
                    "  - {component: resnet50, device: cuda, metric: throughput, op: '>', bound: 1}\n")
    assert main([str(suite_file), "--targets", str(easy), "--fail-on-miss"]) == 0  # not measured never fails
    assert main([str(tmp_path / "none.json")]) == 2
    assert main([str(suite_file), "--targets", str(tmp_path / "none.yaml")]) == 2


@pytest.mark.parametrize("entry, message", [
    ({"component": "x", "device": "cpu", "metric": "throughput", "op": "=>", "bound": 1}, "op"),
    ({"component": "x", "device": "cpu", "metric": "speed", "op": ">", "bound": 1}, "metric"),
    ({"component": "x", "device": "tpu", "metric": "throughput", "op": ">", "bound": 1}, "device"),
    ({"component": "x", "device": "cpu", "metric": "throughput", "op": ">", "bound": "fast"}, "bound"),
    ({"component": "x", "device": "cpu", "metric": "throughput", "op": ">"}, "lacks bound"),
])
def test_bad_targets_are_one_line_errors(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_targets({"targets": [entry]})


def test_device_type() -> None:
    assert [device_type(d) for d in ("cuda:0", "0", "cuda", "cpu", "mps")] == ["cuda", "cuda", "cuda", "cpu", "mps"]


def test_targets_reject_a_foreign_file(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultError, match="neither"):
        check_targets(load_targets(), tmp_path / "x.json")


def test_suite_never_replaces_an_existing_output_silently(tmp_path, capsys):
    from medbench.cli.suite import main as suite_main

    existing = tmp_path / "current.json"
    existing.write_text('{"kept": true}')
    assert suite_main(["--tests", "preprocess", "--quick", "--output", str(existing)]) == 2
    assert existing.read_text() == '{"kept": true}'
    assert "exists: pass --force" in capsys.readouterr().err
