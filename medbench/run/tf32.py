"""TF32 for fp32 convolutions and matmuls: read the effective setting, set it only when asked, restore it.

PyTorch's defaults allow TF32 in cuDNN convolutions and not in cuBLAS matmuls; Ultralytics never changes
them, so medbench's default (``runtime.tf32_conv`` / ``tf32_matmul`` null) leaves them alone and a fp32
run times what the user's own ``predict()`` runs. ``runtime.tf32`` is a shorthand for both.

Torch 2.9 added a second API, ``fp32_precision`` ("tf32" / "ieee" / "none" = inherit) on
``torch.backends`` (generic), ``torch.backends.cudnn`` (cuda, all ops), ``torch.backends.cudnn.conv``
and ``torch.backends.cuda.matmul``. Once anything set it, the *legacy* getters
(``torch.backends.cudnn.allow_tf32``, ``torch.backends.cuda.matmul.allow_tf32``) may raise "mix of
the legacy and new APIs". So on such a torch medbench reads only the new API and resolves "none" the way
ATen does (op → backend "all" → generic: ``Context::float32Precision``), and

- sets convolutions through ``torch.backends.cudnn.conv.fp32_precision`` (ATen asks for the conv op by
  name, which never mixes APIs);
- sets matmuls through ``torch.backends.cuda.matmul.allow_tf32``, the setter that writes *both* the new
  ``fp32_precision`` and the legacy matmul precision: ATen's cuBLAS path (``Context::allowTF32CuBLAS``)
  checks that the two agree and raises otherwise, so writing only the new one would break every fp32
  matmul on a GPU.

Everything touched is restored from the raw values read before (``apply`` is a context manager). One
value cannot be read back: the legacy matmul precision, when a process mixed the two APIs so that
``torch.get_float32_matmul_precision()`` raises; then the new API's values are restored exactly and the
legacy one is left as the matmul setter left it (agreeing with the matmul setting medbench applied).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

# (name in the snapshot, object holding ``fp32_precision``) for the new API, resolved child → parent.
CONV_CHAIN = ("conv", "cudnn", "generic")
MATMUL_CHAIN = ("matmul", "cudnn", "generic")  # cudnn.fp32_precision is ATen's ("cuda", "all")


def _holders() -> dict[str, Any]:
    backends = torch.backends
    return {"generic": backends, "cudnn": backends.cudnn, "conv": getattr(backends.cudnn, "conv", None),
            "matmul": backends.cuda.matmul}


def has_fp32_precision_api() -> bool:
    """True on torch >= 2.9, where ``torch.backends.cudnn.conv.fp32_precision`` exists."""
    try:
        return isinstance(torch.backends.cudnn.conv.fp32_precision, str)
    except Exception:
        return False


def resolve(values: dict[str, str], chain: tuple[str, ...]) -> bool:
    """Whether TF32 is on for an op, from raw ``fp32_precision`` values: the first value that is not
    "none" along ``chain`` (op, backend, generic) decides; "tf32" means on, anything else (ieee, bf16,
    all "none") off — ATen's ``float32Precision`` for the CUDA backend."""
    for name in chain:
        value = values.get(name, "none")
        if value != "none":
            return value == "tf32"
    return False


def snapshot() -> dict[str, Any]:
    """The raw process state this module may change (never through a getter that can raise)."""
    if not has_fp32_precision_api():
        return {"api": "legacy", "conv": torch.backends.cudnn.allow_tf32,
                "matmul": torch.backends.cuda.matmul.allow_tf32}
    state: dict[str, Any] = {"api": "fp32_precision"}
    state.update({name: obj.fp32_precision for name, obj in _holders().items()})
    try:  # the legacy matmul precision ("highest"/"high"/"medium"); unreadable when the two APIs disagree
        state["matmul_legacy"] = torch.get_float32_matmul_precision()
    except RuntimeError:
        state["matmul_legacy"] = None
    with contextlib.suppress(AttributeError):
        state["mkldnn_matmul"] = torch.backends.mkldnn.matmul.fp32_precision
    return state


def effective(state: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"tf32_conv": bool, "tf32_matmul": bool, "tf32_api": "fp32_precision" | "legacy"}`` in effect now."""
    state = state or snapshot()
    if state["api"] == "legacy":
        return {"tf32_conv": bool(state["conv"]), "tf32_matmul": bool(state["matmul"]), "tf32_api": "legacy"}
    return {"tf32_conv": resolve(state, CONV_CHAIN), "tf32_matmul": resolve(state, MATMUL_CHAIN),
            "tf32_api": "fp32_precision"}


def requested(tf32: bool | None, tf32_conv: bool | None, tf32_matmul: bool | None) -> tuple[bool | None, bool | None]:
    """(conv, matmul) to set, None = leave alone; the specific keys win over the ``tf32`` shorthand."""
    return (tf32 if tf32_conv is None else tf32_conv), (tf32 if tf32_matmul is None else tf32_matmul)


def _set(conv: bool | None, matmul: bool | None, api: str) -> None:
    if conv is not None:
        if api == "legacy":
            torch.backends.cudnn.allow_tf32 = conv
        else:
            torch.backends.cudnn.conv.fp32_precision = "tf32" if conv else "ieee"
    if matmul is not None:
        torch.backends.cuda.matmul.allow_tf32 = matmul  # writes the legacy and the new matmul setting alike


def _restore(state: dict[str, Any]) -> None:
    if state["api"] == "legacy":
        torch.backends.cudnn.allow_tf32 = state["conv"]
        torch.backends.cuda.matmul.allow_tf32 = state["matmul"]
        return
    if state.get("matmul_legacy") is not None:
        torch.set_float32_matmul_precision(state["matmul_legacy"])  # also writes cuda/mkldnn matmul: reset below
    for name, obj in _holders().items():
        if obj is not None and obj.fp32_precision != state[name]:
            obj.fp32_precision = state[name]
    if "mkldnn_matmul" in state and torch.backends.mkldnn.matmul.fp32_precision != state["mkldnn_matmul"]:
        torch.backends.mkldnn.matmul.fp32_precision = state["mkldnn_matmul"]


@contextlib.contextmanager
def apply(tf32: bool | None = None, tf32_conv: bool | None = None,
          tf32_matmul: bool | None = None) -> Iterator[dict[str, Any]]:
    """Set what was asked (nothing by default) for the ``with`` block; yields the effective values
    plus ``tf32_requested`` (what the config asked for)."""
    state = snapshot()
    conv, matmul = requested(tf32, tf32_conv, tf32_matmul)
    try:
        _set(conv, matmul, state["api"])
        yield {**effective(), "tf32_requested": {"tf32": tf32, "tf32_conv": tf32_conv, "tf32_matmul": tf32_matmul}}
    finally:
        if conv is not None or matmul is not None:
            _restore(state)
