"""The default input: one seeded random batch, needing no files."""

from __future__ import annotations

import torch


def synthetic_batch(
    batch: int, imgsz: tuple[int, int], *, seed: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """A uniform [0, 1) tensor of shape (batch, 3, h, w).

    Generated in float32 on the CPU with its own ``torch.Generator`` and only then cast and moved, so the
    same seed gives the same values on every device and precision, and the global RNG is left alone.
    """
    h, w = imgsz
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, 3, h, w), generator=gen, dtype=torch.float32)
    return x.to(device=device, dtype=dtype).contiguous()
