"""TensorRT (CUDA only): the cached ONNX export (see onnxruntime.py) built into a serialized engine with
TensorRT's documented Python recipe (``Builder`` → ``OnnxParser`` → ``build_serialized_network``, FP16 flag for
fp16), cached too. Every I/O tensor is bound to a preallocated CUDA tensor with ``set_tensor_address`` and the
step is ``context.execute_async_v3(stream)`` on PyTorch's current stream, so the timing engine's CUDA events
bracket exactly the engine's work."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import torch

from medbench.backends.base import BackendError, BackendInfo, Context, Prepared, cycling
from medbench.backends.cache import cached_export, file_sha256
from medbench.backends.onnxruntime import INPUT, export_onnx
from medbench.run.timing import time_once


class TensorRtBackend:
    name = "tensorrt"
    extra = "tensorrt"
    precisions = {"cuda": ("fp32", "fp16")}

    def version(self) -> str:
        import tensorrt

        return tensorrt.__version__

    def prepare(self, module: torch.nn.Module, batches: Sequence[torch.Tensor], ctx: Context) -> Prepared:
        import tensorrt as trt

        onnx_path, onnx_ms, onnx_hit, opset = export_onnx(module, batches[0], ctx)
        logger = trt.Logger(trt.Logger.WARNING)

        def build(path: Path) -> None:
            builder = trt.Builder(logger)
            flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else \
                1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(onnx_path)):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise BackendError(f"TensorRT cannot parse the ONNX export: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(ctx.config.workspace_gb * (1 << 30)))
            if ctx.precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):  # strongly typed builds (TensorRT
                config.set_flag(trt.BuilderFlag.FP16)  # >= 11) take fp16 from the fp16 ONNX export itself
            engine = builder.build_serialized_network(network, config)
            if engine is None:
                raise BackendError("TensorRT failed to build an engine from the ONNX export (see the log)")
            path.write_bytes(bytes(engine))

        gpu = torch.cuda.get_device_properties(ctx.device)
        key = {**ctx.identity, "format": "tensorrt_engine", "onnx_sha256": file_sha256(onnx_path), "opset": opset,
               "tensorrt": trt.__version__, "gpu": gpu.name, "capability": f"{gpu.major}.{gpu.minor}",
               "workspace_gb": ctx.config.workspace_gb}
        path, build_ms, hit = cached_export(ctx.cache_dir, key, "model.engine", build)
        runtime = trt.Runtime(logger)
        engine, load_ms = time_once(lambda: runtime.deserialize_cuda_engine(path.read_bytes()), ctx.device)
        context = engine.create_execution_context()
        outputs: list[torch.Tensor] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
                out = torch.empty(tuple(engine.get_tensor_shape(name)), dtype=dtype, device=ctx.device)
                context.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
        stream = torch.cuda.current_stream(ctx.device).cuda_stream
        export_ms = None if (hit and onnx_hit) else (onnx_ms or 0.0) + (build_ms or 0.0)
        info = BackendInfo(self.name, self.version(), "tensorrt_engine", str(path), file_sha256(path), export_ms,
                           hit and onnx_hit, load_ms, {"workspace_gb": ctx.config.workspace_gb, "opset": opset,
                                                       "fp16": ctx.precision == "fp16"})

        def run(x: torch.Tensor) -> Any:
            context.set_tensor_address(INPUT, x.data_ptr())
            return context.execute_async_v3(stream)

        if len(batches) == 1:
            context.set_tensor_address(INPUT, batches[0].data_ptr())
            step = functools.partial(context.execute_async_v3, stream)
        else:
            step = cycling([functools.partial(run, b) for b in batches])

        def forward(x: torch.Tensor) -> list[torch.Tensor]:
            x = x.contiguous()
            run(x)
            torch.cuda.current_stream(ctx.device).synchronize()
            if len(batches) == 1:
                context.set_tensor_address(INPUT, batches[0].data_ptr())
            return [o.clone() for o in outputs]

        return Prepared(step=step, forward=forward, info=info, keepalive=[engine, context, outputs, list(batches)],
                        runtime=context)
