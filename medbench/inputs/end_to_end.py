"""``scope=end_to_end``: one callable iteration = read + preprocess + forward + postprocess, per stage timed.

The runner's timing engine measures the whole ``__call__``; this module only splits that time into
stages. On CUDA the device is synchronised at each stage boundary so that asynchronous kernels are
charged to the stage that launched them (this costs a little overlap, as in any staged profile).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from medbench.errors import InputError
from medbench.inputs.images import letterbox, read_image, to_tensor
from medbench.analysis.stats import latency_stats

try:  # Ultralytics >= 8.3.x moved NMS into utils.nms
    from ultralytics.utils.nms import non_max_suppression
except ImportError:  # pragma: no cover - older Ultralytics
    from ultralytics.utils.ops import non_max_suppression

STAGES = ("read", "preprocess", "forward", "postprocess")
NMS_TASKS = ("detect", "segment", "pose", "obb")
CONF_THRES, IOU_THRES, MAX_DET, TOPK = 0.25, 0.7, 300, 5  # Ultralytics predict defaults; top-5 like its Probs


def _postprocessor(model: torch.nn.Module, task: str) -> Callable[[Any], Any]:
    """The task's postprocessing as Ultralytics' predictors do it (NMS, or softmax + top-k)."""
    if task in NMS_TASKS:
        names = getattr(model, "names", None)
        nc = 0 if task == "detect" or not names else len(names)
        end2end = bool(getattr(model, "end2end", False))

        def nms(preds: Any) -> Any:
            preds = preds[0] if isinstance(preds, (list, tuple)) else preds
            return non_max_suppression(
                preds, CONF_THRES, IOU_THRES, max_det=MAX_DET, nc=nc, end2end=end2end, rotated=task == "obb"
            )

        return nms
    if task == "classify":

        def topk(preds: Any) -> Any:
            if isinstance(preds, (list, tuple)):  # Ultralytics Classify in eval: (probabilities, logits)
                probs = preds[0]
            else:  # a plain classifier returns logits
                probs = preds.softmax(-1)
            return probs.topk(min(TOPK, probs.shape[-1]), dim=-1)

        return topk
    raise InputError(f"scope=end_to_end does not know how to postprocess task {task!r}")


class EndToEndStep:
    """Callable doing one full iteration on the next ``batch`` images (cycling through ``images``):
    read + decode from disk, letterbox / normalise / to(device), model forward, postprocess
    (Ultralytics ``non_max_suppression`` for detect-like tasks; softmax + top-k for classify).

    Each stage's wall time (``time.perf_counter``, ``torch.cuda.synchronize(device)`` at stage
    boundaries on CUDA) is appended to ``stage_ms[name]``; stage sums ≈ the runner's total per call.
    Call it under ``torch.inference_mode()`` with the model in eval mode, like the forward scope.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        images: Sequence[Path],
        *,
        imgsz: tuple[int, int],
        batch: int,
        device: torch.device,
        dtype: torch.dtype,
        task: str,
        channels_last: bool = False,
        forward: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if not images:
            raise InputError("scope=end_to_end needs image inputs (input=assets|folder|dataset)")
        self.model, self.images, self.imgsz, self.batch = model, list(images), tuple(imgsz), batch
        self.device, self.dtype, self.task, self.channels_last = torch.device(device), dtype, task, channels_last
        self.postprocess = _postprocessor(model, task)
        self.forward = model if forward is None else forward  # a deployment backend's call (medbench.backends)
        self.position = 0  # index of the next image to read
        self.stage_ms: dict[str, list[float]] = {name: [] for name in STAGES}
        self.last_output: Any = None  # the postprocessed output of the latest call (keeps it alive, for checks)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _next_paths(self) -> list[Path]:
        n = len(self.images)
        paths = [self.images[(self.position + i) % n] for i in range(self.batch)]
        self.position = (self.position + self.batch) % n
        return paths

    def __call__(self) -> None:
        t0 = time.perf_counter()
        raw = [read_image(p) for p in self._next_paths()]
        t1 = time.perf_counter()
        x = to_tensor([letterbox(im, self.imgsz) for im in raw], device=self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self._sync()
        t2 = time.perf_counter()
        preds = self.forward(x)
        self._sync()
        t3 = time.perf_counter()
        self.last_output = self.postprocess(preds)
        self._sync()
        t4 = time.perf_counter()
        for name, (a, b) in zip(STAGES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
            self.stage_ms[name].append((b - a) * 1e3)

    def reset(self) -> None:
        """Forget the recorded stage times (called after warm-up)."""
        self.stage_ms = {name: [] for name in STAGES}

    def stage_stats(self) -> dict[str, dict[str, float]]:
        """{stage: {mean_ms, p50_ms, p95_ms}} over the recorded iterations (empty stages are left out)."""
        keep = ("mean_ms", "p50_ms", "p95_ms")
        return {name: {k: v for k, v in latency_stats(samples).items() if k in keep}
                for name, samples in self.stage_ms.items() if samples}
