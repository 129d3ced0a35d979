"""GPU fidelity: does medbench measure what a careful hand-written CUDA-event loop measures?

    python benchmarks/gpu_fidelity.py --device 0 [--rounds 5]          # on a GPU machine
    python benchmarks/gpu_fidelity.py --device cpu --imgsz 128 --iters 20   # CPU smoke (parts 1, 2)

Prints, for the given device:
1. medbench's median vs a bare loop over the same model and tensor, rounds interleaved (alternating
   which side goes first) so machine drift hits both alike. The bare loop is written here, not
   imported: an event pair around each forward and a synchronize (perf_counter on CPU).
   Target: ratio of medians within 1%.
2. Two identical full medbench runs (``run_job``: build, place, warm up, time) and the ratio of
   their medians. Target: within 2%.
3. yolov8n at --imgsz, batch 1 and 8, fp32 vs fp16, with and without CUDA graphs, through
   ``run_job``: p50 latency, fps_p50, fps_pipelined, peak memory, throttled flag, and for eager rows
   the p50 of an independent bare loop over the same model built the same way. On CPU the
   fp16 and CUDA-graph rows are skipped (they need CUDA).
4. medbench's default fp32 run vs Ultralytics' own ``predict()`` on the same model YAML and size
   (``speed["inference"]``: Ultralytics' host timer with a sync), rounds interleaved: the default must
   time what a user's ``predict()`` runs (same TF32 settings; medbench leaves PyTorch's alone).

TF32 is the same on both sides of every comparison: medbench's jobs here leave PyTorch's settings as
they are, and ``--tf32 on|off`` sets them for the whole process (bare loops, ``predict()`` and
medbench alike); ``--tf32 leave`` (default) keeps PyTorch's defaults (convolutions TF32, matmuls not).
The header prints the effective values.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

from medbench.run import tf32  # noqa: E402
from medbench.run.devices import resolve_device  # noqa: E402
from medbench.models import build_model, prepare_for_inference  # noqa: E402
from medbench.results.store import gpu_env  # noqa: E402
from medbench.run.runner import run_job  # noqa: E402
from medbench.config.schema import InputConfig, ItersConfig, Job, ModelConfig, RuntimeConfig  # noqa: E402
from medbench.run.timing import measure  # noqa: E402

TARGET_ENGINE = 0.01  # part 1: |medbench / bare - 1|
TARGET_REPEAT = 0.02  # part 2: |run B / run A - 1|


# ------------------------------------------------------------------ the independent reference


def bare_loop(fn, device: torch.device, n: int) -> list[float]:
    """What a careful person writes by hand: one event pair (created, and recorded once, before the loop: torch
    creates the CUDA event at its first record) around each call + synchronize (CPU: perf_counter)."""
    out = []
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        end.record()
        torch.cuda.synchronize(device)
        for _ in range(n):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            out.append(start.elapsed_time(end))
        return out
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bare_model(cfg: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    loaded = build_model(ModelConfig(name="fidelity", cfg=cfg))
    model, _ = prepare_for_inference(loaded.module, fuse=True)
    return model.to(device=device, dtype=dtype).eval()


# ------------------------------------------------------------------ helpers


def verdict(ratio: float, target: float) -> str:
    return f"{'within' if abs(ratio - 1) <= target else 'OUTSIDE'} the {target:.0%} target"


def job_for(args, device: str, batch: int, precision: str = "fp32", cuda_graphs: bool = False) -> Job:
    return Job(device=device, imgsz=(args.imgsz, args.imgsz), batch=batch, seed=42, scope="forward",
               model=ModelConfig(name="yolov8n", cfg=args.model), input=InputConfig(kind="synthetic"),
               iters=ItersConfig(warmup=args.warmup, iters=args.iters * 2),
               runtime=RuntimeConfig(precision=precision, cuda_graphs=cuda_graphs))


def run(job: Job, list_dir: Path) -> dict:
    record = run_job(job, list_dir=list_dir)
    if record["status"] != "ok":
        raise SystemExit(f"medbench run failed: {record['error']['message']}")
    return record


def header(device: torch.device) -> None:
    env = gpu_env(device)
    print(f"torch {torch.__version__} · CUDA {env['cuda']} · cuDNN {env['cudnn']} · python {platform.python_version()}")
    if device.type == "cuda":
        idx = device.index or 0
        print(f"GPU {torch.cuda.get_device_name(idx)} · driver {env['driver']} · uuid {env['gpu_uuid']} "
              f"(device {device})")
    else:
        print(f"CPU {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
              f"torch threads {torch.get_num_threads()}")
    eff = tf32.effective()
    print(f"TF32 (both sides): conv {eff['tf32_conv']} · matmul {eff['tf32_matmul']} (via {eff['tf32_api']} API)")


# ------------------------------------------------------------------ the three parts


def part_engine(args, device: torch.device) -> None:
    model = bare_model(args.model, device, torch.float32)
    x = torch.rand(1, 3, args.imgsz, args.imgsz, device=device)
    fn = lambda: model(x)  # noqa: E731
    bare, engine = [], []
    with torch.inference_mode():
        bare_loop(fn, device, args.warmup)  # shared warm-up
        for r in range(args.rounds):
            sides = [("bare", bare), ("medbench", engine)]
            for name, sink in sides if r % 2 == 0 else sides[::-1]:
                if name == "bare":
                    sink += bare_loop(fn, device, args.iters)
                else:
                    sink += measure(fn, device=device, warmup=0, iters=args.iters, pipelined_iters=1).samples_ms
    mb, me = statistics.median(bare), statistics.median(engine)
    print(f"\n(1) engine vs bare loop: {args.model} @ {args.imgsz}, batch 1, fp32, "
          f"{args.rounds} interleaved rounds x {args.iters} iterations each")
    print(f"    bare median {mb:.4f} ms · medbench median {me:.4f} ms · ratio {me / mb:.4f} "
          f"({verdict(me / mb, TARGET_ENGINE)})")


def part_repeat(args, device: torch.device, list_dir: Path) -> None:
    a = run(job_for(args, str(device), 1), list_dir)
    b = run(job_for(args, str(device), 1), list_dir)
    ma, mb = a["latency"]["median_ms"], b["latency"]["median_ms"]
    print(f"\n(2) two identical medbench runs ({args.model} @ {args.imgsz}, batch 1, fp32, "
          f"{args.warmup} warm-up + {args.iters * 2} iterations each)")
    print(f"    run A median {ma:.4f} ms · run B median {mb:.4f} ms · ratio {mb / ma:.4f} "
          f"({verdict(mb / ma, TARGET_REPEAT)}) · throttled A/B {a['telemetry']['throttled']}/"
          f"{b['telemetry']['throttled']} · loaded A/B {a['telemetry']['loaded']}/{b['telemetry']['loaded']}")


def bare_p50(args, device: torch.device, batch: int, precision: str) -> float:
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    model = bare_model(args.model, device, dtype)
    x = torch.rand(batch, 3, args.imgsz, args.imgsz, device=device, dtype=dtype)
    with torch.inference_mode():
        bare_loop(lambda: model(x), device, args.warmup)
        return statistics.median(bare_loop(lambda: model(x), device, args.iters * 2))


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def part_table(args, device: torch.device, list_dir: Path) -> None:
    print(f"\n(3) {args.model} @ {args.imgsz}: fp32 vs fp16, eager vs CUDA graphs "
          f"({args.warmup} warm-up + {args.iters * 2} iterations)")
    print(f"    {'batch':>5} {'prec':>5} {'graphs':>6} {'p50 ms':>9} {'bare p50':>9} {'fps_p50':>9} "
          f"{'fps_pipe':>9} {'peak MB':>8} {'nvml MB':>8} {'throttled':>9}")
    for batch in args.batches:
        for precision in ("fp32", "fp16"):
            for graphs in (False, True):
                if device.type != "cuda" and (precision == "fp16" or graphs):
                    print(f"    {batch:>5} {precision:>5} {str(graphs):>6}   skipped: needs a CUDA device")
                    continue
                rec = run(job_for(args, str(device), batch, precision, graphs), list_dir)
                ref = None if graphs else bare_p50(args, device, batch, precision)
                lat, thr, mem = rec["latency"], rec["throughput"], rec["memory"]
                print(f"    {batch:>5} {precision:>5} {str(graphs):>6} {lat['p50_ms']:>9.3f} {_fmt(ref, '.3f'):>9} "
                      f"{thr['fps_p50']:>9.1f} {_fmt(thr['fps_pipelined'], '.1f'):>9} "
                      f"{_fmt(mem['peak_gpu_mem_MB'], '.0f'):>8} {_fmt(mem.get('nvml_used_MB'), '.0f'):>8} "
                      f"{str(rec['telemetry']['throttled']):>9}")


def part_ultralytics(args, device: torch.device, list_dir: Path) -> None:
    import numpy as np
    from ultralytics import YOLO

    yolo = YOLO(args.model)  # random init from the YAML, like medbench's model
    image = (np.random.default_rng(0).random((args.imgsz, args.imgsz, 3)) * 255).astype(np.uint8)
    kw = {"imgsz": args.imgsz, "device": "cpu" if device.type == "cpu" else str(device.index or 0),
          "verbose": False}
    for _ in range(args.warmup):
        yolo.predict(image, **kw)
    ours, theirs, host = [], [], []
    for r in range(args.rounds):
        for side in ("ultralytics", "medbench") if r % 2 == 0 else ("medbench", "ultralytics"):
            if side == "ultralytics":
                theirs += [yolo.predict(image, **kw)[0].speed["inference"] for _ in range(args.iters)]
            else:
                rec = run(job_for(args, str(device), 1), list_dir)
                ours.append(rec["latency"]["p50_ms"])
                host.append(rec["telemetry"].get("host_median_ms") or rec["latency"]["p50_ms"])
    mt, mo, mh = statistics.median(theirs), statistics.median(ours), statistics.median(host)
    print(f"\n(4) medbench default fp32 vs Ultralytics predict(): {args.model} @ {args.imgsz}, batch 1, "
          f"{args.rounds} interleaved rounds")
    print(f"    predict inference median {mt:.4f} ms · medbench p50 {mo:.4f} ms (host {mh:.4f} ms) · "
          f"ratio medbench/predict {mo / mt:.4f} (host {mh / mt:.4f}; predict's inference figure is the "
          f"model call with a sync, pre- and postprocessing apart)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="0", help="0, cuda:1, cpu (Ultralytics meaning)")
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds in part 1")
    parser.add_argument("--iters", type=int, default=100, help="iterations per round (runs: 2x)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 8])
    parser.add_argument("--parts", default="1234", help="which parts to run, e.g. 12")
    parser.add_argument("--tf32", choices=("leave", "on", "off"), default="leave",
                        help="TF32 for the whole process, both sides alike (leave: PyTorch's defaults)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with tf32.apply(tf32={"leave": None, "on": True, "off": False}[args.tf32]), TemporaryDirectory() as tmp:
        header(device)
        if "1" in args.parts:
            part_engine(args, device)
        if "2" in args.parts:
            part_repeat(args, device, Path(tmp))
        if "3" in args.parts:
            part_table(args, device, Path(tmp))
        if "4" in args.parts:
            part_ultralytics(args, device, Path(tmp))


if __name__ == "__main__":
    main()
