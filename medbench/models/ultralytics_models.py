"""Ultralytics models: build one from a model YAML (random init) or load a trained ``.pt`` checkpoint.

Checkpoints are read by ``medbench.models.safe_load`` (``weights_only=True`` with an allow-list) rather than
Ultralytics' ``torch_safe_load``, which unpickles arbitrary code and pip-installs any module a checkpoint names
but the machine lacks — a benchmark must fail with one clear line instead (and runs offline). Every user-caused failure becomes a one-line ``ModelError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medbench.errors import ModelError
from medbench.models.modules import register_modules
from medbench.text import first_line

CFG_DIR = Path(__file__).resolve().parent / "cfg"  # medbench's own model YAMLs (the ECA variants)
YAML_SUFFIXES = (".yaml", ".yml")


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Mute Ultralytics' INFO lines while building: ClassificationModel prints a summary even with verbose=False."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _model_classes() -> dict[str, type[nn.Module]]:
    """Ultralytics task → the model class that builds it from a YAML."""
    from ultralytics.nn import tasks

    return {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "classify": tasks.ClassificationModel,
        "pose": tasks.PoseModel,
        "obb": tasks.OBBModel,
    }


def resolve_cfg(cfg: str) -> str:
    """Where a model YAML lives: the path as given (relative to CWD), then medbench/models/cfg/, then Ultralytics.

    Returns an absolute path for the first two; an Ultralytics name (``yolo11n.yaml``) is returned unchanged and
    left to Ultralytics, which maps scaled names (``yolov8n-ghost.yaml``) to its unscaled files.
    """
    if "://" in cfg:
        raise ModelError(f"model.cfg must be a local YAML or an Ultralytics model name, not a URL: {cfg}")
    if Path(cfg).suffix.lower() not in YAML_SUFFIXES:
        raise ModelError(f"model.cfg must be a model YAML, got {cfg!r} (a trained .pt goes in model.weights)")
    given = Path(cfg).expanduser()
    if given.is_file():
        return str(given.resolve())
    ours = CFG_DIR / cfg
    if ours.is_file():
        return str(ours)
    return cfg


def cfg_sha256(cfg: str | None) -> str | None:
    """sha256 of the YAML file a random-init model was built from: the file itself, or for an Ultralytics name the
    file Ultralytics reads (``yolov8n.yaml`` → its ``yolov8.yaml``; the scale letter stays in ``cfg``). None when
    there is no such file (a torchvision factory name)."""
    import re

    if not cfg or Path(cfg).suffix.lower() not in YAML_SUFFIXES:
        return None
    path = Path(resolve_cfg(cfg))
    if not path.is_file():
        from ultralytics.utils.checks import check_yaml

        unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", str(path))  # as ultralytics' yaml_model_load does
        try:
            path = Path(check_yaml(unified, hard=False) or check_yaml(str(path)))
        except Exception:  # not found: the build itself reports that
            return None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def build_from_yaml(cfg: str, task: str, num_classes: int | None) -> tuple[nn.Module, str, str]:
    """Random-init model from a YAML. Returns (model, cfg actually used, task of the YAML).

    The model class follows the YAML's head (Detect → DetectionModel, ...); a head that disagrees with ``model.task``
    is a config mistake and fails rather than being benchmarked under the wrong label.
    """
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    register_modules()
    resolved = resolve_cfg(cfg)
    try:
        d = yaml_model_load(resolved)
    except FileNotFoundError:
        raise ModelError(
            f"model cfg not found: {cfg} (looked in cwd {Path.cwd()}, in {CFG_DIR} and among Ultralytics' model YAMLs)"
        ) from None
    except Exception as e:  # unreadable YAML: the user's file
        raise ModelError(f"cannot read model cfg {resolved} ({first_line(e, with_type=True)})") from e
    yaml_task = guess_model_task(d) or task  # None when the head is not one Ultralytics recognises
    if task and yaml_task != task:
        raise ModelError(f"model cfg {cfg} is a {yaml_task} model but model.task is {task} (set model.task={yaml_task})")
    model_cls = _model_classes().get(yaml_task)
    if model_cls is None:
        raise ModelError(f"model cfg {cfg} is a {yaml_task} model; medbench builds {', '.join(_model_classes())}")
    try:
        with _quiet_ultralytics():
            model = model_cls(d, nc=num_classes, verbose=False)
    except KeyError as e:  # parse_model looks layer names up in ultralytics.nn.tasks' globals
        raise ModelError(f"model cfg {resolved} names an unknown layer {e} (medbench adds only ECA)") from e
    except Exception as e:
        raise ModelError(f"cannot build model from {resolved} ({first_line(e, with_type=True)})") from e
    return model, resolved, yaml_task


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, streamed so large checkpoints need no extra memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_weights(weights: str) -> Path:
    """Absolute path of an existing checkpoint file (``~`` expanded, relative paths from CWD)."""
    p = Path(weights).expanduser()
    p = p if p.is_absolute() else Path.cwd() / p
    if not p.exists():
        raise ModelError(f"weights file not found: {p} (cwd: {Path.cwd()})")
    if not p.is_file():
        raise ModelError(f"not a PyTorch checkpoint: {p} (it is a directory)")
    return p


def torch_load(path: Path, *, trust: bool = False, imports: tuple[str, ...] | list[str] = ()) -> Any:
    """Read a checkpoint without running its code unless ``trust`` (see ``medbench.models.safe_load``)."""
    from medbench.models.safe_load import load_checkpoint

    register_modules()
    return load_checkpoint(path, trust=trust, imports=imports)


def model_from_checkpoint(ckpt: Any, path: Path) -> nn.Module:
    """The nn.Module inside a loaded checkpoint: Ultralytics' dict (``ema`` preferred, else ``model``) or a bare module."""
    if isinstance(ckpt, torch.jit.ScriptModule):
        raise ModelError(f"not a PyTorch checkpoint: {path} (a TorchScript archive; give the original .pt)")
    if isinstance(ckpt, nn.Module):
        return ckpt
    if isinstance(ckpt, dict):
        for key in ("ema", "model"):
            if isinstance(ckpt.get(key), nn.Module):
                return ckpt[key]
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise ModelError(f"checkpoint {path} holds only a state_dict; medbench needs the pickled model (Ultralytics .pt)")
        raise ModelError(f"checkpoint {path} has no model: a dict without an nn.Module under 'ema' or 'model'")
    raise ModelError(f"not a PyTorch checkpoint: {path} (it holds a {type(ckpt).__name__}, not a model)")


