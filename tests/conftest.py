"""Shared fixtures: real Hydra composition, real subprocess runs of the CLI, small real images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from medbench.config.schema import register_configs

os.environ.setdefault("YOLO_OFFLINE", "1")
HAS_CUDA = torch.cuda.is_available()
# Small and fast enough for a 2-core CI machine, still a real YOLO forward pass.
QUICK = ["iters=quick", "imgsz=64", "iters.warmup=1", "iters.iters=5"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA, with the reason shown."""
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not HAS_CUDA:  # not item.keywords: a checkout dir named gpu
            item.add_marker(skip_gpu)


@pytest.fixture
def compose_cfg():
    """Compose the shipped config tree with overrides, exactly as the CLI does (no run)."""
    register_configs()

    def _compose(*overrides: str, return_hydra_config: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="medbench.conf", version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def tiny_classifier_yaml(tmp_path: Path) -> Path:
    """An Ultralytics classify YAML of two convs: compiles and runs in seconds on a CPU."""
    path = tmp_path / "tiny-cls.yaml"
    path.write_text("nc: 10\nbackbone:\n  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2]]\n"
                    "head:\n  - [-1, 1, Classify, [nc]]\n")
    return path


def run_medbench(*args: str, cwd: Path, module: str = "medbench", timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` in a fresh interpreter, from ``cwd``."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def medbench_cli(tmp_path: Path):
    """Run the CLI in a temp working directory (outside the repo, as a new user would)."""

    def _run(*args: str, module: str = "medbench", cwd: Path | None = None, timeout: float = 300):
        return run_medbench(*args, cwd=cwd or tmp_path, module=module, timeout=timeout)

    return _run


def only_result(root: Path) -> tuple[Path, dict]:
    """The single result.json below ``root`` and its content."""
    found = sorted(root.rglob("result.json"))
    assert len(found) == 1, found
    return found[0], json.loads(found[0].read_text())


TRAIN_SCRIPT = """
import shutil, sys
from pathlib import Path
import ultralytics
import medbench.models  # registers ECA with Ultralytics' YAML parser: the README's way to train the variants
from ultralytics import YOLO

out = Path(sys.argv[1])
assets = Path(ultralytics.__file__).parent / "assets"
for split in ("train", "val"):
    (out / "ds" / "images" / split).mkdir(parents=True)
    (out / "ds" / "labels" / split).mkdir(parents=True)
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(assets / name, out / "ds" / "images" / split / name)
        (out / "ds" / "labels" / split / (Path(name).stem + ".txt")).write_text("0 0.5 0.5 0.4 0.6\\n")
(out / "ds" / "data.yaml").write_text(f"path: {out / 'ds'}\\ntrain: images/train\\nval: images/val\\nnames:\\n  0: lesion\\n")
cfg = Path(medbench.models.__file__).parent / "cfg" / "yolov8n-eca.yaml"
YOLO(str(cfg)).train(data=str(out / "ds" / "data.yaml"), epochs=1, imgsz=64, batch=2, device="cpu", workers=0,
                     plots=False, amp=False, project=str(out / "runs"), name="eca", exist_ok=True, verbose=False)
"""


@pytest.fixture(scope="session")
def trained_eca(tmp_path_factory) -> Path:
    """A real Ultralytics training run (1 epoch, imgsz 64, CPU, 2 images that ship with Ultralytics) of medbench's
    yolov8n-eca.yaml: its ``weights/`` folder with ``best.pt`` and ``last.pt`` as the trainer wrote them."""
    out = tmp_path_factory.mktemp("trained")
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(out)], cwd=out, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = out / "runs" / "eca" / "weights"
    assert (weights / "best.pt").is_file() and (weights / "last.pt").is_file(), proc.stderr[-3000:]
    return weights


LABELS_TRAIN_SCRIPT = """
import shutil, sys
from pathlib import Path
from ultralytics import YOLO
from ultralytics.utils import ASSETS
root = Path(sys.argv[1])
for sub in ("images", "labels"):
    (root / "data" / sub).mkdir(parents=True, exist_ok=True)
for img in sorted(Path(ASSETS).glob("*.jpg")):  # the images that ship with Ultralytics, one box each
    shutil.copy(img, root / "data" / "images" / img.name)
    (root / "data" / "labels" / f"{img.stem}.txt").write_text("0 0.5 0.5 0.4 0.6\\n")
(root / "data.yaml").write_text(f"path: {root / 'data'}\\ntrain: images\\nval: images\\nnames: {{0: a, 1: b}}\\n")
for name, cfg in [("ghost_s0", "yolov8n-ghost.yaml"), ("base_s0", "yolov8n.yaml")]:
    YOLO(cfg).train(data=str(root / "data.yaml"), epochs=1, imgsz=64, batch=2, device="cpu", workers=0, plots=False,
                    val=False, amp=False, verbose=False, project=str(root / "runs"), name=name, exist_ok=True)
"""


@pytest.fixture(scope="session")
def trained_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Real Ultralytics training runs (1 epoch, imgsz 64, CPU) with run names: ``ghost_s0`` (yolov8n-ghost.yaml) and
    ``base_s0`` (yolov8n.yaml), 2 classes, on the images that ship with Ultralytics → run name → best.pt."""
    root = tmp_path_factory.mktemp("trained")
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", LABELS_TRAIN_SCRIPT, str(root)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: root / "runs" / name / "weights" / "best.pt" for name in ("ghost_s0", "base_s0")}
