"""A YOLO data.yaml split → a fixed, seeded benchmark list shared by every run.

Path rules follow Ultralytics (``check_det_dataset`` and ``BaseDataset.get_img_files``):
- the dataset root is the yaml's ``path`` key; a relative ``path`` is taken against the yaml's directory
  (then the working directory); no ``path`` means the yaml's directory;
- a split entry (str or list of str) is relative to the root; a missing ``../x`` falls back to ``x``;
- a directory is listed recursively; a .txt file lists one image a line: ``./x`` is relative to the txt's
  directory, other relative lines to the dataset root (then the working directory, as Ultralytics);
- only files with Ultralytics' image extensions count; duplicates are dropped.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import yaml

from medbench.errors import InputError
from medbench.inputs.images import absolute, is_image, list_bytes, list_images

LIST_NAME = "benchmark_list.txt"


def shared_list_dir(spec: Any, seed: int, base: str | os.PathLike) -> Path:
    """Default home of a dataset's benchmark list under ``base`` (the sweep dir, or the dir holding single runs).

    One folder per (data.yaml, split, size, seed): runs that must see the same images find and reuse one
    file — the points of a sweep, and separate runs made later — while runs over other data, another size or
    seed never pick it up. Other input kinds list no file: ``base`` is returned unchanged.
    """
    if spec.kind != "dataset" or not spec.data:
        return Path(base)
    data = absolute(spec.data)
    tag = hashlib.sha256(str(data).encode()).hexdigest()[:8]
    return Path(base) / "benchmark_lists" / f"{data.stem}-{spec.split}-n{spec.size}-seed{seed}-{tag}"


def find_data_yaml(data: str | os.PathLike) -> Path:
    """The data.yaml file: ``data`` itself, or the single .yaml inside ``data`` when it is a directory."""
    path = absolute(data)
    if path.is_dir():
        found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if len(found) != 1:
            raise InputError(f"dataset directory {path} must hold exactly one data YAML, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise InputError(f"dataset YAML {path} does not exist")
    return path


def load_data_yaml(path: Path) -> dict[str, Any]:
    """Parse a data.yaml into a dict (InputError when it is not YAML or not a mapping)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"cannot read dataset YAML {path}: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise InputError(f"dataset YAML {path} is not a mapping of keys (train, val, names, ...)")
    return data


def dataset_root(data: dict[str, Any], yaml_path: Path) -> Path:
    """The dataset root: ``path`` (relative → the yaml's dir, then the cwd), or the yaml's directory."""
    raw = data.get("path")
    if not raw:
        return yaml_path.parent
    root = Path(os.path.expanduser(str(raw)))
    if root.is_absolute():
        return absolute(root)
    beside = absolute(yaml_path.parent / root)
    return beside if beside.exists() or not absolute(root).exists() else absolute(root)


def _split_entries(data: dict[str, Any], split: str, yaml_path: Path) -> list[str]:
    value = data.get(split)
    if value is None and split == "val":
        value = data.get("validation")  # Ultralytics renames it too
    if value is None:
        raise InputError(f"dataset YAML {yaml_path} has no '{split}:' key")
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        raise InputError(f"dataset YAML {yaml_path} '{split}:' must be a path or a list of paths, got {value!r}")
    return entries


def _resolve_entry(entry: str, root: Path) -> Path:
    path = Path(os.path.expanduser(entry))
    if path.is_absolute():
        return absolute(path)
    out = absolute(root / path)
    if not out.exists() and entry.startswith("../"):
        out = absolute(root / entry[3:])
    return out


def _read_txt(txt: Path, root: Path) -> list[Path]:
    try:
        lines = txt.read_text(encoding="utf-8-sig").strip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read image list {txt}: {type(e).__name__}") from None
    out = []
    for line in (x.strip() for x in lines):
        if not line or not is_image(line):
            continue
        if line.startswith("./"):
            p = absolute(txt.parent / line[2:])
        elif os.path.isabs(os.path.expanduser(line)):
            p = absolute(line)
        else:
            p = absolute(root / line)
            if not p.exists() and absolute(line).exists():
                p = absolute(line)
        if not p.is_file():
            raise InputError(f"image {p} listed in {txt} does not exist")
        out.append(p)
    return out


