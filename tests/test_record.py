"""The record: every kind medbench writes, produced for real, validated against the committed JSON Schema by an
independent validator (``jsonschema``), and the committed schema equal to the one generated from the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import torch

from conftest import QUICK, run_medbench
from medbench import BenchmarkSuite, ModelBenchmark
from medbench.results import record as rec
from medbench.results.load import load_dir
from medbench.results.metrics import BY_NAME, METRICS
from medbench.results.schema import MODELS, text

DOCS = Path(__file__).parent.parent / "docs"


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((DOCS / f"{name}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_schema_is_the_generated_one(name):
    assert (DOCS / f"{name}.schema.json").read_text() == text(name), (
        "docs/*.schema.json is stale: python -m medbench.results.schema docs")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """One real sweep: an ok point, a config failure (batch=0) and a runtime failure (a missing image folder)."""
    cwd = tmp_path_factory.mktemp("records")
    proc = run_medbench("-m", *QUICK, "device=cpu", "batch=1,0", "input=synthetic,folder",
                        f"input.path={cwd / 'no_images'}", "hydra.sweep.dir=sweep", cwd=cwd)
    assert proc.returncode == 1, proc.stderr[-3000:]  # failed points: the sweep says so
    root = cwd / "sweep"
    crashed = root / "crashed"  # a point that died before writing: Hydra's files, no result.json
    shutil.copytree(root / "0" / ".hydra", crashed / ".hydra")
    return root


def test_every_record_kind_validates_against_the_committed_schema(sweep, tmp_path):
    validator = _validator("result")
    written = sorted(sweep.rglob("result.json"))
    kinds = set()
    for path in written:
        data = json.loads(path.read_text())
        validator.validate(data)
        kinds.add((data["status"], (data["error"] or {}).get("type")))
    assert {("ok", None), ("failed", "config"), ("failed", "input")} <= kinds
    crashed = [r for r in load_dir(sweep).records if r.status == "crashed"]
    assert len(crashed) == 1
    validator.validate(crashed[0].to_json())
    for made in (rec.interrupted("SIGTERM while timing", metadata={"model_name": "ghost"}),
                 rec.not_run(["model=ghost", "imgsz=64"])):
        validator.validate(made.to_json())
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**json.loads(written[0].read_text()), "samples_ms": ["1.0"]})


def test_suite_file_validates_and_an_api_entry_is_a_record(tmp_path):
    suite = BenchmarkSuite("schema", output_dir=tmp_path, warmup_iterations=1, test_iterations=5)
    suite.add_benchmark("sum", lambda: sum(range(100)))
    suite.add_benchmark("broken", lambda: 1 / 0)
    path = suite.save_results()
    data = json.loads(path.read_text())
    _validator("suite").validate(data)
    for entry in data["results"]:
        _validator("result").validate(entry)  # one record family: an API entry is a result record
    assert [e["status"] for e in data["results"]] == ["ok", "failed"]


def test_api_and_cli_agree_on_throughput_and_memory():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    r = ModelBenchmark(model, (3, 16, 16), warmup_iterations=1).run(batch_size=2, num_iterations=5)
    assert r.throughput.fps_p50 == pytest.approx(1000.0 / r.latency.p50_ms * 2)
    assert r.throughput.fps_mean == pytest.approx(1000.0 / r.latency.mean_ms * 2)
    assert BY_NAME["throughput.fps_p50"].value(r) == r.throughput.fps_p50  # the table reads API entries the same way
    assert r.memory.peak_gpu_mem_MB is None and r.memory.peak_rss_MB > 0


def test_model_benchmark_times_bf16_on_cpu_through_the_runners_placement():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    r = ModelBenchmark(model, (3, 24, 24), dtype=torch.bfloat16, warmup_iterations=1,
                       channels_last=True).run(batch_size=2, num_iterations=4)
    assert r.ok and len(r.samples_ms) == 4 and all(s > 0 for s in r.samples_ms)
    assert r.metadata["model_dtype"] == r.metadata["input_dtype"] == "bfloat16"
    assert r.metadata["channels_last"] is True and r.metadata["runtime"]["threads"] >= 1
    assert next(model.parameters()).requires_grad is False  # placed as the runner places models
    assert r.telemetry is not None and r.telemetry.cpu_cores >= 1  # telemetry read around the loop


def test_metric_table_has_one_row_per_name_and_column():
    assert len({m.name for m in METRICS}) == len({m.column for m in METRICS}) == len(METRICS)
    assert {m.target for m in METRICS if m.target} == {"throughput", "latency_p50_ms", "latency_p95_ms",
                                                       "latency_mean_ms", "memory_MB"}
    for m in METRICS:  # every metric lives in a typed block of the record
        block, field = m.name.split(".")
        assert field in rec.Record.model_fields[block].annotation.__args__[0].model_fields


def test_a_job_that_failed_before_its_stages_is_assembled_with_every_block(compose_cfg):
    """``run.parts.assemble`` from no parts at all: the job's typed metadata, every cold_start key (null), the
    pytorch backend block absent, no gpu_lock key (the lock was never taken); valid against the committed schema."""
    from medbench.config.schema import to_job
    from medbench.run.parts import Parts, assemble, job_metadata

    job = to_job(compose_cfg(*QUICK, "device=cpu", "repeat=3"))
    record = assemble(job_metadata(job, ["repeat=3"], {}), Parts(), "failed",
                      {"type": "device", "message": "no such device"}, {"started_at": "t0"})
    data = record.to_json()
    _validator("result").validate(data)
    assert record.metadata.repeat == 3 and record.metadata.backend == "pytorch" and record.backend is None
    assert set(data["cold_start"]) >= {"model_load_ms", "warmup_ms", "compile_ms", "export_ms", "backend_load_ms"}
    assert not any(data["cold_start"].values()) and data["latency"] is None and "gpu_lock" not in data["provenance"]
    assert data["error"] == {"type": "device", "message": "no such device"} and data["status"] == "failed"
