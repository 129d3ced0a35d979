"""The built-in benchmark suites (``medbench suite``, command line in ``medbench.cli.suite``), saved as one file.

    medbench suite --tests data preprocess model --output benchmarks/current.json
    medbench suite --tests preprocess --quick --output /tmp/pre.json --targets default

Everything runs on real work and downloads nothing:

- ``data``: loading 64 JPEGs (320x320, written by the suite into a temp dir) as 224x224 float tensors —
  ``data_uncached`` decodes and resizes every item from disk each time, ``data_cached`` serves tensors decoded
  once into memory — each with ``num_workers`` 0 and 2 (results ``data_uncached_w0``, ``data_uncached_w2``, ...).
- ``preprocess``: ops/s of torchvision.transforms.v2 ops on the decoded images, one image per call: resize to
  224, normalize, horizontal flip, colour jitter, and the four chained (``preprocess_pipeline``).
- ``model``: samples/s of torchvision ``resnet50`` and ``vit_b_16`` (random init) at 224x224, batch 8 on
  ``--device`` (default: first GPU, else CPU).

``--quick`` shrinks batch and iteration counts so that all three suites finish in well under two minutes on a
2-core CPU (a smoke run; its numbers are rough). The file is a valid ``--baseline``/``--current`` for
``medbench compare``; ``--targets`` checks it against performance targets (see ``medbench.analysis.targets``).
Every benchmark goes through the API classes and so through the one timing engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITES = ("data", "preprocess", "model")
MODELS = ("resnet50", "vit_b_16")
IMAGE_COUNT = 64
IMAGE_SIZE = 320  # written JPEGs are IMAGE_SIZE x IMAGE_SIZE
LOAD_SIZE = 224  # what the loaders and the models see


@dataclass(frozen=True)
class Settings:
    """Counts for one suite run; ``quick`` is a smoke run, the default a measurement."""

    quick: bool
    device: str
    data_batches: int
    data_batch_size: int
    preprocess_iters: int
    model_batch_size: int
    model_warmup: int
    model_iters: int

    @classmethod
    def make(cls, *, quick: bool, device: str, batch_size: int | None = None, iters: int | None = None) -> Settings:
        from medbench.run.devices import resolve_device

        dev = resolve_device(device)
        cuda = dev.type == "cuda"
        if quick:
            base = dict(data_batches=12, data_batch_size=16, preprocess_iters=50, model_batch_size=1,
                        model_warmup=1, model_iters=5)
        else:
            base = dict(data_batches=40, data_batch_size=16, preprocess_iters=300, model_batch_size=8,
                        model_warmup=10 if cuda else 2, model_iters=100 if cuda else 15)
        if batch_size is not None:
            base["model_batch_size"] = batch_size
        if iters is not None:
            base["model_iters"] = iters
        return cls(quick=quick, device=str(dev), **base)


# --- images and datasets (module level: picklable for DataLoader workers under fork and spawn) -----------------

def write_images(directory: Path, count: int = IMAGE_COUNT, size: int = IMAGE_SIZE, seed: int = 0) -> list[Path]:
    """``count`` JPEGs of ``size`` x ``size`` with photo-like content (smooth gradients, shapes, sensor noise)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    paths = []
    for i in range(count):
        base = np.stack([(a * xx + b * yy + c) % 1.0 for a, b, c in rng.uniform(0, 1.5, (3, 3))], axis=-1) * 200
        img = base.astype(np.uint8)
        for _ in range(6):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.circle(img, centre, int(rng.integers(8, size // 4)), colour, -1)
        noisy = np.clip(img.astype(np.int16) + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        path = directory / f"img_{i:03d}.jpg"
        cv2.imwrite(str(path), noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def decode(path: str | os.PathLike, size: int = LOAD_SIZE) -> Any:
    """One image file → float32 RGB (3, size, size) tensor in [0, 1] (decode, resize, convert)."""
    import cv2
    import torch

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot decode image {path}")
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float().div_(255)


class ImageFileDataset:
    """Uncached: every ``__getitem__`` reads, decodes and resizes the file again."""

    def __init__(self, paths: Sequence[Path], size: int = LOAD_SIZE) -> None:
        self.paths = [str(p) for p in paths]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        return decode(self.paths[index], self.size), index


class CachedDataset:
    """Cached: the same tensors, decoded once up front and served from memory."""

    def __init__(self, paths: Sequence[Path], size: int = LOAD_SIZE) -> None:
        import torch

        self.images = torch.stack([decode(p, size) for p in paths])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        return self.images[index], index


# --- the suites ---------------------------------------------------------------------------------------------------

def add_data(suite: Any, paths: list[Path], s: Settings) -> None:
    from medbench.api.benchmarks import DataLoaderBenchmark

    cached = CachedDataset(paths)
    for component, dataset in (("data_uncached", ImageFileDataset(paths)), ("data_cached", cached)):
        for workers in (0, 2):
            name = f"{component}_w{workers}"

            def bench(dataset=dataset, workers=workers, name=name, component=component):
                result = DataLoaderBenchmark(dataset, batch_size=s.data_batch_size, num_workers=workers, name=name,
                                             shuffle=True, generator=_generator()).run(num_batches=s.data_batches)
                result.metadata.update(component=component, images=len(paths), image_size=IMAGE_SIZE,
                                       load_size=LOAD_SIZE)
                return result

            suite.add_benchmark(name, bench)


def _generator() -> Any:
    import torch

    return torch.Generator().manual_seed(0)


def preprocess_ops() -> dict[str, Callable[[Any], Any]]:
    """torchvision.transforms.v2 ops, applied to one decoded uint8 (3, H, W) image per call."""
    import torch
    from torchvision.transforms import v2

    to_float = v2.ToDtype(torch.float32, scale=True)
    resize = v2.Resize((LOAD_SIZE, LOAD_SIZE), antialias=True)
    normalize = v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    flip = v2.RandomHorizontalFlip(p=1.0)
    jitter = v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    pipeline = v2.Compose([resize, v2.RandomHorizontalFlip(p=0.5), jitter, to_float, normalize])
    return {
        "preprocess_resize": resize,
        "preprocess_normalize": lambda img: normalize(to_float(img)),
        "preprocess_hflip": flip,
        "preprocess_color_jitter": jitter,
        "preprocess_pipeline": pipeline,
    }


class _Cycle:
    """Apply ``op`` to the next image each call (cycling), so every call sees a real, different image."""

    def __init__(self, op: Callable[[Any], Any], images: list[Any]) -> None:
        self.op, self.images, self.i = op, images, 0

    def __call__(self) -> Any:
        img = self.images[self.i % len(self.images)]
        self.i += 1
        return self.op(img)


def add_preprocess(suite: Any, paths: list[Path], s: Settings) -> None:
    import cv2
    import torch

    from medbench.api.benchmarks import PerformanceBenchmark

    images = [torch.from_numpy(cv2.imread(str(p))[:, :, ::-1].copy()).permute(2, 0, 1).contiguous() for p in paths]
    for name, op in preprocess_ops().items():
        def bench(name=name, op=op):
            torch.manual_seed(0)
            result = PerformanceBenchmark(name, warmup_iterations=5 if s.quick else 10, test_iterations=s.preprocess_iters,
                                          unit="ops/s").run(_Cycle(op, images))
            result.metadata.update(component=name, image_shape=list(images[0].shape), images=len(images))
            return result

        suite.add_benchmark(name, bench)


def add_model(suite: Any, s: Settings) -> None:
    from medbench.api.benchmarks import ModelBenchmark

    for model_name in MODELS:
        def bench(model_name=model_name):
            import torch
            import torchvision

            torch.manual_seed(0)
            model = torchvision.models.get_model(model_name, weights=None)  # random init: nothing downloaded
            result = ModelBenchmark(model, input_shape=(3, LOAD_SIZE, LOAD_SIZE), device=s.device, name=model_name,
                                    warmup_iterations=s.model_warmup).run(batch_size=s.model_batch_size,
                                                                          num_iterations=s.model_iters)
            result.metadata.update(component=model_name, random_init=True)
            return result

        suite.add_benchmark(model_name, bench)


def build_suite(tests: Sequence[str], settings: Settings, image_dir: Path, *, name: str = "builtin",
                output_dir: str | os.PathLike = "./benchmarks") -> Any:
    """A ``BenchmarkSuite`` holding the chosen built-in suites (images are written into ``image_dir``)."""
    from medbench.api.benchmark_suite import BenchmarkSuite

    suite = BenchmarkSuite(name, output_dir=output_dir, device=settings.device)
    paths = write_images(image_dir) if {"data", "preprocess"} & set(tests) else []
    for test in tests:
        if test == "data":
            add_data(suite, paths, settings)
        elif test == "preprocess":
            add_preprocess(suite, paths, settings)
        elif test == "model":
            add_model(suite, settings)
    return suite