def split_images(data: str | os.PathLike, split: str = "val") -> list[Path]:
    """All images of ``split`` in the data.yaml, sorted, absolute (InputError when missing or empty)."""
    yaml_path = find_data_yaml(data)
    cfg = load_data_yaml(yaml_path)
    root = dataset_root(cfg, yaml_path)
    found: set[Path] = set()
    for entry in _split_entries(cfg, split, yaml_path):
        path = _resolve_entry(entry, root)
        if path.is_dir():
            found.update(list_images(path))
        elif path.is_file():
            found.update(_read_txt(path, root) if not is_image(path) else [path])
        else:
            raise InputError(f"dataset split '{split}' path {path} does not exist (from {yaml_path})")
    if not found:
        raise InputError(f"dataset split '{split}' of {yaml_path} has no images")
    return sorted(found)


def choose_images(images: list[Path], size: int, seed: int) -> tuple[list[Path], list[str]]:
    """``size`` images by ``random.Random(seed).sample(sorted(images), size)``; all (sorted) when too few.

    Sorting first makes the choice independent of filesystem order. Returns (chosen, warnings).
    """
    pool = sorted(images)
    if size >= len(pool):
        warnings = [] if size == len(pool) else [
            f"input.size={size} exceeds the {len(pool)} images of the split; using all {len(pool)}"
        ]
        return pool, warnings
    return random.Random(seed).sample(pool, size), []


def read_list(path: Path) -> list[Path]:
    """The images of an existing benchmark list (relative lines: against the list's directory).

    InputError naming the first listed image that no longer exists, or when the list is empty.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read benchmark list {path}: {type(e).__name__}") from None
    images = [absolute(line if os.path.isabs(line) else path.parent / line) for line in map(str.strip, lines) if line]
    if not images:
        raise InputError(f"benchmark list {path} is empty; delete it or set input.reuse_list=false")
    missing = next((p for p in images if not p.is_file()), None)
    if missing is not None:
        raise InputError(f"image {missing} in benchmark list {path} does not exist")
    return images


def write_list(path: Path, images: list[Path], *, overwrite: bool) -> bool:
    """Write ``images`` to ``path`` atomically; returns False when another writer got there first.

    The content goes to a temp file in the same directory and is then published in one step: with
    ``overwrite`` by ``os.replace``; without it by ``os.link`` (fails if ``path`` exists: first writer
    wins, and a reader never sees a half-written list). Filesystems without hard links fall back to
    an existence check + ``os.replace`` (writers produce identical seeded content anyway).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(list_bytes(images))
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            if path.exists():
                return False
            os.replace(tmp, path)
            return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def benchmark_list(
    data: str | os.PathLike, *, split: str, size: int, seed: int, list_file: Path, reuse: bool
) -> tuple[list[Path], list[str]]:
    """The benchmark images for a dataset run and the warnings to record; creates ``list_file`` if needed.

    With ``reuse`` an existing list wins (every model sees the same images) and is only checked: a list
    that the current split/size/seed would not produce gives a warning, not an error.
    """
    if reuse and list_file.is_file():
        return _reuse(data, split=split, size=size, seed=seed, list_file=list_file)
    chosen, warnings = choose_images(split_images(data, split), size, seed)
    if not write_list(list_file, chosen, overwrite=not reuse):
        return _reuse(data, split=split, size=size, seed=seed, list_file=list_file)
    return chosen, warnings


def _reuse(
    data: str | os.PathLike, *, split: str, size: int, seed: int, list_file: Path
) -> tuple[list[Path], list[str]]:
    images = read_list(list_file)
    try:
        expected, warnings = choose_images(split_images(data, split), size, seed)
    except InputError as e:
        return images, [f"reusing {list_file} without checking it against the dataset: {e}"]
    if expected != images:
        warnings.append(
            f"reusing {list_file} ({len(images)} images), which differs from what split={split} size={size} "
            f"seed={seed} would choose; set input.reuse_list=false to regenerate it"
        )
    return images, warnings
