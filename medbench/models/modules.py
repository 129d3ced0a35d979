"""Layers that Ultralytics does not ship but medbench's ablation models use (ECA), and their registration.

Ultralytics' ``parse_model`` looks YAML module names up in the globals of ``ultralytics.nn.tasks``, so a custom
layer only has to be set there (``register_modules``). The class itself lives here, at a stable import path, so a
trained checkpoint that pickles ``medbench.models.modules.ECA`` loads in any process that has medbench installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["ECA", "eca_kernel_size", "register_modules", "CUSTOM_MODULES"]


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive 1-D kernel size: ``|log2(C)/gamma + b/gamma|`` made odd (Wang et al., CVPR 2020, eq. 12).

    Uses the reference implementation's rounding (truncate, then +1 if even), so C=64 -> 3 and C=256 -> 5.
    """
    if channels < 1:
        raise ValueError(f"ECA needs a positive channel count, got {channels}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention: global average pool -> 1-D conv across channels -> sigmoid -> rescale the input.

    Adds only ``k`` parameters (one shared 1-D kernel, no bias) and keeps the input shape, so it can be dropped in
    after any stage. In a YAML write ``[-1, 1, ECA, [c2]]``: ``parse_model`` resolves the string ``c2`` to its local
    variable, which at that point holds the previous layer's width-scaled output channels.
    """

    def __init__(self, c1: int, k_size: int | None = None, gamma: int = 2, b: int = 1) -> None:
        super().__init__()
        self.c1 = int(c1)
        self.k = int(k_size) if k_size else eca_kernel_size(self.c1, gamma, b)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=self.k, padding=self.k // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg_pool(x)  # (B, C, 1, 1)
        y = self.conv(y.squeeze(-1).transpose(-1, -2))  # channels become the 1-D sequence: (B, 1, C)
        y = self.sigmoid(y.transpose(-1, -2).unsqueeze(-1))  # back to (B, C, 1, 1)
        return x * y.expand_as(x)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, k={self.k}"


CUSTOM_MODULES: dict[str, type[nn.Module]] = {"ECA": ECA}


def register_modules(imports: Iterable[str] = ()) -> None:
    """Make medbench's layers (and the nn.Module classes of the ``model.imports`` modules) visible to Ultralytics'
    YAML parser (idempotent; cheap to call before every build/load). ``import medbench.models`` calls it."""
    import ultralytics.nn.tasks as tasks

    extra = {}
    if imports:
        from medbench.models.safe_load import user_module_classes

        extra = user_module_classes(imports)
    for name, cls in {**CUSTOM_MODULES, **extra}.items():
        if getattr(tasks, name, None) is not cls:
            setattr(tasks, name, cls)
