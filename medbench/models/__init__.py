"""The model zoo: turn a ``ModelConfig`` into an eval-mode CPU float32 module plus what the result JSON records.

``build_model`` → ``LoadedModel`` (module + provenance), ``count_params`` / ``compute_gflops`` on the model as
built, then ``prepare_for_inference`` fuses Conv+BN (Ultralytics only) right before timing. Counting comes first
because fusing folds BatchNorm parameters away. Nothing here times anything.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from medbench.errors import ModelError
from medbench.models.identity import checkpoint_label, group_mismatch
from medbench.models.modules import ECA, register_modules
from medbench.models.torchvision_models import build_torchvision, load_torchvision_weights, output_classes
from medbench.models.ultralytics_models import build_from_yaml, cfg_sha256, describe, is_ultralytics_model, load_weights
from medbench.config.schema import MODEL_KINDS, ModelConfig

__all__ = [
    "ECA",
    "GFLOPsWarning",
    "LoadedModel",
    "MODELS",
    "ModelCache",
    "build_model",
    "cached_gflops",
    "compute_gflops",
    "count_params",
    "prepare_for_inference",
    "register_modules",
]


class GFLOPsWarning(UserWarning):
    """GFLOPs could not be computed (Ultralytics' get_flops returned 0.0); the result records null."""


@dataclass
class LoadedModel:
    """A built/loaded model and its provenance. ``module`` is in eval mode, on CPU, float32, not fused, frozen."""

    module: nn.Module
    name: str  # ModelConfig.name, the label in tables
    kind: str  # "ultralytics" | "torchvision"
    task: str  # detect/segment/classify/pose/obb (the checkpoint's own task when weights are given)
    random_init: bool  # True when built from a YAML/factory without weights
    cfg: str | None  # YAML path/name or factory name actually used (None for a checkpoint)
    weights: str | None  # absolute checkpoint path
    weights_sha256: str | None
    num_classes: int | None
    class_names: dict[int, str] | None
    stride: int | None  # max stride (Ultralytics), None for torchvision
    params: int = 0  # count_params(module) as built, before any fusing
    label_source: str = "model.name"  # where ``name`` came from (medbench.models.identity.LABEL_SOURCES)
    warnings: list[str] = field(default_factory=list)  # e.g. the chosen group does not describe the checkpoint
    accuracy: dict[str, Any] | None = None  # validation metrics the checkpoint's training run recorded (models.accuracy)
    cfg_sha256: str | None = None  # random init from a YAML: the file's sha256


def count_params(module: nn.Module) -> int:
    """All parameters (trainable or not), as Ultralytics' model.info() counts them."""
    return sum(p.numel() for p in module.parameters())


def compute_gflops(module: nn.Module, imgsz: tuple[int, int]) -> float | None:
    """GFLOPs at the benchmark ``(h, w)`` by Ultralytics' own ``get_flops`` (thop), the number ``model.info()`` prints.

    ``get_flops`` returns 0.0 whenever profiling fails; a 0 in a table would read as "free", so that becomes None
    plus a ``GFLOPsWarning``.
    """
    from ultralytics.utils.torch_utils import get_flops

    flops = get_flops(module, [int(imgsz[0]), int(imgsz[1])])
    if not flops or not math.isfinite(flops) or flops <= 0:
        warnings.warn(
            f"GFLOPs unavailable for {type(module).__name__} at imgsz {tuple(imgsz)}: Ultralytics get_flops "
            "(thop) failed; recording null",
            GFLOPsWarning,
            stacklevel=2,
        )
        return None
    return float(flops)


_GFLOPS: dict[tuple, float | None] = {}


def cached_gflops(module: nn.Module, imgsz: tuple[int, int], key: tuple) -> float | None:
    """``compute_gflops`` once per process for each ``key`` (a ``ModelCache.key`` plus what else shapes the
    module, e.g. fused or not) and imgsz: the points of a sweep that share a model skip profiling it again."""
    full = (*key, int(imgsz[0]), int(imgsz[1]))
    if full not in _GFLOPS:
        _GFLOPS[full] = compute_gflops(module, imgsz)
    return _GFLOPS[full]


def prepare_for_inference(module: nn.Module, *, fuse: bool) -> tuple[nn.Module, bool]:
    """Fuse Conv+BN in place for Ultralytics models (``model.fuse()``, as Ultralytics' predictor does).

    Returns ``(module, fused)`` where ``fused`` says whether the module is fused now (a checkpoint saved fused
    reports True even with ``fuse=False``). torchvision models are never fused. Count params before calling this.
    """
    fused = False
    if is_ultralytics_model(module):
        if fuse:
            module = module.fuse(verbose=False)
        fused = bool(module.is_fused())
    return freeze(module), fused


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients (in place): how every timed model is run."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _freeze(module: nn.Module) -> nn.Module:
    return freeze(module.to("cpu").float())


def _build_ultralytics(spec: ModelConfig) -> dict[str, Any]:
    if spec.weights:
        module, path, sha, task, accuracy = load_weights(spec.weights, spec.task, trust=spec.trust_weights,
                                                         imports=spec.imports)
        out = {"module": module, "task": task, "random_init": False, "cfg": None, "weights": str(path), "weights_sha256": sha,
               "accuracy": accuracy,
               "warnings": group_mismatch(spec.cfg, spec.num_classes, module) if spec.cfg else []}
    else:
        module, cfg, task = build_from_yaml(spec.cfg, spec.task, spec.num_classes)
        out = {"module": module, "task": task, "random_init": True, "cfg": cfg, "weights": None, "weights_sha256": None,
               "cfg_sha256": cfg_sha256(cfg)}
    return {**out, **describe(module)}


def _build_torchvision(spec: ModelConfig) -> dict[str, Any]:
    # torchvision models here are classifiers whatever model.task says (its schema default is "detect").
    if spec.weights:
        module, path, sha = load_torchvision_weights(spec.cfg, spec.weights, spec.num_classes,
                                                     trust=spec.trust_weights, imports=spec.imports)
        out = {"random_init": False, "weights": str(path), "weights_sha256": sha}
    else:
        module = build_torchvision(spec.cfg, spec.num_classes)
        out = {"random_init": True, "weights": None, "weights_sha256": None}
    return {**out, "module": module, "task": "classify", "cfg": spec.cfg, "num_classes": output_classes(module),
            "class_names": None, "stride": None}


def build_model(spec: ModelConfig) -> LoadedModel:
    """Build (random init from ``cfg``) or load (``weights`` wins) the model a ``ModelConfig`` describes.

    User mistakes (unknown YAML or factory, missing/foreign checkpoint, task mismatch) raise one-line ModelErrors.
    """
    if spec.kind not in MODEL_KINDS:
        raise ModelError(f"model.kind must be one of {', '.join(MODEL_KINDS)}; got {spec.kind!r}")
    if not spec.weights and not spec.cfg:
        raise ModelError(f"model {spec.name!r} has neither model.cfg nor model.weights")
    register_modules(spec.imports)
    parts = _build_ultralytics(spec) if spec.kind == "ultralytics" else _build_torchvision(spec)
    module = _freeze(parts.pop("module"))
    name, source = checkpoint_label(spec.name, module, parts["weights"])
    return LoadedModel(module=module, name=name or _stem(spec.cfg), label_source=source, kind=spec.kind,
                       params=count_params(module), **parts)


def _stem(cfg: str | None) -> str:
    """Label of a random-init model without a name: its YAML's / factory's name (``yolo11n.yaml`` → yolo11n)."""
    return os.path.splitext(os.path.basename(str(cfg)))[0]


class ModelCache:
    """Models built in this process, handed out as deep copies: the points of a sweep that share a model
    (other imgsz, batch, precision...) skip parsing the YAML or unpickling the checkpoint again.

    A deep copy costs a fraction of a build and gives each job a pristine, unfused fp32 CPU module to fuse,
    cast and move. Keyed by everything that shapes the module, including the init seed and the checkpoint's
    mtime and size; least recently used out beyond ``capacity`` models.
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self.models: OrderedDict[tuple, LoadedModel] = OrderedDict()

    @staticmethod
    def key(spec: ModelConfig, seed: int) -> tuple:
        stat = None
        if spec.weights:
            try:
                st = os.stat(os.path.expanduser(spec.weights))
                stat = (st.st_mtime_ns, st.st_size)
            except OSError:
                stat = None  # build_model reports the missing file
        return (spec.kind, spec.cfg, spec.weights, spec.task, spec.num_classes, seed, stat, os.getcwd(),
                spec.trust_weights, tuple(spec.imports))

    def get(self, spec: ModelConfig, seed: int) -> tuple[LoadedModel, bool]:
        """``(model, from_cache)``: a fresh copy of the cached model, or a new build (seeded) that is cached."""
        key = self.key(spec, seed)
        if key in self.models:
            self.models.move_to_end(key)
            cached = self.models[key]
            name, source = checkpoint_label(spec.name, cached.module, cached.weights)
            return replace(cached, name=name or _stem(spec.cfg), label_source=source,
                           module=copy.deepcopy(cached.module)), True
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # random-init weights are the same in every run with this seed
            loaded = build_model(spec)
        self.models[key] = replace(loaded, module=copy.deepcopy(loaded.module))
        while len(self.models) > self.capacity:
            self.models.popitem(last=False)
        return loaded, False


MODELS = ModelCache()

register_modules()  # ``import medbench.models`` makes ECA known to Ultralytics' YAML parser (YOLO("...-eca.yaml"))
