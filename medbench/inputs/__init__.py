"""Input sets for a benchmark job: synthetic, assets, folder, dataset.

``build_inputs(job.input, ...)`` returns an ``InputSet``: the preprocessed batches for the ``forward``
scope plus the provenance that goes into the result JSON (images, benchmark list, its sha256,
warnings). ``EndToEndStep`` (``end_to_end`` scope) re-reads the same ``images`` every iteration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medbench.errors import InputError
from medbench.inputs.dataset import LIST_NAME, benchmark_list
from medbench.inputs.end_to_end import STAGES, EndToEndStep
from medbench.inputs.images import absolute, list_images, list_sha256, load_batches, scan_images, skipped_warning
from medbench.inputs.synthetic import synthetic_batch
from medbench.config.schema import InputConfig

__all__ = ["InputSet", "build_inputs", "list_input_images", "EndToEndStep", "STAGES", "assets_dir"]


@dataclass
class InputSet:
    """What the runner times on, and where it came from."""

    kind: str
    batches: list[torch.Tensor]  # each (batch, 3, h, w), on the device, in the dtype, contiguous
    shape: tuple[int, ...]  # the tensor shape actually timed, (batch, 3, h, w)
    images: list[Path] = field(default_factory=list)  # source images in benchmark order ([] for synthetic)
    benchmark_list: str | None = None  # path of benchmark_list.txt (dataset kind)
    benchmark_size: int | None = None  # number of images used (None for synthetic)
    benchmark_list_sha256: str | None = None  # dataset: of the list file; assets/folder: of the path list
    warnings: list[str] = field(default_factory=list)


def assets_dir() -> Path:
    """The directory of images that ship with Ultralytics (bus.jpg, zidane.jpg)."""
    from ultralytics.utils import ASSETS

    return Path(ASSETS)


def list_input_images(
    spec: InputConfig, *, seed: int, list_dir: Path
) -> tuple[list[Path], str | None, str | None, list[str]]:
    """The images of an image input kind → (images, list path, sha256, warnings); no decoding.

    ``folder`` lists recursively (every image under ``input.path``, sorted). ``dataset`` creates or reuses
    the benchmark list (``input.list_path``, else ``list_dir/benchmark_list.txt``).
    """
    if spec.kind == "assets":
        images = list_images(assets_dir())
        if not images:
            raise InputError(f"no images in the Ultralytics assets directory {assets_dir()}")
        return images, None, list_sha256(images), []
    if spec.kind == "folder":
        if not spec.path:
            raise InputError("input=folder needs input.path=DIR")
        images, skipped = scan_images(spec.path)
        if not images:
            raise InputError(f"image folder {absolute(spec.path)} has no images"
                             + (f" ({skipped_warning(skipped)[0]})" if skipped else ""))
        return images, None, list_sha256(images), skipped_warning(skipped)
    if spec.kind == "dataset":
        if not spec.data:
            raise InputError("input=dataset needs input.data=PATH/TO/data.yaml")
        list_file = absolute(spec.list_path) if spec.list_path else absolute(Path(list_dir) / LIST_NAME)
        images, warnings = benchmark_list(
            spec.data, split=spec.split, size=spec.size, seed=seed, list_file=list_file, reuse=spec.reuse_list
        )
        sha = hashlib.sha256(list_file.read_bytes()).hexdigest()
        return images, str(list_file), sha, warnings
    raise InputError(f"input.kind must be one of synthetic, assets, folder, dataset; got {spec.kind!r}")


def build_inputs(
    spec: InputConfig,
    *,
    imgsz: tuple[int, int],
    batch: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    list_dir: Path,
    preload: bool = True,
) -> InputSet:
    """Build the input set of one job; every image is decoded and letterboxed here, before any timing.

    ``preload=False`` (e.g. for ``scope=end_to_end``, which reads from disk itself) lists the images and
    makes the benchmark list but decodes nothing: ``batches`` is then empty.
    """
    h, w = imgsz
    shape = (batch, 3, h, w)
    if spec.kind == "synthetic":
        return InputSet("synthetic", [synthetic_batch(batch, imgsz, seed=seed, device=device, dtype=dtype)], shape)
    images, list_path, sha, warnings = list_input_images(spec, seed=seed, list_dir=list_dir)
    batches = load_batches(images, imgsz=imgsz, batch=batch, device=device, dtype=dtype) if preload else []
    return InputSet(spec.kind, batches, shape, images, list_path, len(images), sha, warnings)
