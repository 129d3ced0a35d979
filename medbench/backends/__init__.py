"""Deployment backends: time the model as deployed (TorchScript, ONNX Runtime, OpenVINO, TensorRT), not only eager.

``check_backend`` refuses what cannot run (unknown name, missing extra, device or precision the runtime lacks)
before anything is built; ``prepare_for_job`` exports the very module medbench would time (fused, placed, in the
job's precision) through the on-disk cache, loads it into the runtime, checks its outputs against the PyTorch
module on the same input and returns a ``Deployment`` (the record's ``backend`` block, the export/load times and the
prepared runtime) that the runner puts into the record. One module per runtime; ``pytorch`` is the module itself.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from typing import Any, Mapping, Sequence

import torch

from medbench.backends.base import Backend, BackendError, BackendInfo, Context, Deployment, Prepared, first_line
from medbench.backends.cache import default_cache_dir, state_sha256
from medbench.backends.check import compare_outputs
from medbench.backends.graph import deployed_outputs, reset_shape_caches, restructure
from medbench.config.schema import BACKENDS, Job
from medbench.results.record import BackendBlock
from medbench.errors import ConfigError, DeviceError, MedbenchError

__all__ = ["Backend", "BackendError", "BackendInfo", "Deployment", "Prepared", "check_backend", "get_backend",
           "prepare_for_job", "restructure"]
log = logging.getLogger("medbench")

_CLASSES = {"torchscript": "medbench.backends.torchscript:TorchScriptBackend",
            "onnxruntime": "medbench.backends.onnxruntime:OnnxRuntimeBackend",
            "openvino": "medbench.backends.openvino:OpenVinoBackend",
            "tensorrt": "medbench.backends.tensorrt:TensorRtBackend"}
_NEEDS = {"torchscript": (), "onnxruntime": ("onnx", "onnxruntime"), "openvino": ("openvino",),
          "tensorrt": ("onnx", "tensorrt")}  # import names each runtime needs (its extra installs them)
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: blocked on purpose (how tests take a runtime away)
    return importlib.util.find_spec(module) is not None


def _backend_class(name: str) -> type:
    if name not in _CLASSES:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)  # runtimes are imported only inside their methods


def get_backend(name: str) -> Backend:
    """The backend object for ``name``; one line naming the extra to install when its runtime is missing."""
    cls = _backend_class(name)
    missing = [mod for mod in _NEEDS[name] if not _installed(mod)]
    if missing:
        raise BackendError(f"backend={name} needs {', '.join(missing)}: pip install 'medbench[{_EXTRA[name]}]'")
    return cls()


def check_backend(job: Job, device: torch.device) -> None:
    """Refuse, in one line and before any model is built, a backend that cannot run this job: impossible
    device/precision/runtime combinations first, then a missing runtime (naming the extra to install)."""
    from medbench.run.runtime import compile_mode

    name = job.backend.name
    if job.backend.threads is not None and name in ("pytorch", "torchscript"):
        raise ConfigError(f"backend.threads sets the threads of an exported runtime (onnxruntime, openvino); "
                          f"backend={name} runs on torch's threads: use runtime.threads={job.backend.threads}")
    if name == "pytorch":
        return
    cls, rt = _backend_class(name), job.runtime
    if rt.cuda_graphs or compile_mode(rt.compile) is not None:
        raise ConfigError(f"runtime.compile / runtime.cuda_graphs apply to backend=pytorch only (not {name})")
    if rt.channels_last and name != "torchscript":
        raise ConfigError(f"runtime.channels_last applies to backend=pytorch/torchscript only (not {name})")
    allowed = cls.precisions.get(device.type)
    if allowed is None:
        where = " or ".join(cls.precisions)
        raise DeviceError(f"backend={name} runs on {where} only (this job runs on {device})")
    if rt.precision not in allowed:
        raise DeviceError(f"backend={name} cannot run precision={rt.precision} on {device.type} "
                          f"(it can: {', '.join(allowed)})")
    get_backend(name)


def _identity(model: Mapping[str, Any], job: Job, module: torch.nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """What an export depends on: the model (checkpoint sha256 or cfg, its architecture and exact weights as
    fused/cast), the input shape, precision, device type and the exporting library versions."""
    import ultralytics

    return {"weights_sha256": model.get("weights_sha256"),
            "cfg": None if model.get("weights_sha256") else model.get("cfg"),
            "arch_sha256": hashlib.sha256(repr(module).encode()).hexdigest(), "state_sha256": state_sha256(module),
            "input_shape": list(example.shape), "precision": job.runtime.precision, "device_type": example.device.type,
            "ultralytics": ultralytics.__version__}


def _pytorch_block() -> BackendBlock:
    return BackendBlock(name="pytorch", version=torch.__version__, format=None, file=None, file_sha256=None,
                        export_cache_hit=None, settings={"threads": torch.get_num_threads()}, outputs=None)


def prepare_for_job(job: Job, module: torch.nn.Module, batches: Sequence[torch.Tensor], device: torch.device,
                    dtype: torch.dtype, model: Mapping[str, Any]) -> Deployment:
    """Export + load + check for a non-PyTorch backend (``prepared`` None for pytorch): the record's ``backend``
    block and ``cold_start.export_ms / export_cache_hit / backend_load_ms``. ``model`` is the model's metadata
    (``weights_sha256``, ``cfg``: what the export cache keys on). fp32 outputs that differ make ``check()`` raise."""
    name = job.backend.name
    if name == "pytorch":
        return Deployment(_pytorch_block())
    backend = get_backend(name)
    ctx = Context(config=job.backend, device=device, dtype=dtype, precision=job.runtime.precision, imgsz=job.imgsz,
                  batch=job.batch, threads=job.backend.threads or torch.get_num_threads(),
                  cache_dir=default_cache_dir(job.backend.cache_dir),
                  identity=_identity(model, job, module, batches[0]))
    reset_shape_caches(module)
    log.info("backend %s: exporting/loading %s (cache %s)", name, job.model.name, ctx.cache_dir)
    try:
        with torch.inference_mode(False):
            prepared = backend.prepare(module, batches, ctx)
    except MedbenchError:
        raise
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:
        log.debug("backend %s failed", name, exc_info=True)
        raise BackendError(f"backend={name}: export or load failed: {first_line(exc)}") from exc
    info = prepared.info
    cold = {"export_ms": info.export_ms, "export_cache_hit": info.export_cache_hit, "backend_load_ms": info.load_ms}
    with torch.no_grad():
        ref = deployed_outputs(module, module(batches[0]))
        got = prepared.forward(batches[0])
    outputs = compare_outputs(ref, got, job.runtime.precision, job.backend.rtol, job.backend.atol)
    block = BackendBlock(name=info.name, version=info.version, format=info.format, file=info.file,
                         file_sha256=info.file_sha256, export_cache_hit=info.export_cache_hit, settings=info.settings,
                         outputs=outputs)
    mismatch = None
    if outputs["status"] != "match":
        mismatch = (f"outputs differ: {name} vs PyTorch max abs diff {outputs['max_abs_diff']:.3g} (rtol "
                    f"{outputs['rtol']:g}, atol {outputs['atol']:g}{'; ' + outputs['note'] if outputs['note'] else ''})")
    return Deployment(block, prepared, cold, mismatch, mismatch_fails=job.runtime.precision == "fp32")
