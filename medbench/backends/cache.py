"""The on-disk export cache: one directory per (model identity, shape, precision, format + options, versions).

A hit reuses the exported file; a miss exports into a temporary directory beside the entry and renames it into
place, so a reader never sees half an export and two processes exporting the same key both end up with one
complete entry. ``key.json`` in each entry holds the full key, for humans and for checking.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

ENV_VAR = "MEDBENCH_CACHE_DIR"
RECIPE = 1  # bump when medbench changes how it exports (invalidates every entry)


def default_cache_dir(configured: str | None) -> Path:
    """``backend.cache_dir``, else ``$MEDBENCH_CACHE_DIR``, else ``~/.cache/medbench/exports``."""
    raw = configured or os.environ.get(ENV_VAR) or "~/.cache/medbench/exports"
    return Path(raw).expanduser().resolve()


def file_sha256(*paths: Path) -> str:
    """sha256 of a file's bytes, or of several files' bytes in turn (an OpenVINO IR is .xml + .bin)."""
    digest = hashlib.sha256()
    for f in paths:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 over the module's state dict (names, dtypes, shapes, values): the weights as they will be exported."""
    digest = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_export(cache_dir: Path, key: dict[str, Any], filename: str,
                  export: Callable[[Path], None]) -> tuple[Path, float | None, bool]:
    """``(path, export_ms, hit)``: the cached file for ``key``, exporting it with ``export(path)`` on a miss."""
    key = {**key, "recipe": RECIPE}
    entry = cache_dir / str(key["format"]) / key_hash(key)
    target = entry / filename
    if target.exists() and (entry / "key.json").exists():
        return target, None, True
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent if entry.parent.exists()
                                else _mkdir(entry.parent)))
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():  # tracer / legacy-exporter chatter: not actionable for a benchmark user
            warnings.simplefilter("ignore")
            export(tmp / filename)
        export_ms = (time.perf_counter() - start) * 1e3
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True, default=str))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished the same export first: use its entry
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, export_ms, False


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
