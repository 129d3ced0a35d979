"""Image files → model tensors, the way Ultralytics' predictor prepares them.

Listing (``list_images``), decoding (``read_image``), letterboxing to an exact (h, w) (``letterbox``),
conversion of a group of letterboxed images to one (n, 3, h, w) tensor (``to_tensor``), and batching
with wrap-around (``batch_indices``, ``load_batches``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medbench.errors import InputError

try:  # the formats Ultralytics reads; the fallback keeps medbench importable if the name moves
    from ultralytics.data.utils import IMG_FORMATS
except ImportError:  # pragma: no cover
    IMG_FORMATS = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"}

PAD_VALUE = 114  # Ultralytics' letterbox grey


def is_image(path: str | os.PathLike) -> bool:
    """True when the file name ends with an extension Ultralytics treats as an image (case-insensitive)."""
    return str(path).rpartition(".")[-1].lower() in IMG_FORMATS


def absolute(path: str | os.PathLike) -> Path:
    """Absolute, normalised path without resolving symlinks (a symlinked dataset keeps its own names)."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Every image under ``directory``, recursively (as Ultralytics lists a split directory), sorted, absolute.

    Hidden files and folders are skipped like in Ultralytics; each real file counts once, however many symlinks
    (or symlink loops) lead to it. Raises InputError when the directory is missing. See ``scan_images``.
    """
    return scan_images(directory)[0]


def scan_images(directory: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``(images, skipped)``: the images under ``directory`` and the other (non-hidden) files that were left out
    because they are not a format Ultralytics reads (a GIF, a text file), both sorted and absolute."""
    root = absolute(directory)
    if not root.is_dir():
        raise InputError(f"image directory {root} does not exist")
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    images: list[Path] = []
    skipped: list[Path] = []
    for current, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(current)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second link to a folder already listed
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(current, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            fst = os.stat(path)
            if (fst.st_dev, fst.st_ino) in seen_files:
                continue
            seen_files.add((fst.st_dev, fst.st_ino))
            (images if is_image(name) else skipped).append(absolute(path))
    return sorted(images), sorted(skipped)


def skipped_warning(skipped: Sequence[Path], shown: int = 5) -> list[str]:
    """The record's warning naming files a folder held that are not images (empty when none)."""
    if not skipped:
        return []
    names = ", ".join(p.name for p in skipped[:shown]) + (f" and {len(skipped) - shown} more" if len(skipped) > shown else "")
    return [f"skipped {len(skipped)} file(s) that are not an image format Ultralytics reads: {names}"]


def list_bytes(paths: Sequence[Path]) -> bytes:
    """The canonical bytes of an image list: one absolute path a line, newline-terminated, UTF-8."""
    return "".join(f"{p}\n" for p in paths).encode("utf-8")


def list_sha256(paths: Sequence[Path]) -> str:
    """sha256 of ``list_bytes(paths)``: equals the sha256 of a benchmark_list.txt holding the same paths."""
    return hashlib.sha256(list_bytes(paths)).hexdigest()


@contextlib.contextmanager
def _libpng_quiet() -> Iterator[None]:
    """Silence the process's C-level stderr (fd 2) for one PNG decode.

    libpng writes its warnings about a file's metadata (``libpng warning: iCCP: known incorrect sRGB profile``,
    common in PNGs exported by some editors) straight to fd 2, where Python cannot catch them; they do not affect
    the decoded pixels, and a file that cannot be decoded still fails (``imread`` returns None). Four system calls
    (dup, dup2, dup2, close): microseconds beside a decode.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (a closed stderr): nothing to silence
        yield
        return
    try:
        os.dup2(_devnull(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_DEVNULL: list[int] = []


def _devnull() -> int:
    if not _DEVNULL:
        _DEVNULL.append(os.open(os.devnull, os.O_WRONLY))
    return _DEVNULL[0]


def read_image(path: Path) -> np.ndarray:
    """Decode one image to a BGR uint8 (h, w, 3) array, as Ultralytics does (its unicode-safe ``imread``).

    Raises InputError (one line, naming the file) when it is missing, empty or not decodable.
    """
    try:
        from ultralytics.utils.patches import imread
    except ImportError:  # pragma: no cover
        import cv2

        imread = cv2.imread
    if not os.path.isfile(path):
        raise InputError(f"image {path} does not exist")
    if Path(path).suffix.lower() == ".png":
        with _libpng_quiet():
            img = imread(str(path))
    else:
        img = imread(str(path))
    if img is None or img.size == 0:
        raise InputError(f"cannot decode image {path} (corrupt or not an image)")
    if img.ndim == 2:  # grayscale
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 4:  # BGRA
        img = img[..., :3]
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def letterbox(img: np.ndarray, imgsz: tuple[int, int]) -> np.ndarray:
    """Resize keeping aspect ratio and pad (value 114, centred) to exactly (h, w) = ``imgsz``.

    Ultralytics' own ``LetterBox(new_shape=imgsz, auto=False, scale_fill=False)``: ``auto=False`` gives
    the full target shape instead of the minimum stride-multiple rectangle, so every image and model is
    timed on the same tensor shape.
    """
    from ultralytics.data.augment import LetterBox

    out = LetterBox(new_shape=tuple(imgsz), auto=False, scale_fill=False, padding_value=PAD_VALUE)(image=img)
    if out.ndim == 2:
        out = out[..., None]
    return out


def to_tensor(imgs: Sequence[np.ndarray], *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Letterboxed BGR HWC uint8 arrays → contiguous RGB (n, 3, h, w) tensor in [0, 1] on ``device``.

    Same order of operations as Ultralytics' predictor: uint8 travels to the device (4x fewer bytes),
    then HWC→CHW, BGR→RGB, cast and ``/255`` happen there.
    """
    arr = np.stack(imgs)  # a fresh array: cached images are read-only and shared
    x = torch.from_numpy(arr).to(device)
    x = x.permute(0, 3, 1, 2).contiguous().flip(1)  # BHWC→BCHW, BGR→RGB
    return x.to(dtype).div_(255).contiguous()


def batch_indices(n: int, batch: int, start: int = 0) -> list[list[int]]:
    """ceil(n / batch) full batches of indices into n items, wrapping around to the start to fill the last.

    ``batch_indices(5, 2) == [[0, 1], [2, 3], [4, 0]]``; with batch > n items repeat: ``[[0, 1, 0]]``.
    """
    if n <= 0 or batch <= 0:
        raise ValueError(f"need n > 0 and batch > 0, got n={n}, batch={batch}")
    return [[(start + b * batch + i) % n for i in range(batch)] for b in range(math.ceil(n / batch))]


class DecodedCache:
    """Letterboxed images kept for the life of the process, so a sweep decodes each (image, imgsz) once.

    Keyed by path, mtime, size and imgsz (an edited file is decoded again); bounded by bytes, least
    recently used first out (``MEDBENCH_DECODE_CACHE_MB``, default 1024).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def get(self, path: Path, imgsz: tuple[int, int]) -> np.ndarray:
        try:
            st = os.stat(path)
        except OSError:
            return letterbox(read_image(path), imgsz)  # read_image says what is wrong, in one line
        key = (str(path), st.st_mtime_ns, st.st_size, tuple(imgsz))
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        img = letterbox(read_image(path), imgsz)
        img.setflags(write=False)  # shared between jobs: nobody may edit it in place
        self.items[key] = img
        self.nbytes += img.nbytes
        while self.nbytes > self.max_bytes and len(self.items) > 1:
            self.nbytes -= self.items.popitem(last=False)[1].nbytes
        return img


DECODED = DecodedCache(int(os.environ.get("MEDBENCH_DECODE_CACHE_MB", "1024")) * 1024 * 1024)


def load_batches(
    paths: Sequence[Path], *, imgsz: tuple[int, int], batch: int, device: torch.device, dtype: torch.dtype
) -> list[torch.Tensor]:
    """Decode + letterbox every image once and stack them into ceil(n / batch) full batches on ``device``.

    All batches stay resident (that is what makes the timed loop free of I/O): memory is about
    ceil(n / batch) * batch * 3 * h * w * dtype-size bytes on the device, e.g. 200 images at 1280x1280 in
    float32 take ~3.9 GB. Decoded images come from ``DECODED``, so later jobs of a sweep skip decoding.
    """
    if not paths:
        raise InputError("no images to build input batches from")
    decoded = [DECODED.get(p, imgsz) for p in paths]
    return [to_tensor([decoded[i] for i in idx], device=device, dtype=dtype)
            for idx in batch_indices(len(paths), batch)]