def load_weights(weights: str, task: str | None, *, trust: bool = False,
                 imports: tuple[str, ...] | list[str] = ()) -> tuple[nn.Module, Path, str, str, dict[str, Any] | None]:
    """Load a trained checkpoint. Returns (float32 model in eval mode, absolute path, sha256, task of the model,
    the validation accuracy its training run recorded or None: ``medbench.models.accuracy``)."""
    from ultralytics.nn.tasks import guess_model_task

    from medbench.models.accuracy import from_checkpoint

    path = resolve_weights(weights)
    ckpt = torch_load(path, trust=trust, imports=imports)
    model = model_from_checkpoint(ckpt, path).float().eval()  # trainer saves half: cast back
    ckpt_task = guess_model_task(model)
    if task and ckpt_task != task:
        raise ModelError(f"checkpoint {path} is a {ckpt_task} model but model.task is {task}")
    return model, path, file_sha256(path), ckpt_task, from_checkpoint(ckpt, path)


def describe(model: nn.Module) -> dict[str, Any]:
    """Class count, class names and max stride as an Ultralytics model records them (None where absent)."""
    names = getattr(model, "names", None)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    nc = getattr(model, "nc", None)
    if nc is None and names:
        nc = len(names)
    stride = getattr(model, "stride", None)
    if isinstance(stride, torch.Tensor):
        stride = int(stride.max()) if stride.numel() else None
    elif stride is not None:
        stride = int(max(stride) if isinstance(stride, (list, tuple)) else stride)
    return {"num_classes": int(nc) if nc is not None else None, "class_names": names, "stride": stride}


def is_ultralytics_model(module: nn.Module) -> bool:
    from ultralytics.nn.tasks import BaseModel

    return isinstance(module, BaseModel)
