"""How much does the thread count add to the noise of a CPU timing? (why the gate's workflow uses one thread)

One process, one model (yolov8n built from its YAML, fused, random init, seeded input), blocks of ``--block``
timed forwards alternating between ``torch.set_num_threads(1)`` and ``(2)`` (the order flips every block, so drift
hits both alike). For each thread count: the median of the block medians and the standard deviation of the log
ratio of consecutive block medians — how far a run's median moves from one second to the next. On a shared host
an op split over two threads waits for the slower thread, so a neighbour on either core stalls every op.

Not a test: the figures depend on the load of the machine (the load average is printed).

    python benchmarks/thread_noise.py                         # 30 blocks of 100 forwards, imgsz 160 (~1.5 min)
    python benchmarks/thread_noise.py --blocks 10 --block 30 --imgsz 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch


def block(model: torch.nn.Module, x: torch.Tensor, n: int) -> float:
    """Median of ``n`` timed forwards (after 3 untimed), in ms."""
    for _ in range(3):
        model(x)
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        model(x)
        out[i] = time.perf_counter() - t0
    return float(np.median(out)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=30, help="blocks per thread count (default: 30)")
    parser.add_argument("--block", type=int, default=100, help="timed forwards per block (default: 100)")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False).eval().fuse(verbose=False)
    x = torch.rand(1, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(0))
    medians: dict[int, list[float]] = {t: [] for t in args.threads}
    load = os.getloadavg()[0]
    with torch.inference_mode():
        for t in args.threads:  # warm-up at every thread count
            torch.set_num_threads(t)
            block(model, x, 20)
        for b in range(args.blocks):
            for t in args.threads if b % 2 == 0 else args.threads[::-1]:
                torch.set_num_threads(t)
                medians[t].append(block(model, x, args.block))
    print(f"yolov8n imgsz {args.imgsz}, {args.blocks} blocks of {args.block} forwards per thread count, "
          f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    for t, m in medians.items():
        d = np.diff(np.log(m))
        robust = 1.4826 * float(np.median(np.abs(d - np.median(d))))
        print(f"threads={t}: median {np.median(m):.2f} ms; block-to-block sd {100 * d.std(ddof=1):.1f}% "
              f"(robust {100 * robust:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
