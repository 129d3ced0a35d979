"""The callable the timing engine times, for the job's scope and backend (``make_step``).

scope=forward: one forward of the module (or one call of a deployed runtime) on the next preloaded batch;
scope=end_to_end: read, preprocess, forward, postprocess per iteration (``medbench.inputs.end_to_end``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch

from medbench.backends import Prepared, restructure
from medbench.config.schema import Job
from medbench.run.parts import exported
from medbench.run.runtime import place_batch


class ForwardStep:
    """The timed call for scope=forward: one forward on the next input batch (cycling), nothing else."""

    def __init__(self, module: torch.nn.Module, batches: list[torch.Tensor]) -> None:
        self.module, self.batches = module, batches
        self._next = itertools.cycle(batches).__next__

    def __call__(self) -> Any:
        return self.module(self._next())


def step_batches(job: Job, inputs: Any, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """The batches a step feeds the model, laid out for it (end_to_end exports on a seeded batch of the job's
    shape)."""
    batches = [place_batch(b, job.runtime.channels_last and not exported(job.backend.name)) for b in inputs.batches]
    if job.backend.name != "pytorch" and not batches:
        from medbench.inputs.synthetic import synthetic_batch

        batches = [synthetic_batch(job.batch, job.imgsz, seed=job.seed, device=device, dtype=dtype)]
    return batches


def make_step(job: Job, module: torch.nn.Module, inputs: Any, device: torch.device, dtype: torch.dtype,
              prepared: Prepared | None = None) -> tuple[Callable[[], Any], Callable[[], None] | None]:
    """The callable the engine times, for the job's scope and backend, and what to reset after warm-up; with a
    ``prepared`` (non-PyTorch) backend the timed call is one call of that runtime."""
    if job.scope == "end_to_end":
        from medbench.inputs.end_to_end import EndToEndStep

        forward = None if prepared is None else (lambda x: restructure(module, prepared.forward(x)))
        channels_last = job.runtime.channels_last and not exported(job.backend.name)
        step = EndToEndStep(module, inputs.images, imgsz=job.imgsz, batch=job.batch, device=device, dtype=dtype,
                            task=job.model.task, channels_last=channels_last, forward=forward)
        return step, step.reset
    if prepared is not None:
        return prepared.step, None
    return ForwardStep(module, step_batches(job, inputs, device, dtype)), None
