"""One timing per GPU at a time, across processes (SPEC §3, §11: never two GPU jobs timing on one GPU).

``exclusive_gpu(device)`` holds an exclusive ``fcntl.flock`` on a lock file named after the GPU for
as long as the timed section runs. Every medbench process on the host (a sweep's isolated points,
two sweeps started by hand, Slurm jobs sharing a node) takes the same file for the same physical GPU,
so a second one waits — and says so — instead of timing on a busy GPU. The key is the GPU's UUID when
torch/NVML know it (the same GPU under any ``CUDA_VISIBLE_DEVICES`` numbering), else the physical index
and the hostname. The lock dies with its process (the kernel drops a flock when the file is closed),
so a killed job never leaves a GPU locked. On the CPU, and for MPS, it does nothing.

Lock files live in ``$MEDBENCH_LOCK_DIR`` (default ``/tmp/medbench-locks``), shared by all users.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("medbench")

LOCK_DIR_ENV = "MEDBENCH_LOCK_DIR"
DEFAULT_LOCK_DIR = "/tmp/medbench-locks"


@dataclass(frozen=True)
class HeldLock:
    """What ``exclusive_lock`` holds: the key, its file, and how long the wait for it took."""

    key: str
    path: Path
    waited_s: float


def lock_dir() -> Path:
    """The directory every medbench process on this host shares (``$MEDBENCH_LOCK_DIR``)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """An fd on ``path`` (created world-writable so other users' jobs can lock it too) and whether it is writable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path.parent, 0o1777)  # like /tmp: anyone may add a lock file, nobody may delete others'
    except OSError:
        pass
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's file without write access: a read-only fd can flock too
        return os.open(path, os.O_RDONLY), False
    try:
        os.fchmod(fd, 0o666)
    except OSError:
        pass
    return fd, True


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def exclusive_lock(key: str, directory: Path | str | None = None) -> Iterator[HeldLock]:
    """Hold the host-wide exclusive lock ``key`` for the ``with`` block; waits (and logs) while another holds it."""
    path = Path(directory or lock_dir()) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.lock"
    fd, writable = _open_lock_file(path)
    try:
        start = time.monotonic()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("medbench: waiting for %s: held by %s (lock file %s)", key, _holder(path), path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.warning("medbench: got %s after %.1f s", key, time.monotonic() - start)
        waited = time.monotonic() - start
        if writable:  # who holds it, for the message of the next one who waits
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n".encode(), 0)
        yield HeldLock(key, path, waited)
    finally:
        os.close(fd)  # closing the fd releases the flock


def gpu_lock_key(device: Any) -> str | None:
    """The lock key of a CUDA ``torch.device`` (``None`` for CPU/MPS): ``gpu-<UUID>`` or ``<host>-cuda<physical index>``."""
    import torch

    if getattr(device, "type", None) != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = _gpu_uuid(index)
    if uuid:
        return f"gpu-{uuid.lower().removeprefix('gpu-')}"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    return f"{socket.gethostname()}-cuda{physical}"


def _gpu_uuid(index: int) -> str | None:
    try:
        from medbench.run.telemetry import torch_uuid

        return torch_uuid(index)
    except Exception:  # an old torch without .uuid, no telemetry module: fall back to the index
        try:
            import torch

            return str(torch.cuda.get_device_properties(index).uuid) or None
        except Exception:
            return None


@contextmanager
def exclusive_gpu(device: Any) -> Iterator[HeldLock | None]:
    """Hold ``device``'s GPU for the ``with`` block, so no other medbench process times on it meanwhile.

    Yields the held lock (its ``waited_s`` belongs in the record), or ``None`` on CPU/MPS (no lock).
    """
    key = gpu_lock_key(device)
    if key is None:
        yield None
        return
    with exclusive_lock(key) as held:
        yield held
