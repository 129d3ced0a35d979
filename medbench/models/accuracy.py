"""Accuracy beside speed: the validation metrics of the weights that are timed (the record's ``accuracy`` block).

Where they come from, first match wins:

1. ``model.accuracy.*`` in the config (``source: config``): numbers the user gives by hand, e.g. from a
   separate evaluation on a held-out test set;
2. the checkpoint's own ``train_metrics`` (``source: checkpoint``): Ultralytics stores the metrics of the
   validation pass that produced ``best.pt`` / ``last.pt`` in the file itself (``metrics/mAP50-95(B)``, ...);
   read from the checkpoint the loader already unpickled, never loaded a second time;
3. ``results.csv`` of the training run (``source: results.csv``): the last row of the file beside ``weights/``
   (the metrics after the final epoch), for checkpoints that carry no metrics.

A random-init model, or weights with none of the above, has ``accuracy: null`` (not 0: no measurement is not a
zero score). Values are fractions in [0, 1] as Ultralytics reports them. Pure apart from reading results.csv.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The record's accuracy fields → the keys Ultralytics writes, in order of preference: box metrics (detect, and the
# box half of segment / pose / obb), then mask / pose ones, then classification top-1 / top-5.
KEYS: dict[str, tuple[str, ...]] = {
    "map50_95": ("metrics/mAP50-95(B)", "metrics/mAP50-95(M)", "metrics/mAP50-95(P)"),
    "map50": ("metrics/mAP50(B)", "metrics/mAP50(M)", "metrics/mAP50(P)"),
    "precision": ("metrics/precision(B)", "metrics/precision(M)", "metrics/precision(P)"),
    "recall": ("metrics/recall(B)", "metrics/recall(M)", "metrics/recall(P)"),
    "top1": ("metrics/accuracy_top1",),
    "top5": ("metrics/accuracy_top5",),
}
FIELDS = tuple(KEYS)


def _fraction(value: Any) -> float | None:
    """A finite number, as float (numpy scalars and 0-d tensors included), else None."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def from_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The accuracy fields read from an Ultralytics metrics mapping (keys stripped: old results.csv pad them)."""
    clean = {str(k).strip(): v for k, v in metrics.items()}
    out: dict[str, float | None] = {}
    for field, keys in KEYS.items():
        out[field] = next((v for k in keys if (v := _fraction(clean.get(k))) is not None), None)
    return out


def _block(values: Mapping[str, float | None], source: str, file: Path | str | None = None,
           epoch: int | None = None) -> dict[str, Any] | None:
    if all(v is None for v in values.values()):
        return None
    return {**values, "source": source, "file": None if file is None else str(file), "epoch": epoch}


def from_checkpoint(ckpt: Any, path: Path) -> dict[str, Any] | None:
    """The accuracy block of a loaded Ultralytics checkpoint: its ``train_metrics``, else the training run's
    ``results.csv`` (``<run>/weights/best.pt`` → ``<run>/results.csv``), else None."""
    metrics = ckpt.get("train_metrics") if isinstance(ckpt, dict) else None
    if isinstance(metrics, Mapping):
        epoch = ckpt.get("epoch")
        block = _block(from_metrics(metrics), "checkpoint", path,
                       epoch if isinstance(epoch, int) and epoch >= 0 else None)  # -1: a finished (stripped) run
        if block is not None:
            return block
    return from_results_csv(path)


def from_results_csv(weights: Path) -> dict[str, Any] | None:
    """The last row of ``results.csv`` beside the ``weights/`` folder holding ``weights`` (None when there is none,
    or it is unreadable: accuracy is context, never a reason for a benchmark to fail)."""
    if weights.parent.name != "weights":
        return None
    csv_path = weights.parent.parent / "results.csv"
    try:
        with open(csv_path, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row]
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not rows:
        return None
    last = {str(k).strip(): v for k, v in rows[-1].items() if k is not None}
    epoch = _fraction(last.get("epoch"))
    return _block(from_metrics(last), "results.csv", csv_path, int(epoch) if epoch is not None else None)


def from_config(given: Any) -> dict[str, Any] | None:
    """The block from ``model.accuracy`` (a dataclass, mapping or None), or None when it gives no value."""
    if given is None:
        return None
    values = given if isinstance(given, Mapping) else vars(given)
    return _block({f: _fraction(values.get(f)) for f in FIELDS}, "config")


def resolve(given: Any, from_weights: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record's ``accuracy``: the config's numbers when it gives any, else what the weights carry, else None."""
    return from_config(given) or from_weights
