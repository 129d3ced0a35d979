"""The result record: one typed family for everything medbench writes (pydantic v2).

Every ``result.json`` and every entry of a suite file is a ``Record``. Where they differ, two fields say how:

* ``kind``: ``run`` (a CLI run, one ``result.json``) or ``api`` (a Python-API benchmark / suite entry);
* ``status``: ``ok``, ``failed`` (config or runtime error: see ``error.type``), ``crashed`` (the point left no
  record: killed, OOM, time limit; built by the reader from what the run dir holds), ``interrupted`` (SIGINT /
  SIGTERM while running) or ``not_run`` (in the sweep plan, never started).

Blocks are typed where medbench reads a field and open (``extra="allow"``) everywhere, so a field added by a newer
writer (a telemetry counter, a backend's export time) passes validation and is kept on a round trip. Measurement
blocks are strict: ``"12.5"`` is not a latency. Why pydantic: validation on read (a broken or hand-edited file is
named in one line instead of crashing a table three functions later) and the JSON Schema in ``docs/`` generated from
the same classes, so the documented record cannot drift from the written one.

``SCHEMA_VERSION`` 2 (this module) differs from 1 by: the ``kind`` field; API entries carry ``throughput`` and
``memory`` blocks like runs (version 1 had a float and two top-level numbers); a crashed point keeps its overrides
in ``metadata.overrides`` only. ``medbench.results.load`` reads both versions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict
from pydantic.json_schema import SkipJsonSchema

from medbench.results.blocks import Block, Numbers, dig, json_form  # noqa: F401 (dig re-exported)
from medbench.results.measurement_blocks import (  # noqa: F401 (the blocks are re-exported)
    ColdStart, Latency, Memory, Noise, Number, Telemetry, Throughput)

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUITE_KIND = "medbench-suite"  # the ``kind`` of a suite file
Status = Literal["ok", "failed", "crashed", "interrupted", "not_run"]
Kind = Literal["run", "api"]


class ErrorInfo(Block):
    """Why a point is not ok: ``type`` is a word (config, input, model, device, oom, timeout, crash, interrupted,
    or the exception's class for a bug), ``message`` one line; ``traceback`` only for bugs."""

    type: str
    message: str
    exception: str | None = None
    traceback: str | None = None


class Metadata(Block):
    """What was run: the setting (model, imgsz, batch, device, precision), the overrides, the input."""

    model_name: str | None = None
    weights: str | None = None
    cfg: str | None = None
    cfg_sha256: str | None = Field(None, description="random init: sha256 of the model YAML file that was read")
    random_init: bool | None = None
    imgsz: int | list[int] | str | None = None
    batch: int | str | None = None
    device: str | int | None = None
    device_requested: str | int | None = None
    precision: str | None = None
    scope: str | None = None
    warmup: int | None = None
    iters: int | None = None
    seed: int | None = None
    timestamp: str | None = None
    overrides: list[str] = Field(default_factory=list, description="Hydra task overrides of this point")
    choices: dict[str, Any] = Field(default_factory=dict)
    benchmark_list: str | None = None
    benchmark_size: int | None = None
    benchmark_list_sha256: str | None = None
    runtime: dict[str, Any] | None = None
    config: dict[str, Any] | None = Field(None, description="runs: the full composed config of the point (resolved)")
    unit: str | None = Field(None, description="API entries: what throughput counts (calls/s, samples/s, ...)")
    duration_s: float | None = Field(None, description="API entries: total timed seconds (sum of samples_ms)")
    batch_size: int | None = Field(None, description="API entries: items per timed call")
    # CLI runs: the rest of the job, then what the stages found (model, inputs, timed loop)
    repeat: int | None = Field(None, description="replicate index of the setting (repeat='range(5)': 0..4)")
    backend: str | None = Field(None, description="deployment backend timed (pytorch, torchscript, onnxruntime, ...)")
    label_source: str | None = Field(None, description="where model_name came from (config, checkpoint, file name)")
    model_kind: str | None = None
    task: str | None = None
    input_kind: str | None = None
    trust_weights: bool | None = None
    model_imports: list[str] | None = None
    iters_config: dict[str, Any] | None = Field(None, description="the iters group as configured")
    weights_sha256: str | None = None
    num_classes: int | None = None
    model_dtype: str | None = None
    imgsz_requested: int | list[int] | str | None = Field(None, description="imgsz asked for, when rounded to the "
                                                                           "model's stride")
    input_shape: list[int] | None = None
    input_dtype: str | None = None
    timer: str | None = Field(None, description="perf_counter (CPU) or cuda_event")
    stopped_by: str | None = Field(None, description="iters, target (iters.target_ci_pct reached) or cap")
    samples: int | None = Field(None, description="number of timed calls (len(samples_ms))")


class ModelComplexity(Numbers):
    params: int | None = None
    params_M: Number = None
    gflops: Number = None
    gflops_unfused: Number = None
    fused: bool | None = None


class Accuracy(Block):
    """Validation accuracy of the timed weights, fractions in [0, 1] (``medbench.models.accuracy``); the whole block is
    null for a random-init model. ``source``: ``checkpoint`` (its ``train_metrics``), ``results.csv`` (the training
    run's last row) or ``config`` (``model.accuracy.*``); ``file`` the file read, ``epoch`` when known."""

    map50_95: Annotated[float, Strict()] | None = None
    map50: Annotated[float, Strict()] | None = None
    precision: Annotated[float, Strict()] | None = None
    recall: Annotated[float, Strict()] | None = None
    top1: Annotated[float, Strict()] | None = None
    top5: Annotated[float, Strict()] | None = None
    source: Literal["checkpoint", "results.csv", "config"] | None = None
    file: str | None = None
    epoch: int | None = None


class BackendBlock(Block):
    """The deployment runtime that was timed: its version, the exported file it loaded and the outputs check."""

    name: str | None = None
    version: str | None = None
    format: str | None = None
    file: str | None = None
    file_sha256: str | None = None
    export_cache_hit: bool | None = None
    settings: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = Field(None, description="outputs vs PyTorch on the same input (status, diffs)")


class Env(Block):
    python: str | None = None
    torch: str | None = None
    cpu: str | None = None
    gpu_name: str | None = None
    cuda: str | None = None
    git_commit: str | None = Field(None, description="= workdir_git.commit (kept for readers)")
    git_dirty: bool | None = Field(None, description="= workdir_git.dirty (kept for readers)")
    workdir_git: dict[str, Any] | None = Field(
        None, description="{root, commit, dirty} of the repository holding the working directory; null outside one")
    medbench_git: dict[str, Any] | None = Field(
        None, description="{root, commit, dirty} of medbench's own clone (editable install); null for an installed copy")
    cudnn: int | None = Field(None, description="torch.backends.cudnn.version(), e.g. 92400")
    cudnn_version: str | None = Field(None, description="the same as major.minor.patch, e.g. 9.24.0")


class Provenance(Block):
    hostname: str | None = None
    started_at: str | None = None
    ended_at: str | None = None


class Record(Block):
    """One result: a run (``kind: run``, the content of ``result.json``) or an API benchmark (``kind: api``)."""

    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Kind = "run"
    status: Status
    name: str | None = Field(None, description="API entries: the benchmark's name")
    error: ErrorInfo | None = None
    metadata: Metadata = Field(default_factory=Metadata)
    model_complexity: ModelComplexity | None = None
    accuracy: Accuracy | None = None
    latency: Latency | None = None
    throughput: Throughput | None = None
    memory: Memory | None = None
    cold_start: ColdStart | None = None
    backend: BackendBlock | None = None
    samples_ms: list[Annotated[float, Strict()]] | None = Field(
        None, description="raw per-call times (ms), warm-up excluded")
    noise: Noise | None = None
    stages: dict[str, Any] | None = None
    telemetry: Telemetry | None = None
    warnings: list[str] = Field(default_factory=list)
    env: Env | None = None
    provenance: Provenance | None = None
    # Set by the reader (the directory the record was found in); never written, not in the schema.
    run_dir: SkipJsonSchema[str | None] = Field(None, exclude=True)

    model_config = ConfigDict(extra="allow", strict=False, validate_assignment=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """The JSON form that is written: every top-level field (null when absent), and in the blocks the fields the
        writer gave (a CLI run does not carry the API's ``metadata.unit``)."""
        return json_form(self)


class Suite(Block):
    """A suite file (``BenchmarkSuite.save_results``): named API benchmarks run together, with their environment."""

    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Literal["medbench-suite"] = SUITE_KIND
    name: str
    created: str | None = None
    env: Env | None = None
    results: list[Record] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**json_form(self), "results": [r.to_json() for r in self.results]}


# --- constructors: the one place a record of each status is made --------------------------------------------------

def failed(error: dict[str, Any] | ErrorInfo, **fields: Any) -> Record:
    """A run that did not produce numbers (config error, runtime error)."""
    return Record(status="failed", error=error, **fields)


def crashed(error: dict[str, Any], *, run_dir: str, metadata: dict[str, Any],
            provenance: dict[str, Any] | None = None) -> Record:
    """A point that left no record (read from its run dir: ``medbench.results.crashes``)."""
    return Record(status="crashed", error=error, metadata=metadata, provenance=provenance, run_dir=run_dir)


def interrupted(message: str, exception: str | None = None, **fields: Any) -> Record:
    """A point stopped by SIGINT / SIGTERM while it ran."""
    error = {"type": "interrupted", "message": message, **({"exception": exception} if exception else {})}
    return Record(status="interrupted", error=error, **fields)


def not_run(overrides: list[str], *, run_dir: str | None = None, message: str = "never started",
            plan_num: int | None = None, **metadata: Any) -> Record:
    """A point of the sweep plan that never started (``plan_num``: its number in the plan)."""
    return Record(status="not_run", error={"type": "not_run", "message": message},
                  metadata={**metadata, "overrides": overrides}, run_dir=run_dir, plan_num=plan_num)
