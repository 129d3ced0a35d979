"""One timing per GPU at a time, across processes: never two GPU jobs timing on one GPU.

``exclusive_gpu(device)`` holds an exclusive lock (``filelock.FileLock``: an ``fcntl.flock`` on a lock
file named after the GPU) from right after the device is resolved until the job's last timed call:
model placement, input preloading, compilation and CUDA-graph capture are inside it, because they copy
data to the GPU and create contexts that would disturb another process's timed loop. Every medbench
process on the node (a sweep's isolated points, two sweeps started by hand, Slurm jobs sharing a node)
takes the same file for the same physical GPU, so a second one waits, and says so, instead of timing on
a busy GPU. The key is the GPU's UUID when torch/NVML know it (the same GPU under any
``CUDA_VISIBLE_DEVICES`` numbering, a MIG instance by its own ``MIG-`` UUID), else the physical index
and the hostname. The kernel drops a flock when its process dies, so a killed job never leaves a GPU
locked. On the CPU, and for MPS, it does nothing.

Lock files live in ``$MEDBENCH_LOCK_DIR``, by default ``/var/tmp/medbench-locks``: ``/tmp`` and
``/dev/shm`` are private per job under Slurm's ``job_container/tmpfs`` and per container, where two
jobs on one GPU would never see each other's lock. ``/var/tmp`` is the node's disk; in containers set
``MEDBENCH_LOCK_DIR`` to a directory every container on the node mounts. Where ``/var/tmp`` cannot be
written the system temp dir is used. The directory is made world-writable (sticky, like ``/tmp``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger("medbench")

LOCK_DIR_ENV = "MEDBENCH_LOCK_DIR"
DEFAULT_LOCK_DIR = "/var/tmp/medbench-locks"
_announced: set[Path] = set()


@dataclass(frozen=True)
class HeldLock:
    """What ``exclusive_lock`` holds: the key, its file, and how long the wait for it took."""

    key: str
    path: Path
    waited_s: float


def choose_lock_dir(env: str | None, default: str = DEFAULT_LOCK_DIR) -> Path:
    """``$MEDBENCH_LOCK_DIR`` when set; else ``default`` when its parent is writable; else the system temp dir."""
    if env:
        return Path(env)
    parent = Path(default).parent
    if Path(default).is_dir() or (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        return Path(default)
    return Path(tempfile.gettempdir()) / "medbench-locks"


def lock_dir() -> Path:
    """The directory every medbench process on this node shares (see the module docstring)."""
    return choose_lock_dir(os.environ.get(LOCK_DIR_ENV))


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(directory, 0o1777)  # like /tmp: anyone may add a lock file, nobody may delete others'
    except OSError:
        pass
    if directory not in _announced:
        _announced.add(directory)
        log.info("GPU locks in %s (set %s to change)", directory, LOCK_DIR_ENV)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


def _write_holder(path: Path) -> None:
    """Who holds it, for the message of the next one who waits (the lock file's content; never truncated
    by a waiter)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:  # another user's file without write access
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n".encode(), 0)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def exclusive_lock(key: str, directory: Path | str | None = None) -> Iterator[HeldLock]:
    """Hold the node-wide exclusive lock ``key`` for the ``with`` block; waits (and logs) while another holds it."""
    directory = Path(directory or lock_dir())
    _prepare_dir(directory)
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.lock"
    lock = FileLock(str(path), mode=0o666)
    start = time.monotonic()
    holder = _holder(path) if path.exists() else "another process"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("medbench: waiting for %s: held by %s (lock file %s)", key, holder, path)
        lock.acquire()
        log.warning("medbench: got %s after %.1f s", key, time.monotonic() - start)
    try:
        waited = time.monotonic() - start
        _write_holder(path)
        yield HeldLock(key, path, waited)
    finally:
        lock.release()


def gpu_lock_key(device: Any) -> str | None:
    """The lock key of a CUDA ``torch.device`` (``None`` for CPU/MPS): ``gpu-<UUID>`` or ``<host>-cuda<physical index>``."""
    import torch

    if getattr(device, "type", None) != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = _gpu_uuid(index)
    if uuid:
        return uuid.lower() if uuid.startswith("MIG-") else f"gpu-{uuid.lower().removeprefix('gpu-')}"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    return f"{socket.gethostname()}-cuda{physical}"


def _gpu_uuid(index: int) -> str | None:
    try:
        from medbench.run.nvml import torch_uuid

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
