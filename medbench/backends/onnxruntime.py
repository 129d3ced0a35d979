"""ONNX Runtime: ``torch.onnx.export`` (TorchScript-based exporter, fixed shape, as Ultralytics' ONNX export does)
of the export graph, then an ``InferenceSession``.

On CPU the step is ``session.run(None, feed)`` with the feed dict (numpy views of the input batch) built once.
On CUDA the session shares PyTorch's current stream (``user_compute_stream``) and the step is
``session.run_with_iobinding(binding)`` with input and outputs bound to preallocated device tensors, ORT's
documented recipe for running without host copies.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medbench.backends.base import BackendError, BackendInfo, Context, Prepared, cycling
from medbench.backends.cache import cached_export, file_sha256
from medbench.backends.graph import ExportGraph
from medbench.run.timing import time_once

INPUT = "images"
NP_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


def default_opset() -> int:
    """Ultralytics' choice: 17 for torch < 2.4, else 18 (newer opsets lack some ORT CUDA kernels), capped at onnx's."""
    import onnx

    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return min(17 if (major, minor) < (2, 4) else 18, onnx.defs.onnx_opset_version())


def export_onnx(module: torch.nn.Module, example: torch.Tensor, ctx: Context) -> tuple[Path, float | None, bool, int]:
    """The cached ONNX file of ``module`` at the example's shape/dtype: ``(path, export_ms, hit, opset)``."""
    import onnx

    opset = ctx.config.opset or default_opset()
    graph = ExportGraph(module).eval()
    with torch.inference_mode(False), torch.no_grad():
        n_out = len(graph(example))
    names = [f"output{i}" for i in range(n_out)]

    def export(path: Path) -> None:
        # the TorchScript-based exporter, as Ultralytics uses (torch >= 2.9 defaults to the dynamo exporter)
        kwargs: dict[str, Any] = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(graph, example, str(path), opset_version=opset, input_names=[INPUT],
                              output_names=names, do_constant_folding=True, **kwargs)
        onnx.checker.check_model(str(path))

    key = {**ctx.identity, "format": "onnx", "opset": opset, "torch": torch.__version__, "onnx": onnx.__version__}
    path, export_ms, hit = cached_export(ctx.cache_dir, key, "model.onnx", export)
    return path, export_ms, hit, opset


class OnnxRuntimeBackend:
    name = "onnxruntime"
    extra = "onnx"
    precisions = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def prepare(self, module: torch.nn.Module, batches: Sequence[torch.Tensor], ctx: Context) -> Prepared:
        import onnxruntime as ort

        path, export_ms, hit, opset = export_onnx(module, batches[0], ctx)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = ctx.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = self._providers(ort, ctx.device)
        sess, load_ms = time_once(lambda: ort.InferenceSession(str(path), opts, providers=providers), ctx.device)
        if ctx.device.type == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendError("onnxruntime could not start its CUDA provider (install onnxruntime-gpu matching "
                               "this CUDA; see the README)")
        settings = {"providers": sess.get_providers(), "intra_op_threads": ctx.threads, "inter_op_threads": 1,
                    "execution_mode": "sequential", "graph_optimization": "all", "opset": opset}
        info = BackendInfo(self.name, self.version(), "onnx", str(path), file_sha256(path), export_ms, hit,
                           load_ms, settings)
        if ctx.device.type == "cuda":
            return self._cuda(sess, batches, ctx, info)
        feeds = [{INPUT: b.numpy()} for b in batches]
        step = cycling([functools.partial(sess.run, None, feed) for feed in feeds])

        def forward(x: torch.Tensor) -> list[torch.Tensor]:
            return [torch.from_numpy(o) for o in sess.run(None, {INPUT: x.numpy()})]

        return Prepared(step=step, forward=forward, info=info, keepalive=[feeds], runtime=sess)

    @staticmethod
    def _providers(ort: Any, device: torch.device) -> list[Any]:
        if device.type == "cpu":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendError("backend=onnxruntime on CUDA needs onnxruntime-gpu "
                               "(pip uninstall onnxruntime && pip install onnxruntime-gpu)")
        stream = torch.cuda.current_stream(device).cuda_stream
        return [("CUDAExecutionProvider", {"device_id": device.index or 0, "user_compute_stream": str(stream)}),
                "CPUExecutionProvider"]

    @staticmethod
    def _cuda(sess: Any, batches: Sequence[torch.Tensor], ctx: Context, info: BackendInfo) -> Prepared:
        """IO binding: inputs and outputs stay in preallocated CUDA tensors (ORT's documented recipe)."""
        index = ctx.device.index or 0
        # Output shapes/dtypes from one plain run (before timing), then fixed device buffers for them.
        probe = sess.run(None, {INPUT: batches[0].cpu().numpy()})
        outputs = [torch.empty(o.shape, dtype=torch.from_numpy(o).dtype, device=ctx.device) for o in probe]

        def bind(x: torch.Tensor) -> Any:
            binding = sess.io_binding()
            binding.bind_input(INPUT, "cuda", index, NP_DTYPES[x.dtype], tuple(x.shape), x.data_ptr())
            for meta, out in zip(sess.get_outputs(), outputs):
                binding.bind_output(meta.name, "cuda", index, NP_DTYPES[out.dtype], tuple(out.shape), out.data_ptr())
            return binding

        bindings = [bind(b) for b in batches]
        step = cycling([functools.partial(sess.run_with_iobinding, b) for b in bindings])

        def forward(x: torch.Tensor) -> list[torch.Tensor]:
            x = x.contiguous()
            sess.run_with_iobinding(bind(x))
            return [o.clone() for o in outputs]

        return Prepared(step=step, forward=forward, info=info, keepalive=[bindings, outputs, list(batches)], runtime=sess)
