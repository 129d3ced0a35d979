"""torchvision classification models by factory name (``resnet50``, ``vit_b_16``): the plain nn.Module kind.

Only the classification factories are offered: the detection/segmentation ones default to downloading a
pretrained backbone, and medbench never downloads weights. Random init unless ``weights`` names a ``.pt`` that
holds the whole module or its state_dict.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from medbench.errors import ModelError
from medbench.models.ultralytics_models import file_sha256, is_ultralytics_model, resolve_weights, torch_load
from medbench.text import first_line


def classification_factories() -> list[str]:
    """Names of torchvision's classification model factories (the top-level ``torchvision.models`` ones)."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(name: str, num_classes: int | None) -> nn.Module:
    """Random-init model from ``torchvision.models.get_model(name, weights=None)``; unknown names list close ones."""
    import torchvision.models

    known = classification_factories()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; e.g. {', '.join(known[:5])}"
        raise ModelError(f"unknown torchvision classification model {name!r}{hint}")
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    try:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except Exception as e:  # e.g. a num_classes the factory rejects
        raise ModelError(f"cannot build torchvision model {name!r} ({type(e).__name__}: {e})") from e


def load_torchvision_weights(name: str | None, weights: str, num_classes: int | None, *, trust: bool = False,
                              imports: tuple[str, ...] | list[str] = ()) -> tuple[nn.Module, Path, str]:
    """A saved torchvision model: the pickled module itself, or a state_dict loaded into the ``name`` factory.

    Read without running the file's code unless ``trust`` (``model.trust_weights``), as for Ultralytics."""
    from ultralytics.nn.tasks import guess_model_task

    path = resolve_weights(weights)
    obj = torch_load(path, trust=trust, imports=imports)
    if isinstance(obj, dict):  # an Ultralytics-style dict: the module under "model" (or "ema" before stripping)
        obj = next((obj[k] for k in ("model", "ema") if isinstance(obj.get(k), nn.Module)), obj)
    if isinstance(obj, nn.Module):
        if is_ultralytics_model(obj):
            raise ModelError(f"checkpoint {path} is an Ultralytics {guess_model_task(obj)} model, not a torchvision "
                             f"{name or 'classifier'}: use an Ultralytics model group (e.g. model=baseline model.weights=...)")
        return obj.float().eval(), path, file_sha256(path)
    if isinstance(obj, dict):
        state = obj.get("state_dict", obj.get("model", obj))
        if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
            if not name:
                raise ModelError(f"checkpoint {path} holds a state_dict; set model.cfg to its torchvision factory name")
            model = build_torchvision(name, num_classes)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise ModelError(f"checkpoint {path} does not fit torchvision {name} ({first_line(e)})") from e
            return model.float().eval(), path, file_sha256(path)
    raise ModelError(f"checkpoint {path} holds neither a model nor a state_dict ({type(obj).__name__})")


def output_classes(model: nn.Module) -> int | None:
    """Class count of a classifier: the out_features of its last Linear layer (fc, heads.head, classifier[-1])."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last.out_features if last is not None else None
