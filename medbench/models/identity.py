"""What a checkpoint says it is: its label in tables and whether the chosen model group describes it.

A trained checkpoint's label comes from ``model.name`` when the user set it (the CLI passes ``name=None``
otherwise), else from the checkpoint's training run name (Ultralytics keeps its train args, ``name``
included, on the saved model), else from the directory above ``weights/`` (``runs/ghost/weights/best.pt``
→ ``ghost``), else from the file's stem. When the user chose a model group (``model=ghost``) its YAML is
compared with the architecture the checkpoint was built from: a different backbone/head/scale, or a class
count other than an explicit ``model.num_classes``, is a warning in the record and the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

LABEL_SOURCES = ("model.name", "train_args.name", "weights_dir", "file_name", "model_group")


def train_run_name(model: nn.Module) -> str | None:
    """The Ultralytics training run name (``train(name=...)``) stored with the model, if any."""
    args = getattr(model, "args", None)
    name = args.get("name") if isinstance(args, dict) else getattr(args, "name", None)
    return str(name) if name else None


def checkpoint_label(given: str | None, model: nn.Module | None, weights: str | None) -> tuple[str | None, str]:
    """``(label, where it came from)`` for a checkpoint; ``given`` wins, ``(given, "model.name")`` without weights."""
    if given or not weights:
        return given, "model.name" if given else "model_group"
    run = train_run_name(model) if model is not None else None
    if run:
        return run, "train_args.name"
    path = Path(weights)
    if path.parent.name == "weights" and path.parent.parent.name:
        return path.parent.parent.name, "weights_dir"
    return path.stem, "file_name"


def _architecture(d: dict[str, Any]) -> tuple:
    """The parts of an Ultralytics model dict that shape the network (scale picks depth/width from ``scales``)."""
    scale = d.get("scale")
    scales = d.get("scales") or {}
    return (repr(d.get("backbone")), repr(d.get("head")), repr(scales.get(scale)) if scale else
            (d.get("depth_multiple"), d.get("width_multiple")))


def group_mismatch(cfg: str, num_classes: int | None, model: nn.Module) -> list[str]:
    """Warnings when the chosen model group (its YAML ``cfg``, its ``num_classes``) does not describe ``model``."""
    from ultralytics.nn.tasks import yaml_model_load

    from medbench.models.ultralytics_models import resolve_cfg

    saved = getattr(model, "yaml", None)
    if not isinstance(saved, dict):
        return []
    out = []
    try:
        chosen = yaml_model_load(resolve_cfg(cfg))
    except Exception:  # the group's YAML cannot be read: nothing to compare against
        chosen = None
    saved_file = Path(str(saved.get("yaml_file") or "?")).name
    if chosen is not None and _architecture(chosen) != _architecture(saved):
        out.append(f"architecture mismatch: the model group's YAML is {Path(cfg).name} but the checkpoint was built "
                   f"from {saved_file} (the group does not describe the timed network)")
    nc = getattr(model, "nc", None)
    if num_classes is not None and nc is not None and int(nc) != int(num_classes):
        out.append(f"class count mismatch: model.num_classes is {num_classes} but the checkpoint has {nc}")
    return out
