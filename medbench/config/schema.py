"""Structured-config schemas (registered in Hydra's ConfigStore) and the validated, typed ``Job``.

Hydra checks key names and scalar types against these dataclasses while composing (``batch=abc`` or a
typo'd key fails before anything runs); ``to_job`` then checks values and ranges and turns the
DictConfig into a frozen ``Job`` that the rest of medbench reads. This module must not import torch.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from medbench.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16")
SCOPES = ("forward", "end_to_end")
MODEL_KINDS = ("ultralytics", "torchvision")
INPUT_KINDS = ("synthetic", "assets", "folder", "dataset")
BACKENDS = ("pytorch", "torchscript", "onnxruntime", "openvino", "tensorrt")


@dataclass
class AccuracyConfig:
    """Validation accuracy of the weights given by hand (fractions in [0, 1]); null: read from the checkpoint."""

    map50_95: Optional[float] = None  # mAP50-95 (box)
    map50: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    top1: Optional[float] = None  # classifiers
    top5: Optional[float] = None


@dataclass
class ModelConfig:
    """What to benchmark: an Ultralytics YAML (random init), a checkpoint, or a torchvision factory."""

    name: Optional[str] = MISSING  # the label in tables and JSON; null with weights: the checkpoint's run name
    kind: str = "ultralytics"  # ultralytics | torchvision
    cfg: Optional[str] = None  # model YAML (ultralytics) or factory name (torchvision); used when weights is null
    weights: Optional[str] = None  # path to a trained .pt; when set it wins over cfg
    task: str = "detect"  # detect | segment | classify | pose | obb
    num_classes: Optional[int] = None  # classes for a random-init build (null: the YAML's / factory's default)
    fuse: bool = True  # fuse Conv+BN before timing, as Ultralytics does for inference
    default_imgsz: int = 640  # the model kind's natural input size; top-level imgsz defaults to it
    trust_weights: bool = False  # unpickle `weights` with full code execution (only for files you trust)
    imports: list[str] = field(default_factory=list)  # modules imported first: the user's own layers (allow-listed)
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)  # by hand; else the checkpoint's own metrics


@dataclass
class InputConfig:
    """Where the timed images come from."""

    kind: str = "synthetic"  # synthetic | assets | folder | dataset
    path: Optional[str] = None  # folder: directory of images
    data: Optional[str] = None  # dataset: YOLO data.yaml
    split: str = "val"  # dataset: which split to draw from
    size: int = 200  # dataset: how many images go into the benchmark list
    reuse_list: bool = True  # dataset: reuse an existing benchmark_list.txt (same images for every model)
    list_path: Optional[str] = None  # dataset: where benchmark_list.txt lives (null: shared under the sweep/runs dir)


@dataclass
class ItersConfig:
    """How long to measure: warm-up is discarded; at least ``iters`` and at least ``min_time_s``."""

    warmup: int = 50
    iters: int = 300
    min_time_s: float = 0.0  # keep timing past `iters` until this much timed time has passed
    max_iters: Optional[int] = None  # cap for min_time_s and target_ci_pct (null: 10 x iters)
    target_ci_pct: Optional[float] = None  # keep timing until the median's 95% CI is within ±this % (iters=auto)
    max_time_s: Optional[float] = None  # with target_ci_pct: stop after this much timed work even if not reached
    pipelined_iters: Optional[int] = None  # CUDA, scope=forward: calls between one event pair (null: min(samples, 100, ~2 s); 0: off)


@dataclass
class RuntimeConfig:
    """Device-side settings; all recorded in the JSON and sweepable."""

    precision: str = "fp32"  # fp32 | fp16 | bf16
    channels_last: Optional[bool] = None  # null: as Ultralytics' predict() (channels_last on x86 CPUs, 8.4+)
    cudnn_benchmark: bool = False
    tf32: Optional[bool] = None  # shorthand for tf32_conv and tf32_matmul (null: PyTorch's settings stay as they are)
    tf32_conv: Optional[bool] = None  # TF32 in fp32 cuDNN convolutions (null: leave PyTorch's setting; its default is on)
    tf32_matmul: Optional[bool] = None  # TF32 in fp32 cuBLAS matmuls (null: leave PyTorch's setting; its default is off)
    compile: Optional[str] = None  # null/off, or a torch.compile mode: default | reduce-overhead | max-autotune
    cuda_graphs: bool = False
    threads: Optional[int] = None  # torch intra-op threads on CPU (null: torch's default)


@dataclass
class BackendConfig:
    """Which runtime executes the model: eager PyTorch, or an export of it (conf/backend/*.yaml)."""

    name: str = "pytorch"  # pytorch | torchscript | onnxruntime | openvino | tensorrt (CUDA)
    threads: Optional[int] = None  # runtime intra-op threads (null: the job's torch threads, i.e. runtime.threads)
    streams: int = 1  # openvino: NUM_STREAMS (1 = latency)
    opset: Optional[int] = None  # ONNX opset (onnxruntime, tensorrt); null: 18 (17 for torch < 2.4)
    workspace_gb: float = 4.0  # tensorrt builder workspace
    cache_dir: Optional[str] = None  # export cache (null: $MEDBENCH_CACHE_DIR or ~/.cache/medbench/exports)
    rtol: Optional[float] = None  # outputs check vs PyTorch (null: 1e-3 in fp32, 2e-2 in fp16)
    atol: Optional[float] = None  # (null: 1e-4 in fp32, 5e-3 in fp16)


@dataclass
class Config:
    """The whole composed config: top-level plain keys plus one node per group."""

    device: str = "auto"
    imgsz: Any = 640  # int or [h, w]
    batch: int = 1
    seed: int = 42
    repeat: int = 0  # replicate index: repeat='range(5)' in a sweep runs 5 replicates, interleaved across variants
    scope: str = "forward"  # forward | end_to_end
    result_file: str = "result.json"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    iters: ItersConfig = field(default_factory=ItersConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)


def register_configs() -> None:
    """Register the schema; config.yaml lists ``medbench_schema`` first in its defaults.

    The top-level schema types every group node, so a group file with a typo'd key or a wrong type
    fails at composition; the groups need no schema entries of their own (which would also show up
    as bogus options in ``model=`` error messages). Also registers ``hydra/sweeper=interleaved``
    (replicates in rounds), which config.yaml selects.
    """
    from hydra_plugins.medbench_launcher import interleaved_sweeper

    ConfigStore.instance().store(name="medbench_schema", node=Config)
    interleaved_sweeper.register()
    if not OmegaConf.has_resolver("medbench_stamp"):
        # cached per config (as Hydra's ``now``), and Hydra copies the cache to every job's config: one value per sweep
        OmegaConf.register_new_resolver("medbench_stamp", unique_stamp, use_cache=True)


def unique_stamp(pattern: str = "%Y-%m-%d_%H-%M-%S") -> str:
    """``2026-11-24_17-45-01.123456-3fa9``: the local time (``pattern``) to the microsecond plus a random suffix, so
    two runs or sweeps started in the same second (even the same microsecond) get different default directories."""
    import secrets
    from datetime import datetime

    now = datetime.now()
    return f"{now.strftime(pattern)}.{now.microsecond:06d}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Job:
    """One validated benchmark job: plain, typed values only (no DictConfig beyond this point)."""

    device: str
    imgsz: tuple[int, int]
    batch: int
    seed: int
    scope: str
    model: ModelConfig
    input: InputConfig
    iters: ItersConfig
    runtime: RuntimeConfig
    result_file: str = "result.json"
    repeat: int = 0  # replicate index; replicates of a setting share everything else (seed, benchmark list)
    backend: BackendConfig = field(default_factory=BackendConfig)


def parse_imgsz(value: Any) -> tuple[int, int]:
    """``640`` → (640, 640); ``[480, 640]`` → (480, 640). Each side must be a positive int."""
    if isinstance(value, (ListConfig, list, tuple)):
        items = list(value)
    else:
        items = [value, value]
    if len(items) != 2:
        raise ConfigError(f"imgsz must be an int or [h, w], got {OmegaConf.to_container(value) if isinstance(value, ListConfig) else value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            try:
                item = int(str(item))
            except ValueError:
                raise ConfigError(f"imgsz must be a positive integer or [h, w], got {value!r}") from None
        if item <= 0:
            raise ConfigError(f"imgsz must be positive, got {item}")
        out.append(item)
    return out[0], out[1]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_keys(cfg: DictConfig, schema: type, prefix: str = "") -> None:
    """Refuse keys the schema does not know (``+runtime.precison=…`` slips past Hydra's struct mode)."""
    known = {f.name: f for f in fields(schema)}
    for key in cfg.keys():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
        group_schema = known[key].default_factory
        if is_dataclass(group_schema):
            _check_keys(cfg[key], group_schema, f"{prefix}{key}.")


def to_job(cfg: DictConfig) -> Job:
    """Validate the composed config and freeze it into a ``Job`` (one ConfigError line on bad values)."""
    _check_keys(cfg, Config)
    model = OmegaConf.to_object(cfg.model)
    inp = OmegaConf.to_object(cfg.input)
    iters = OmegaConf.to_object(cfg.iters)
    runtime = OmegaConf.to_object(cfg.runtime)
    backend = OmegaConf.to_object(cfg.backend) if "backend" in cfg else BackendConfig()
    _choice("backend", backend.name, BACKENDS)
    if backend.threads is not None:
        _positive("backend.threads", backend.threads)
    _positive("backend.streams", backend.streams)
    _choice("model.kind", model.kind, MODEL_KINDS)
    if not model.weights and not model.cfg:
        raise ConfigError(f"model {model.name!r} has neither model.cfg nor model.weights")
    for key, value in vars(model.accuracy).items():
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ConfigError(f"model.accuracy.{key} must be a fraction in [0, 1] (0.412 for 41.2%), got {value}")
    _choice("input.kind", inp.kind, INPUT_KINDS)
    _positive("input.size", inp.size)
    _positive("iters.iters", iters.iters)
    _positive("iters.warmup", iters.warmup, minimum=0)
    if not math.isfinite(iters.min_time_s) or iters.min_time_s < 0:
        raise ConfigError(f"iters.min_time_s must be a finite number >= 0, got {iters.min_time_s}")
    if iters.max_iters is not None and iters.max_iters < max(1, iters.iters):
        raise ConfigError(f"iters.max_iters must be >= iters.iters ({iters.iters}) or null, got {iters.max_iters}")
    for key in ("target_ci_pct", "max_time_s"):
        value = getattr(iters, key)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"iters.{key} must be > 0 (or null), got {value}")
    _choice("runtime.precision", runtime.precision, PRECISIONS)
    if runtime.threads is not None:
        _positive("runtime.threads", runtime.threads)
    device = str(cfg.device).strip()
    if not device:
        raise ConfigError("device must not be empty (use auto, cpu, 0, cuda:0, mps)")
    return Job(
        device=device,
        imgsz=parse_imgsz(cfg.imgsz),
        batch=_positive("batch", int(cfg.batch)),
        seed=int(cfg.seed),
        scope=_choice("scope", cfg.scope, SCOPES),
        model=model,
        input=inp,
        iters=iters,
        runtime=runtime,
        result_file=check_result_file(cfg.result_file),
        repeat=_positive("repeat", int(cfg.repeat), minimum=0),
        backend=backend,
    )


def check_result_file(value: Any) -> str:
    """``result_file`` is a plain file name inside the run dir: not empty, no path separator, not ``.``/``..``."""
    name = str(value) if value is not None else ""
    if not name or name in (".", "..") or "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        raise ConfigError(f"result_file must be a plain file name such as result.json (no folders), got {name!r}")
    return name


def fit_imgsz(imgsz: tuple[int, int], stride: int | None) -> tuple[tuple[int, int], str | None]:
    """Round each side up to a multiple of the model's max stride, as Ultralytics' ``check_imgsz`` does; returns
    the size and a warning for the record when it changed (a detector cannot take 100 px at stride 32)."""
    if not stride or stride <= 1:
        return imgsz, None
    fitted = (max(stride, math.ceil(imgsz[0] / stride) * stride), max(stride, math.ceil(imgsz[1] / stride) * stride))
    if fitted == tuple(imgsz):
        return imgsz, None
    return fitted, (f"imgsz {list(imgsz)} is not a multiple of the model's stride {stride}: "
                    f"rounded up to {list(fitted)} (as Ultralytics does)")


def config_warnings(job: Job) -> list[str]:
    """Settings that run but may not do what was meant: ``runtime.threads`` beyond the machine's cores."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    out = []
    if job.runtime.threads is not None and job.runtime.threads > cores:
        out.append(f"runtime.threads={job.runtime.threads} is more than the {cores} CPU core(s) this process may use: "
                   "threads compete and timings suffer")
    return out
