"""Parse ``device`` with Ultralytics' meaning and check it is really there.

``auto`` → first CUDA GPU when one exists, else ``cpu``; ``0``/``1`` → ``cuda:N``; ``cuda``/``cuda:N``;
``cpu``; ``mps``. Several GPUs at once (``0,1``) are refused: one job times one device.
"""

from __future__ import annotations

import re

import torch

from medbench.errors import DeviceError

_CUDA = re.compile(r"^(?:cuda:?)?(\d+)$")


def _available() -> str:
    """A short list of what this machine offers, for error messages."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return ", ".join(found)


def resolve_device(spec: str | int) -> torch.device:
    """Turn a user's device string into a ``torch.device`` that exists, or raise one-line ``DeviceError``."""
    text = str(spec).strip().lower().replace(" ", "")
    if text in ("auto", ""):
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if "," in text or text.startswith("["):
        raise DeviceError(
            f"device={spec} asks for several GPUs; a medbench job times exactly one device "
            f"(sweep them with -m device=0,1 instead)"
        )
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device=mps requested but MPS is not available here (available: {_available()})")
        return torch.device("mps")
    match = _CUDA.match(text) if text != "cuda" else _CUDA.match("0")
    if match is None:
        raise DeviceError(f"unknown device {spec!r}: use auto, cpu, 0, cuda:0, mps (available: {_available()})")
    index = int(match.group(1))
    if not torch.cuda.is_available():
        raise DeviceError(f"device={spec} requested but CUDA is not available on this machine (available: {_available()})")
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device={spec} requested but only {torch.cuda.device_count()} CUDA device(s) are visible (available: {_available()})"
        )
    return torch.device(f"cuda:{index}")


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` so that a host clock reads honest times (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
