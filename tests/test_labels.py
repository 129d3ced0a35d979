"""Labels and identity of trained checkpoints (real Ultralytics training runs): where a label comes from, a model
group that does not describe its checkpoint, a detector under a torchvision group, swept weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import QUICK
from medbench.config.given import without_group_defaults
from medbench.config.schema import ModelConfig
from medbench.errors import ModelError
from medbench.models import build_model


def _resave_without_run_name(src: Path, dst: Path) -> Path:
    """The same trained checkpoint as an older Ultralytics would save it: no training args on the model."""
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    ckpt["model"].args = {}
    ckpt.pop("train_args", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def test_label_is_the_given_name_else_the_training_run_name_else_the_folder(trained_checkpoints, tmp_path):
    ghost = str(trained_checkpoints["ghost_s0"])
    lm = build_model(ModelConfig(name=None, weights=ghost))
    assert (lm.name, lm.label_source) == ("ghost_s0", "train_args.name")
    mine = build_model(ModelConfig(name="mine", weights=ghost))
    assert (mine.name, mine.label_source) == ("mine", "model.name")
    old = _resave_without_run_name(trained_checkpoints["ghost_s0"], tmp_path / "exp7" / "weights" / "best.pt")
    lm = build_model(ModelConfig(name=None, weights=str(old)))
    assert (lm.name, lm.label_source) == ("exp7", "weights_dir")
    loose = shutil.copy(old, tmp_path / "ghost_final.pt")
    lm = build_model(ModelConfig(name=None, weights=str(loose)))
    assert (lm.name, lm.label_source) == ("ghost_final", "file_name")


def test_only_what_the_user_chose_describes_a_checkpoint(compose_cfg):
    def given(*overrides: str, group: str = "baseline"):
        cfg = compose_cfg(*overrides)
        without_group_defaults(cfg, list(overrides), {"model": group})
        return cfg.model.name, cfg.model.cfg

    assert given("model.weights=x.pt") == (None, None)  # the default group says nothing about x.pt
    assert given("model=ghost", "model.weights=x.pt", group="ghost") == (None, "yolov8n-ghost.yaml")
    assert given("model.weights=x.pt", "model.name=mine") == ("mine", None)
    assert given("model=ghost") == ("ghost", "yolov8n-ghost.yaml")  # no checkpoint: the group is the model


def test_group_that_does_not_describe_the_checkpoint_is_a_warning(trained_checkpoints):
    base, ghost = str(trained_checkpoints["base_s0"]), str(trained_checkpoints["ghost_s0"])
    wrong = build_model(ModelConfig(name=None, cfg="yolov8n-ghost.yaml", weights=base))
    assert len(wrong.warnings) == 1
    assert "architecture mismatch" in wrong.warnings[0] and "yolov8n.yaml" in wrong.warnings[0]
    assert build_model(ModelConfig(name=None, cfg="yolov8n-ghost.yaml", weights=ghost)).warnings == []
    assert build_model(ModelConfig(name=None, cfg="yolov8s-ghost.yaml", weights=ghost)).warnings  # other scale
    classes = build_model(ModelConfig(name=None, cfg="yolov8n-ghost.yaml", weights=ghost, num_classes=80)).warnings
    assert classes == ["class count mismatch: model.num_classes is 80 but the checkpoint has 2"]


def test_detector_under_a_torchvision_group_is_one_line(trained_checkpoints):
    spec = ModelConfig(name="resnet50", kind="torchvision", cfg="resnet50", task="classify",
                       weights=str(trained_checkpoints["base_s0"]))
    with pytest.raises(ModelError) as err:
        build_model(spec)
    message = str(err.value)
    assert "\n" not in message and "Ultralytics detect model" in message and "model=baseline" in message


@pytest.mark.slow
def test_swept_weights_have_distinct_labels_and_a_wrong_group_warns(trained_checkpoints, medbench_cli, tmp_path):
    base, ghost = trained_checkpoints["base_s0"], trained_checkpoints["ghost_s0"]
    proc = medbench_cli("-m", *QUICK, "device=cpu", f"model.weights={base},{ghost}", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/result.json"))]
    assert [r["metadata"]["model_name"] for r in records] == ["base_s0", "ghost_s0"]
    assert [r["metadata"]["label_source"] for r in records] == ["train_args.name"] * 2
    assert not any("mismatch" in w for r in records for w in r["warnings"])  # no group was chosen
    assert sorted(pd.read_csv(tmp_path / "sweep" / "comparison.csv")["model"]) == ["base_s0", "ghost_s0"]

    proc = medbench_cli(*QUICK, "device=cpu", "model=ghost", f"model.weights={base}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").glob("*/result.json")]
    assert record["metadata"]["model_name"] == "base_s0"
    assert any("architecture mismatch" in w for w in record["warnings"])
    assert "warning: architecture mismatch" in proc.stdout + proc.stderr
