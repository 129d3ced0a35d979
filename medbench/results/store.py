"""Writing results: provenance and environment capture, the error block, and the one atomic writer.

Every file medbench writes (``result.json``, suite files, comparison tables, reports) goes through
``write_text_atomic``: a temp file in the same directory, fsynced and renamed into place, so a reader never
sees half a file, even if the writer is killed or the disk fills up. Reading is ``medbench.results.load``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from medbench.errors import MedbenchError
from medbench.text import first_line
from medbench.results.record import SCHEMA_VERSION, SUITE_KIND  # noqa: F401 (re-exported for writers)

RESULT_NAME = "result.json"


def utc_now() -> str:
    """UTC ISO-8601 timestamp with microseconds."""
    return datetime.now(timezone.utc).isoformat()


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# git reads config and attributes of the directory it is run in, which may name programs (core.fsmonitor, clean
# filters, hooks): run it with no user/system config, no hooks, no fsmonitor and no attributes (empty tree).
_GIT_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false",
             "-c", "protocol.allow=never", "--no-optional-locks")


def _git_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(), "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
            "GIT_ATTR_SOURCE": "4b825dc642cb6eb9a060e54bf8d69288fbee4904"}  # the empty tree: no filter= attributes


@lru_cache(maxsize=8)
def git_state(directory: str) -> dict[str, Any]:
    """Commit and dirty flag of the repository containing ``directory`` (nulls when it is none)."""
    def git(*args: str, config: tuple[str, ...] = ()) -> str | None:
        try:
            out = subprocess.run(["git", *_GIT_SAFE, *config, "-C", directory, *args], capture_output=True, text=True,
                                 timeout=10, env=_git_env(), stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None, "git_root": None}
    # the repo's own clean/smudge/process filters would run during status: neutralise each one it defines
    drivers = {n.rpartition(".")[0] for n in (git("config", "--name-only", "--get-regexp", r"^filter\.") or "").split()}
    neutral = tuple(a for d in sorted(drivers) for a in ("-c", f"{d}.clean=cat", "-c", f"{d}.smudge=cat", "-c", f"{d}.process="))
    status = git("status", "--porcelain", "--untracked-files=no", "--ignore-submodules", config=neutral)
    tracked = git("ls-files", "--error-unmatch", "--", "__init__.py") is not None  # for medbench_git: its own file
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None,
            "git_root": git("rev-parse", "--show-toplevel"), "tracks_init": tracked}


def _repo(state: dict[str, Any]) -> dict[str, Any] | None:
    """``{root, commit, dirty}`` of a git state, or None outside a repository."""
    if state["git_commit"] is None:
        return None
    return {"root": state["git_root"], "commit": state["git_commit"], "dirty": state["git_dirty"]}


def medbench_git() -> dict[str, Any] | None:
    """medbench's own source: the clone an editable install runs from (``{root, commit, dirty}``); None for an
    installed copy (site-packages is no clone, even inside a venv that lives in one: the package must be tracked)."""
    state = git_state(str(Path(__file__).resolve().parents[1]))
    return _repo(state) if state.get("tracks_init") else None


def cudnn_version_string(version: int | None) -> str | None:
    """torch's cuDNN integer as ``major.minor.patch``: from cuDNN 9 it is major*10000 + minor*100 + patch
    (92400 → ``9.24.0``), before that major*1000 + minor*100 + patch (8907 → ``8.9.7``)."""
    if not version:
        return None
    major, rest = divmod(version, 10000) if version >= 90000 else divmod(version, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def gpu_env(device: Any = None) -> dict[str, Any]:
    """GPU name/UUID of the timed ``device`` (None for a CPU/MPS job; torch's device 0 when not given),
    GPU count, CUDA/cuDNN versions and the driver (NVML)."""
    import torch

    from medbench.run.nvml import nvml_driver_version, torch_uuid

    has_cuda = torch.cuda.is_available()
    device = torch.device("cuda", 0) if device is None and has_cuda else device
    index = (device.index or 0) if has_cuda and getattr(device, "type", None) == "cuda" else None
    timed = index is not None and index < torch.cuda.device_count()  # a job that asked for a missing GPU: none
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "cudnn_version": cudnn_version_string(cudnn),
        "gpu_count": torch.cuda.device_count() if has_cuda else 0,
        "gpu_name": torch.cuda.get_device_name(index) if timed else None,
        "gpu_uuid": torch_uuid(index) if timed else None,
        "driver": nvml_driver_version() if has_cuda else None,
    }


@lru_cache(maxsize=1)
def _static_env() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "ultralytics": _version("ultralytics"),
        "medbench": _version("medbench"),
        "numpy": _version("numpy"),
    }


def collect_env(cwd: str | None = None, device: Any = None) -> dict[str, Any]:
    """The ``env`` block: software, hardware (the timed ``device``'s GPU), the git state of the working directory's
    repository (``workdir_git``) and of medbench's own source (``medbench_git``, an editable install from a clone)."""
    cwd = cwd or os.getcwd()
    workdir = git_state(cwd)
    return {**_static_env(), **gpu_env(device), "torch_threads": _torch_threads(),
            "git_commit": workdir["git_commit"], "git_dirty": workdir["git_dirty"],  # = workdir_git (kept for readers)
            "workdir_git": _repo(workdir), "medbench_git": medbench_git()}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def provenance() -> dict[str, Any]:
    """Where this run ran: host, pid, Slurm ids and the GPUs it was allowed to see."""
    env = os.environ
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv,
        "slurm_job_id": env.get("SLURM_JOB_ID"),
        "slurm_array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
        "slurm_array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
        "slurm_node": env.get("SLURMD_NODENAME"),
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
    }


def error_block(exc: BaseException) -> dict[str, Any]:
    """The ``error`` block: a type word, the one-line message, and (for bugs) the traceback."""
    name = type(exc).__name__
    kind = "oom" if "OutOfMemory" in name or isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) else getattr(exc, "kind", None) if isinstance(exc, MedbenchError) else None
    message = first_line(exc)
    block = {"type": kind or name, "exception": name, "message": message}
    if not isinstance(exc, MedbenchError):
        block["traceback"] = "".join(traceback.format_exception(exc)).strip()
    return block


def finite(obj: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file and ``os.replace``: the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


write_text_atomic = write_atomic  # the name the table writers use


def write_json_atomic(path: Path | str, data: Any) -> Path:
    """``data`` (a dict, or a pydantic model) as JSON, atomically; NaN/inf become null."""
    if hasattr(data, "to_json"):
        data = data.to_json()
    text = json.dumps(finite(data), indent=2, allow_nan=False, default=str)
    return write_atomic(path, text + "\n")
