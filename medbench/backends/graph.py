"""The graph every backend exports: the model's deployed outputs as a flat tuple of tensors.

An Ultralytics model in eval mode returns ``(deployed, extras)`` (``y`` or ``(y, proto)`` plus the raw head
maps); Ultralytics' exporter keeps only the deployed part, and so does ``ExportGraph``. Nothing is recomputed:
the forward is the module's own, only the returned tensors differ. ``restructure`` turns a backend's flat
outputs back into what the PyTorch module returns, so ``scope=end_to_end`` postprocesses both alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


def is_ultralytics(module: nn.Module) -> bool:
    return hasattr(module, "model") and hasattr(module, "stride") and hasattr(module, "fuse")


def _flatten(out: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (list, tuple)):
        return tuple(t for item in out for t in _flatten(item))
    if isinstance(out, dict):
        return tuple(t for item in out.values() for t in _flatten(item))
    return ()


def deployed_outputs(module: nn.Module, out: Any) -> tuple[torch.Tensor, ...]:
    """The tensors a deployment keeps from ``module(x)``'s output ``out``."""
    if is_ultralytics(module) and isinstance(out, (list, tuple)) and len(out) == 2:
        return _flatten(out[0])
    return _flatten(out)


class ExportGraph(nn.Module):
    """``module`` returning only its deployed outputs (what is traced / exported)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return deployed_outputs(self.module, self.module(x))


def restructure(module: nn.Module, outputs: Sequence[torch.Tensor]) -> Any:
    """A backend's flat outputs shaped like the PyTorch module's eval output (for the end-to-end postprocess)."""
    deployed = outputs[0] if len(outputs) == 1 else tuple(outputs)
    if is_ultralytics(module):
        return deployed, None  # (deployed, extras): postprocessing reads [0], as for the PyTorch module
    return deployed


def reset_shape_caches(module: nn.Module) -> None:
    """Forget anchors Ultralytics heads cached on an earlier forward (they may be inference-mode tensors,
    which tracing cannot use); the next forward rebuilds them for the export's input shape."""
    for m in module.modules():
        if hasattr(m, "anchors") and hasattr(m, "shape"):
            m.shape = None
