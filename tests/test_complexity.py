"""GFLOPs as timed: ``gflops`` of the fused model (what Ultralytics' fused summary prints), ``gflops_unfused`` beside it."""

from __future__ import annotations

import pytest

from conftest import QUICK
from medbench.config.schema import to_job
from medbench.run.runner import run_job


def _ultralytics_gflops(cfg: str, imgsz: int, fuse: bool) -> float:
    from ultralytics import YOLO

    model = YOLO(cfg)
    if fuse:
        model.fuse()
    return model.info(imgsz=imgsz, verbose=True)[3]  # (layers, params, gradients, GFLOPs)


@pytest.mark.parametrize("cfg,imgsz", [("yolo11n.yaml", 320)])  # a model no other test names
def test_gflops_are_of_the_model_as_timed(compose_cfg, tmp_path, cfg: str, imgsz: int) -> None:
    job = to_job(compose_cfg(*QUICK, "device=cpu", f"model.cfg={cfg}", "model.name=other", f"imgsz={imgsz}"))
    cx = run_job(job, list_dir=tmp_path)["model_complexity"]
    assert cx["fused"] is True
    assert cx["gflops"] == pytest.approx(_ultralytics_gflops(cfg, imgsz, fuse=True), rel=1e-6)
    assert cx["gflops_unfused"] == pytest.approx(_ultralytics_gflops(cfg, imgsz, fuse=False), rel=1e-6)
    assert cx["gflops"] < cx["gflops_unfused"]  # fusing folds BatchNorm into the convolutions


def test_unfused_run_reports_one_figure_twice(compose_cfg, tmp_path) -> None:
    job = to_job(compose_cfg(*QUICK, "device=cpu", "model.fuse=false"))
    cx = run_job(job, list_dir=tmp_path)["model_complexity"]
    assert cx["fused"] is False and cx["gflops"] == cx["gflops_unfused"]
    assert round(cx["gflops"] * (640 / 64) ** 2, 2) == 8.86  # yolov8n unfused at 640 (scales with pixels)


def test_yolov8n_at_640_is_the_papers_8_7(compose_cfg, tmp_path) -> None:
    from medbench.models import MODELS, cached_gflops, prepare_for_inference

    job = to_job(compose_cfg("imgsz=640"))
    loaded, _ = MODELS.get(job.model, job.seed)
    fused, _ = prepare_for_inference(loaded.module, fuse=True)
    assert round(cached_gflops(fused, (640, 640), ("test", "fused")), 1) == 8.7
