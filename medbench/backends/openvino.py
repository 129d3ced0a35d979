"""OpenVINO: ``torch.jit.trace`` of the export graph, then ``openvino.convert_model`` (Ultralytics' recipe) and
``openvino.save_model`` (weights kept fp32) to an IR; compiled for the CPU with a latency hint, the job's threads
and ``backend.streams`` streams, precision pinned to f32 (OpenVINO would otherwise pick bf16 on CPUs that have it).
The step is ``infer()`` of an infer request whose input tensor was set before timing (one request per batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from medbench.backends.base import BackendInfo, Context, Prepared, cycling
from medbench.backends.cache import cached_export, file_sha256
from medbench.backends.graph import ExportGraph
from medbench.run.timing import time_once


def _plain(value: Any) -> Any:
    """An OpenVINO property value as JSON: ints stay ints, element types read ``f32``, enums their name."""
    if isinstance(value, (int, float, str, bool)):
        return value
    if hasattr(value, "to_string"):
        return value.to_string()
    text = str(value)
    return int(text) if text.isdigit() else text.rsplit(".", 1)[-1]


class OpenVinoBackend:
    name = "openvino"
    extra = "openvino"
    precisions = {"cpu": ("fp32",)}

    def version(self) -> str:
        import openvino

        return openvino.__version__

    def prepare(self, module: torch.nn.Module, batches: Sequence[torch.Tensor], ctx: Context) -> Prepared:
        import openvino as ov

        graph = ExportGraph(module).eval()
        example = batches[0]

        def export(path: Path) -> None:
            with torch.inference_mode(False), torch.no_grad():
                traced = torch.jit.trace(graph, example, strict=False, check_trace=False)
                model = ov.convert_model(traced, input=[list(example.shape)], example_input=example)
            ov.save_model(model, str(path), compress_to_fp16=False)

        key = {**ctx.identity, "format": "openvino_ir", "torch": torch.__version__, "openvino": ov.__version__}
        path, export_ms, hit = cached_export(ctx.cache_dir, key, "model.xml", export)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": ctx.threads,
                  "NUM_STREAMS": ctx.config.streams, "INFERENCE_PRECISION_HINT": "f32"}
        core = ov.Core()
        compiled, load_ms = time_once(lambda: core.compile_model(str(path), "CPU", config), ctx.device)
        settings = {k: _plain(compiled.get_property(k)) for k in config}  # what the runtime says it uses
        info = BackendInfo(self.name, self.version(), "openvino_ir", str(path), file_sha256(path, path.with_suffix(".bin")), export_ms,
                           hit, load_ms, settings)
        arrays = [b.numpy() for b in batches]
        requests = []
        for arr in arrays:
            request = compiled.create_infer_request()
            request.set_input_tensor(ov.Tensor(arr, shared_memory=True))
            requests.append(request)
        spare = compiled.create_infer_request()

        def forward(x: torch.Tensor) -> list[torch.Tensor]:
            result: Any = spare.infer({0: x.numpy()})
            return [torch.from_numpy(result[out].copy()) for out in compiled.outputs]

        return Prepared(step=cycling([r.infer for r in requests]), forward=forward, info=info,
                        keepalive=[arrays, requests], runtime=compiled)
