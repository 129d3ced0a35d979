"""Accuracy beside speed: read from a real Ultralytics training run, given by hand, or null for random init."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import QUICK
from medbench.config.schema import ModelConfig, to_job
from medbench.errors import ConfigError
from medbench.models import build_model
from medbench.models import accuracy
from medbench.models.safe_load import load_checkpoint
from medbench.results.load import to_record
from medbench.run.runner import run_job


def test_checkpoint_metrics_are_read_from_the_file_the_loader_loaded(trained_eca: Path) -> None:
    best = trained_eca / "best.pt"
    metrics = load_checkpoint(best)["train_metrics"]  # what Ultralytics' trainer stored in the file
    loaded = build_model(ModelConfig(name="eca", weights=str(best)))
    acc = loaded.accuracy
    assert acc["source"] == "checkpoint" and acc["file"] == str(best)
    assert acc["map50_95"] == pytest.approx(float(metrics["metrics/mAP50-95(B)"]))
    assert acc["map50"] == pytest.approx(float(metrics["metrics/mAP50(B)"]))
    assert acc["precision"] == pytest.approx(float(metrics["metrics/precision(B)"]))
    assert acc["recall"] == pytest.approx(float(metrics["metrics/recall(B)"]))
    assert acc["top1"] is None and all(0.0 <= acc[k] <= 1.0 for k in ("map50_95", "map50", "precision", "recall"))


def test_results_csv_beside_weights_is_the_fallback(trained_eca: Path, tmp_path: Path) -> None:
    """A checkpoint without metrics: the training run's results.csv, last row (its real file, padded headers too)."""
    real_csv = trained_eca.parent / "results.csv"
    rows = list(csv.DictReader(real_csv.open()))
    acc = accuracy.from_checkpoint({"model": None}, trained_eca / "best.pt")
    assert acc["source"] == "results.csv" and acc["file"] == str(real_csv)
    assert acc["map50"] == pytest.approx(float(rows[-1]["metrics/mAP50(B)"]))
    assert acc["epoch"] == int(float(rows[-1]["epoch"]))

    run = tmp_path / "exp" / "weights"
    run.mkdir(parents=True)
    (run.parent / "results.csv").write_text("   epoch,  metrics/mAP50-95(B),  metrics/mAP50(B)\n"
                                            "       1,      0.10,   0.20\n       2,      0.31,   0.52\n")
    acc = accuracy.from_checkpoint({}, run / "best.pt")
    assert (acc["map50_95"], acc["map50"], acc["precision"], acc["epoch"]) == (0.31, 0.52, None, 2)
    assert accuracy.from_checkpoint({}, tmp_path / "elsewhere.pt") is None  # not in a training run's weights/


def test_random_init_has_null_accuracy_and_config_gives_it_by_hand(compose_cfg, tiny_classifier_yaml, tmp_path) -> None:
    base = [*QUICK, "device=cpu", f"model.cfg={tiny_classifier_yaml}", "model.task=classify", "model.name=tiny"]
    record = run_job(to_job(compose_cfg(*base)), list_dir=tmp_path).to_json()  # what result.json holds
    assert record["status"] == "ok" and "accuracy" in record and record["accuracy"] is None  # null, not 0
    assert to_record(record).accuracy is None

    record = run_job(to_job(compose_cfg(*base, "model.accuracy.top1=0.812")), list_dir=tmp_path).to_json()
    typed = to_record(record).accuracy
    assert (typed.top1, typed.source, typed.map50_95) == (0.812, "config", None)
    with pytest.raises(ConfigError, match=r"model.accuracy.top1 must be a fraction in \[0, 1\]"):
        to_job(compose_cfg(*base, "model.accuracy.top1=81.2"))
