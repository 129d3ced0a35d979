"""Outputs match, or the run says so: a backend's outputs against the PyTorch module's on the same input.

Element-wise, with ``torch.allclose`` semantics: an output matches when every ``|got - ref| <= atol + rtol*|ref|``.
Defaults by precision (override with ``backend.rtol`` / ``backend.atol``):

- fp32: rtol 1e-3, atol 1e-4 — tight: a correct export differs by float rounding only (~1e-6 relative).
- fp16 / bf16: rtol 2e-2, atol 5e-3 (bf16: 5e-2 both) — half precision rounds at ~1e-3 and kernels accumulate
  in different orders, so a correct fp16 engine lands well inside this while a wrong graph does not.

``max_rel_diff`` is ``max |got - ref| / (|ref| + atol)``. A mismatch fails an fp32 run and is a warning in fp16/bf16.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

TOLERANCES = {"fp32": (1e-3, 1e-4), "fp16": (2e-2, 5e-3), "bf16": (5e-2, 5e-2)}  # (rtol, atol)


def compare_outputs(ref: Sequence[torch.Tensor], got: Sequence[torch.Tensor], precision: str,
                    rtol: float | None = None, atol: float | None = None) -> dict[str, Any]:
    """The record's ``backend.outputs`` block: differences, tolerance and ``status`` (match | outputs differ)."""
    d_rtol, d_atol = TOLERANCES[precision]
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    block: dict[str, Any] = {"compared": len(ref), "shapes": [list(t.shape) for t in ref], "rtol": rtol,
                             "atol": atol, "max_abs_diff": 0.0, "max_rel_diff": 0.0, "note": None}
    ok = len(ref) == len(got)
    if not ok:
        block["note"] = f"PyTorch gives {len(ref)} outputs, the backend {len(got)}"
    for a, b in zip(ref, got):
        a = a.detach().float().cpu()
        b = torch.as_tensor(b).detach().float().cpu()
        if a.shape != b.shape:
            ok, block["note"] = False, f"output shape {list(b.shape)} != PyTorch's {list(a.shape)}"
            continue
        diff = (a - b).abs()
        if not torch.isfinite(b).all() and torch.isfinite(a).all():
            ok, block["note"] = False, "the backend returned NaN/inf where PyTorch did not"
            diff = torch.nan_to_num(diff, nan=float("inf"))
        if diff.numel():
            block["max_abs_diff"] = max(block["max_abs_diff"], float(diff.max()))
            block["max_rel_diff"] = max(block["max_rel_diff"], float((diff / (a.abs() + atol)).max()))
            ok = ok and bool((diff <= atol + rtol * a.abs()).all())
    block["status"] = "match" if ok else "outputs differ"
    return block
