"""Harness overhead: medbench's timing engine vs a bare timing loop over the same model and tensor.

Rounds are interleaved (bare, medbench, bare, medbench, ...) in one process so that machine noise
hits both sides alike; the figure of merit is the ratio of medians (target: within 3% on CPU, 1% on
GPU). A second part times a no-op callable to show the engine's fixed per-iteration cost.

    python benchmarks/overhead.py                       # CPU, yolov8n at 320, 5 rounds x 30 iterations
    python benchmarks/overhead.py --device 0 --imgsz 640 --rounds 10 --iters 100
    python benchmarks/overhead.py --backends onnxruntime,openvino   # deployment backends only (CPU)

For each deployment backend (``--backends``, default onnxruntime and openvino when installed) the model is
exported once through medbench's own backend code; the bare side is a hand-written loop over the runtime's
own call on the same exported file and input (``session.run(None, feed)``; ``request.infer()`` of a request
whose input is set), the medbench side is the timing engine over the step the runner would time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
from gpu_fidelity import bare_loop, bare_model, verdict  # noqa: E402  (the independent reference loop, beside this file)

from medbench.run.devices import resolve_device  # noqa: E402
from medbench.run.timing import measure  # noqa: E402


def interleaved(fn, device: torch.device, rounds: int, iters: int) -> tuple[list[float], list[float]]:
    bare, engine = [], []
    for _ in range(rounds):
        bare += bare_loop(fn, device, iters)
        engine += measure(fn, device=device, warmup=0, iters=iters).samples_ms
    return bare, engine


def bare_calls(call, args: tuple, n: int) -> list[float]:
    """The runtime's call, timed by hand: perf_counter around each call, nothing else."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call(*args)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def backend_overhead(name: str, model: torch.nn.Module, x: torch.Tensor, rounds: int, iters: int,
                     threads: int) -> tuple[float, float, list[float]]:
    """Median of a bare runtime loop vs medbench's timed step on the same exported file and input."""
    import tempfile
    from pathlib import Path

    from medbench.backends import get_backend
    from medbench.backends.base import Context
    from medbench.config.schema import BackendConfig

    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as cache:
        ctx = Context(BackendConfig(name=name), cpu, torch.float32, "fp32", tuple(x.shape[2:]), x.shape[0], threads,
                      Path(cache), {"benchmark": "overhead", "shape": list(x.shape)})
        prepared = get_backend(name).prepare(model, [x], ctx)
        if name == "onnxruntime":
            sess = prepared.runtime
            call, args = sess.run, (None, {sess.get_inputs()[0].name: x.numpy()})
        else:  # openvino: a request of the same compiled model, its input set once
            request = prepared.runtime.create_infer_request()
            request.set_input_tensor(__import__("openvino").Tensor(x.numpy(), shared_memory=True))
            call, args = request.infer, ()
        bare_calls(call, args, 5)
        bare_calls(prepared.step, (), 5)  # warm-up, both sides
        bare, engine, ratios = [], [], []
        for i in range(rounds):  # interleaved, the side that goes first alternating (no order effect)
            sides = [lambda: bare_calls(call, args, iters),
                     lambda: measure(prepared.step, device=cpu, warmup=0, iters=iters, pipelined_iters=0).samples_ms]
            got = [side() for side in (sides if i % 2 == 0 else sides[::-1])]
            b, e = got if i % 2 == 0 else got[::-1]
            bare += b
            engine += e
            ratios.append(statistics.median(e) / statistics.median(b))
    return statistics.median(bare), statistics.median(engine), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--backends", default="onnxruntime,openvino",
                        help="deployment backends to check on CPU (comma-separated; empty: none)")
    parser.add_argument("--skip-pytorch", action="store_true", help="only the deployment backends")
    args = parser.parse_args()

    device = resolve_device(args.device)
    model = bare_model(args.model, device, torch.float32)
    x = torch.rand(1, 3, args.imgsz, args.imgsz, device=device)
    print(f"device {device} · torch {torch.__version__} · {args.model} @ {args.imgsz} · "
          f"{args.rounds} interleaved rounds x {args.iters} iterations · threads {torch.get_num_threads()}")
    for name in [b for b in args.backends.split(",") if b]:
        mb, me, ratios = backend_overhead(name, model.cpu(), x.cpu(), args.rounds, args.iters,
                                          torch.get_num_threads())
        print(f"{name:<15} bare median {mb:9.3f} ms   medbench median {me:9.3f} ms   ratio {me / mb:.4f} "
              f"({verdict(me / mb, 0.03)}; per-round ratios {min(ratios):.3f}-{max(ratios):.3f})")
    if args.skip_pytorch:
        return
    model, x = model.to(device), x.to(device)
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
