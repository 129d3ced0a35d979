"""Errors a user can cause. Each carries a one-line message; the entry points print it and exit non-zero.

Bugs are not MedbenchErrors: they keep their traceback (shown with HYDRA_FULL_ERROR=1).
"""

from __future__ import annotations


class MedbenchError(Exception):
    """Base class of user-facing errors: ``str(err)`` is one clear line."""

    kind = "error"


class ConfigError(MedbenchError):
    """A config value is out of range or of the wrong shape (``imgsz=-1``, ``batch=0``)."""

    kind = "config"


class DeviceError(MedbenchError):
    """The requested device does not exist or cannot do what was asked (``device=0`` without CUDA)."""

    kind = "device"


class ModelError(MedbenchError):
    """A model cannot be built or loaded (unknown model, missing weights, bad checkpoint)."""

    kind = "model"


class InputError(MedbenchError):
    """An input set cannot be built (empty image folder, missing data.yaml, unreadable image)."""

    kind = "input"


class ResultError(MedbenchError):
    """A result file is missing, truncated or not a medbench result."""

    kind = "result"


class OutputError(MedbenchError):
    """An output file cannot be written (disk full, read-only or missing directory, no permission)."""

    kind = "output"
