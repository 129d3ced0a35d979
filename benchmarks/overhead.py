"""Harness overhead: medbench's timing engine vs a bare timing loop over the same model and tensor.

Rounds are interleaved (bare, medbench, bare, medbench, ...) in one process so that machine noise
hits both sides alike; the figure of merit is the ratio of medians (target: within 3% on CPU, 1% on
GPU). A second part times a no-op callable to show the engine's fixed per-iteration cost.

    python benchmarks/overhead.py                       # CPU, yolov8n at 320, 5 rounds x 30 iterations
    python benchmarks/overhead.py --device 0 --imgsz 640 --rounds 10 --iters 100
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
from gpu_fidelity import bare_loop, bare_model  # noqa: E402  (the independent reference loop, beside this file)

from medbench.run.devices import resolve_device  # noqa: E402
from medbench.run.timing import measure  # noqa: E402


def interleaved(fn, device: torch.device, rounds: int, iters: int) -> tuple[list[float], list[float]]:
    bare, engine = [], []
    for _ in range(rounds):
        bare += bare_loop(fn, device, iters)
        engine += measure(fn, device=device, warmup=0, iters=iters).samples_ms
    return bare, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()

    device = resolve_device(args.device)
    model = bare_model(args.model, device, torch.float32)
    x = torch.rand(1, 3, args.imgsz, args.imgsz, device=device)
    print(f"device {device} · torch {torch.__version__} · {args.model} @ {args.imgsz} · "
          f"{args.rounds} interleaved rounds x {args.iters} iterations · threads {torch.get_num_threads()}")
    with torch.inference_mode():
        bare_loop(lambda: model(x), device, 5)  # warm-up, shared by both sides
        bare, engine = interleaved(lambda: model(x), device, args.rounds, args.iters)
    mb, me = statistics.median(bare), statistics.median(engine)
    print(f"model forward   bare median {mb:9.3f} ms   medbench median {me:9.3f} ms   ratio {me / mb:.4f}")

    noop_bare, noop_engine = interleaved(lambda: None, torch.device("cpu"), args.rounds, 20000)
    nb, ne = statistics.median(noop_bare) * 1e6, statistics.median(noop_engine) * 1e6
    print(f"no-op callable  bare median {nb:9.1f} ns   medbench median {ne:9.1f} ns   "
          f"(fixed cost per iteration: {ne - nb:+.1f} ns)")


if __name__ == "__main__":
    main()
