"""TorchScript: ``torch.jit.trace`` of the export graph (Ultralytics' recipe: ``strict=False``,
``check_trace=False``), saved, then loaded back with ``torch.jit.load`` as a deployment would. The step is one
call of the loaded ScriptModule on a batch already on the device."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Sequence

import torch

from medbench.backends.base import BackendInfo, Context, Prepared, cycling
from medbench.backends.cache import cached_export, file_sha256
from medbench.backends.graph import ExportGraph
from medbench.run.timing import time_once


class TorchScriptBackend:
    name = "torchscript"
    extra = None
    precisions = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}

    def version(self) -> str:
        return torch.__version__

    def prepare(self, module: torch.nn.Module, batches: Sequence[torch.Tensor], ctx: Context) -> Prepared:
        graph = ExportGraph(module).eval()

        def export(path: Path) -> None:
            with torch.inference_mode(False), torch.no_grad():
                traced = torch.jit.trace(graph, batches[0], strict=False, check_trace=False)
            traced.save(str(path))

        key = {**ctx.identity, "format": "torchscript", "torch": torch.__version__}
        path, export_ms, hit = cached_export(ctx.cache_dir, key, "model.torchscript", export)
        with warnings.catch_warnings():  # torch >= 2.9 calls jit.load deprecated: not actionable for a benchmark user
            warnings.simplefilter("ignore", FutureWarning)
            loaded, load_ms = time_once(lambda: torch.jit.load(str(path), map_location=ctx.device).eval(), ctx.device)
        info = BackendInfo(self.name, self.version(), "torchscript", str(path), file_sha256(path), export_ms, hit,
                           load_ms, {"threads": torch.get_num_threads()})
        step = cycling([functools.partial(loaded, b) for b in batches])
        return Prepared(step=step, forward=lambda x: list(loaded(x)), info=info, runtime=loaded)
