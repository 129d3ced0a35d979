"""What the user actually chose, as opposed to what the default model group filled in.

The ``model`` group sets ``name`` and ``cfg`` for every run, so after composition a checkpoint run
``model.weights=runs/ghost/weights/best.pt`` still says ``name: baseline, cfg: yolov8n.yaml``. With
``model.weights`` set, ``without_group_defaults`` keeps ``model.name`` only when the user gave it (on
the command line, or through a group / experiment whose name is not its option's), else nulls it so the
label comes from the checkpoint; and keeps ``model.cfg`` (then compared with the checkpoint's own
architecture) only when the user chose a model group or ``model.cfg``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

DEFAULT_MODEL_GROUP = "baseline"  # config.yaml's default `model:` option


def override_keys(overrides: list[str]) -> set[str]:
    """``["model=ghost", "+x.y=1", "~z"]`` → ``{"model", "x.y", "z"}``."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides}


def without_group_defaults(cfg: DictConfig, overrides: list[str], choices: dict[str, Any]) -> None:
    """In place: drop the default group's ``model.name`` / ``model.cfg`` for a checkpoint run (see module doc)."""
    if not cfg.model.get("weights"):
        return
    keys = override_keys(overrides)
    group = choices.get("model")
    if "model.name" not in keys and cfg.model.name == group:
        cfg.model.name = None
    group_chosen = "model" in keys or (group is not None and group != DEFAULT_MODEL_GROUP)
    if cfg.model.kind == "ultralytics" and not group_chosen and "model.cfg" not in keys:
        cfg.model.cfg = None
