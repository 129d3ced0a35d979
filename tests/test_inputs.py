"""medbench.inputs: synthetic / assets / folder / dataset input sets, the benchmark list, end-to-end steps.

Real files only: a small YOLO-style dataset is written with cv2 into tmp_path.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from medbench.errors import InputError
from medbench.inputs import STAGES, EndToEndStep, InputSet, build_inputs
from medbench.inputs.dataset import split_images, write_list
from medbench.inputs.images import batch_indices, letterbox, list_sha256, to_tensor
from medbench.config.schema import InputConfig

CPU = torch.device("cpu")
F32 = torch.float32
os.environ.setdefault("YOLO_OFFLINE", "1")


def _write_image(path: Path, h: int, w: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> dict:
    """ds/images/val: 20 jpg + 10 png in a nested dir; ds/images/extra: 5 jpg; data.yaml beside ds/ (path: ds)."""
    root = tmp_path / "ds"
    val = [_write_image(root / "images/val" / f"im{i:02d}.jpg", 40 + 3 * i, 64 - i, i) for i in range(20)]
    val += [_write_image(root / "images/val/nested/deep" / f"n{i}.png", 50, 30 + i, 100 + i) for i in range(10)]
    extra = [_write_image(root / "images/extra" / f"x{i}.jpg", 33, 47, 200 + i) for i in range(5)]
    (root / "images/val/notes.txt").write_text("not an image\n")  # ignored: not an image extension
    (root / "labels").mkdir()
    yaml = tmp_path / "data.yaml"
    yaml.write_text("path: ds\ntrain: images/val\nval: images/val\nnames: {0: thing}\n")
    return {"root": root, "yaml": yaml, "val": sorted(val), "extra": sorted(extra), "tmp": tmp_path}


def _build(spec: InputConfig, list_dir: Path, *, imgsz=(64, 64), batch=4, seed=42, **kw) -> InputSet:
    return build_inputs(spec, imgsz=imgsz, batch=batch, seed=seed, device=CPU, dtype=F32, list_dir=list_dir, **kw)


def _ds(data: Path, **kw) -> InputConfig:
    return InputConfig(kind="dataset", data=str(data), **kw)


# --- dataset + benchmark list ------------------------------------------------------------------------------


def test_dataset_list_size_content_and_sha(dataset, tmp_path):
    out = _build(_ds(dataset["yaml"], size=10), tmp_path / "run", preload=False)
    list_file = tmp_path / "run" / "benchmark_list.txt"
    assert out.benchmark_list == str(list_file) and list_file.is_file()
    lines = list_file.read_text().splitlines()
    expected = random.Random(42).sample(sorted(dataset["val"]), 10)
    assert lines == [str(p) for p in expected]
    assert out.images == expected and out.benchmark_size == 10 and out.warnings == []
    assert out.benchmark_list_sha256 == hashlib.sha256(list_file.read_bytes()).hexdigest()
    assert out.batches == [] and out.shape == (4, 3, 64, 64)


def test_dataset_same_seed_same_list_other_seed_other_list(dataset, tmp_path):
    a = _build(_ds(dataset["yaml"], size=10), tmp_path / "a", preload=False)
    b = _build(_ds(dataset["yaml"], size=10), tmp_path / "b", preload=False)
    c = _build(_ds(dataset["yaml"], size=10), tmp_path / "c", seed=7, preload=False)
    assert Path(a.benchmark_list).read_bytes() == Path(b.benchmark_list).read_bytes()
    assert a.benchmark_list_sha256 == b.benchmark_list_sha256
    assert Path(c.benchmark_list).read_bytes() != Path(a.benchmark_list).read_bytes()
    assert c.benchmark_list_sha256 != a.benchmark_list_sha256


def test_dataset_reuse_keeps_file_and_regenerate_overwrites(dataset, tmp_path):
    list_file = tmp_path / "shared" / "my_list.txt"
    first = _build(_ds(dataset["yaml"], size=8, list_path=str(list_file)), tmp_path / "r1", preload=False)
    assert first.benchmark_list == str(list_file) and not (tmp_path / "r1").exists()
    before, mtime = list_file.read_bytes(), list_file.stat().st_mtime_ns
    time.sleep(0.01)
    # another seed: reuse wins (fairness across runs), with a warning that the list is not what it would pick
    again = _build(_ds(dataset["yaml"], size=8, list_path=str(list_file)), tmp_path / "r2", seed=1, preload=False)
    assert list_file.read_bytes() == before and list_file.stat().st_mtime_ns == mtime
    assert again.benchmark_list_sha256 == first.benchmark_list_sha256 and again.images == first.images
    assert len(again.warnings) == 1 and "reuse_list=false" in again.warnings[0]
    same = _build(_ds(dataset["yaml"], size=8, list_path=str(list_file)), tmp_path / "r3", preload=False)
    assert same.warnings == []
    fresh = _build(_ds(dataset["yaml"], size=8, list_path=str(list_file), reuse_list=False), tmp_path, seed=1,
                   preload=False)
    assert list_file.read_bytes() != before
    assert fresh.images == random.Random(1).sample(sorted(dataset["val"]), 8)
    assert not [p for p in list_file.parent.iterdir() if p.name != "my_list.txt"]  # no temp files left


def test_dataset_size_exceeds_split_warns_and_uses_all(dataset, tmp_path):
    out = _build(_ds(dataset["yaml"], size=500), tmp_path, preload=False)
    assert out.images == dataset["val"] and out.benchmark_size == 30
    assert out.warnings == ["input.size=500 exceeds the 30 images of the split; using all 30"]


def test_dataset_val_as_txt_and_as_list(dataset, tmp_path):
    root = dataset["root"]
    some = dataset["val"][:3]
    lines = [f"./images/val/{some[0].name}", str(some[1].relative_to(root)), str(some[2]), "", "labels/x.txt"]
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "txt.yaml").write_text(f"path: {root}\nval: val.txt\n")
    assert split_images(tmp_path / "txt.yaml") == sorted(some)
    (tmp_path / "two.yaml").write_text("path: ds\nval: [images/val, images/extra, val.txt]\n")
    assert split_images(tmp_path / "two.yaml") == sorted(dataset["val"] + dataset["extra"])
    (tmp_path / "nopath.yaml").write_text("validation: ds/images/extra\n")  # no `path`: the yaml's directory
    assert split_images(tmp_path / "nopath.yaml") == dataset["extra"]
    (tmp_path / "test.yaml").write_text("path: ds\nval: images/val\ntest: images/extra\n")
    out = _build(_ds(tmp_path / "test.yaml", split="test", size=3), tmp_path / "t", preload=False)
    assert set(out.images) <= set(dataset["extra"]) and len(out.images) == 3


@pytest.mark.parametrize(
    "yaml_text, match",
    [
        ("path: ds\ntrain: images/val\n", "has no 'val:' key"),
        ("path: ds\nval: images/empty\n", "has no images"),
        ("path: ds\nval: images/nowhere\n", "does not exist"),
        ("path: ds\nval: bad.txt\n", r"image .*gone\.jpg listed in .*bad\.txt does not exist"),
        ("[unclosed\n", "cannot read dataset YAML"),
    ],
)
def test_dataset_errors(dataset, tmp_path, yaml_text, match):
    (dataset["root"] / "images/empty").mkdir()
    (dataset["root"] / "images/empty/readme.md").write_text("x")
    (dataset["root"] / "bad.txt").write_text("images/val/im00.jpg\nimages/val/gone.jpg\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    with pytest.raises(InputError, match=match) as err:
        _build(_ds(bad), tmp_path / "out", preload=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "benchmark_list.txt").exists()


def test_dataset_missing_yaml_and_missing_key(tmp_path):
    with pytest.raises(InputError, match=r"dataset YAML .*nope\.yaml does not exist"):
        _build(_ds(tmp_path / "nope.yaml"), tmp_path)
    with pytest.raises(InputError, match="input=dataset needs input.data"):
        _build(InputConfig(kind="dataset"), tmp_path)


def test_dataset_listed_image_deleted_after_list_was_made(dataset, tmp_path):
    first = _build(_ds(dataset["yaml"], size=5), tmp_path, preload=False)
    victim = first.images[2]
    victim.unlink()
    with pytest.raises(InputError, match=f"image {victim} in benchmark list .* does not exist"):
        _build(_ds(dataset["yaml"], size=5), tmp_path, preload=False)


def test_dataset_preloaded_batches(dataset, tmp_path):
    out = _build(_ds(dataset["yaml"], size=10), tmp_path, imgsz=(48, 80), batch=4)
    assert len(out.batches) == 3 and all(b.shape == (4, 3, 48, 80) for b in out.batches)
    assert all(b.is_contiguous() and b.dtype == F32 for b in out.batches)
    # the last batch wraps around: images 8, 9, 0, 1
    assert torch.equal(out.batches[2][2:], out.batches[0][:2])


# --- concurrency ---------------------------------------------------------------------------------------------

_RACE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from medbench.inputs.dataset import benchmark_list
    go = Path(sys.argv[3])
    Path(sys.argv[4]).touch()  # imported: ready to race
    while not go.exists():
        time.sleep(0.002)
    imgs, _ = benchmark_list(sys.argv[1], split="val", size=12, seed=3, list_file=Path(sys.argv[2]), reuse=True)
    print(len(imgs))
    """
)


def test_two_processes_create_the_list_at_once(dataset, tmp_path):
    list_file, go = tmp_path / "race" / "benchmark_list.txt", tmp_path / "go"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(dataset["yaml"]), str(list_file), str(go), str(r)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline and None in [p.poll() for p in procs]:
        time.sleep(0.01)
    go.touch()  # both imported: release them together
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert [o[0].strip() for o in outs] == ["12", "12"]
    expected = random.Random(3).sample(sorted(dataset["val"]), 12)
    assert list_file.read_text() == "".join(f"{p}\n" for p in expected)
    assert sorted(p.name for p in list_file.parent.iterdir()) == ["benchmark_list.txt"]


def test_write_list_first_writer_wins(tmp_path):
    target = tmp_path / "l.txt"
    a, b = [tmp_path / "a.jpg"], [tmp_path / "b.jpg"]
    assert write_list(target, a, overwrite=False) is True
    assert write_list(target, b, overwrite=False) is False and target.read_text() == f"{a[0]}\n"
    assert write_list(target, b, overwrite=True) is True and target.read_text() == f"{b[0]}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.txt"]


# --- folder / assets / synthetic -----------------------------------------------------------------------------


def test_folder_recursive_sorted_and_sha(dataset, tmp_path):
    folder = dataset["root"] / "images"
    out = _build(InputConfig(kind="folder", path=str(folder)), tmp_path, batch=8, preload=False)
    assert out.images == sorted(dataset["val"] + dataset["extra"]) and out.benchmark_size == 35
    assert out.benchmark_list is None and out.benchmark_list_sha256 == list_sha256(out.images)
    assert out.benchmark_list_sha256 == hashlib.sha256("\n".join(map(str, out.images)).encode() + b"\n").hexdigest()


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match=r"input=folder needs input.path=DIR"):
        _build(InputConfig(kind="folder"), tmp_path)
    with pytest.raises(InputError, match=f"image directory {tmp_path / 'missing'} does not exist"):
        _build(InputConfig(kind="folder", path=str(tmp_path / "missing")), tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(InputError, match=f"image folder {tmp_path / 'empty'} has no images"):
        _build(InputConfig(kind="folder", path=str(tmp_path / "empty")), tmp_path)


def test_corrupt_image_is_one_line_error(tmp_path):
    folder = tmp_path / "imgs"
    _write_image(folder / "a.jpg", 20, 30, 0)
    (folder / "b.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(InputError, match=r"cannot decode image .*b\.jpg") as err:
        _build(InputConfig(kind="folder", path=str(folder)), tmp_path)
    assert "\n" not in str(err.value)


def test_assets_finds_ultralytics_images(tmp_path):
    out = _build(InputConfig(kind="assets"), tmp_path, imgsz=(96, 128), batch=3)
    assert [p.name for p in out.images] == ["bus.jpg", "zidane.jpg"]
    assert len(out.batches) == 1 and out.batches[0].shape == (3, 3, 96, 128) == out.shape
    assert torch.equal(out.batches[0][2], out.batches[0][0])  # wrapped around
    assert 0.0 <= float(out.batches[0].min()) and float(out.batches[0].max()) <= 1.0


def test_synthetic_deterministic_per_seed(tmp_path):
    a = _build(InputConfig(), tmp_path, imgsz=(32, 48), batch=2, seed=5)
    b = _build(InputConfig(), tmp_path, imgsz=(32, 48), batch=2, seed=5)
    c = _build(InputConfig(), tmp_path, imgsz=(32, 48), batch=2, seed=6)
    assert a.kind == "synthetic" and a.shape == (2, 3, 32, 48) and len(a.batches) == 1
    assert a.batches[0].shape == (2, 3, 32, 48) and a.batches[0].is_contiguous()
    assert torch.equal(a.batches[0], b.batches[0]) and not torch.equal(a.batches[0], c.batches[0])
    assert a.images == [] and a.benchmark_list is None and a.benchmark_size is None and a.benchmark_list_sha256 is None
    h = build_inputs(InputConfig(), imgsz=(32, 48), batch=2, seed=5, device=CPU, dtype=torch.float16, list_dir=tmp_path)
    assert h.batches[0].dtype == torch.float16 and torch.equal(h.batches[0], a.batches[0].half())


# --- preprocessing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("src_hw", [(100, 37), (37, 100), (64, 64)])
@pytest.mark.parametrize("imgsz", [(64, 64), (48, 96)])
def test_letterbox_exact_shape_and_padding(src_hw, imgsz):
    img = np.full((*src_hw, 3), (10, 20, 30), dtype=np.uint8)  # BGR
    boxed = letterbox(img, imgsz)
    assert boxed.shape == (*imgsz, 3)
    x = to_tensor([boxed], device=CPU, dtype=F32)
    assert x.shape == (1, 3, *imgsz) and x.is_contiguous()
    centre = x[0, :, imgsz[0] // 2, imgsz[1] // 2]
    assert torch.allclose(centre, torch.tensor([30, 20, 10]) / 255)  # RGB now
    pads = {tuple((x[0, :, 0, 0] * 255).round().int().tolist()), tuple((x[0, :, -1, -1] * 255).round().int().tolist())}
    if src_hw[0] * imgsz[1] != src_hw[1] * imgsz[0]:  # aspect differs → grey 114 border
        assert (114, 114, 114) in pads


def test_batch_indices_wrap_around():
    assert batch_indices(5, 2) == [[0, 1], [2, 3], [4, 0]]
    assert batch_indices(4, 2) == [[0, 1], [2, 3]]
    assert batch_indices(2, 5) == [[0, 1, 0, 1, 0]]


# --- end-to-end scope ------------------------------------------------------------------------------------------


def test_end_to_end_needs_images():
    with pytest.raises(InputError, match=r"scope=end_to_end needs image inputs \(input=assets\|folder\|dataset\)"):
        EndToEndStep(torch.nn.Identity(), [], imgsz=(64, 64), batch=1, device=CPU, dtype=F32, task="detect")


def test_end_to_end_detection_stages(dataset):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False).eval()
    images = dataset["val"][:5]
    step = EndToEndStep(model, images, imgsz=(128, 128), batch=2, device=CPU, dtype=F32, task="detect")
    totals = []
    with torch.inference_mode():
        step()  # warm-up
        step.reset()
        assert all(v == [] for v in step.stage_ms.values())
        for _ in range(4):
            t0 = time.perf_counter()
            step()
            totals.append((time.perf_counter() - t0) * 1e3)
    assert isinstance(step.last_output, list) and len(step.last_output) == 2  # NMS: one tensor per image
    assert all(o.shape[-1] == 6 for o in step.last_output)
    stats = step.stage_stats()
    assert tuple(stats) == STAGES
    assert all(s["mean_ms"] > 0 and s["p50_ms"] > 0 and s["p95_ms"] >= s["p50_ms"] for s in stats.values())
    assert all(len(v) == 4 for v in step.stage_ms.values())
    stage_sum, total = sum(s["mean_ms"] for s in stats.values()), sum(totals) / len(totals)
    assert abs(stage_sum - total) / total < 0.15
    assert step.position == (5 * 2) % 5  # 5 calls of 2 images cycled through 5 images


def test_end_to_end_classify_topk(tmp_path):
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 10)).eval()
    imgs = [_write_image(tmp_path / f"{i}.png", 20, 30, i) for i in range(3)]
    step = EndToEndStep(model, imgs, imgsz=(32, 32), batch=2, device=CPU, dtype=F32, task="classify")
    with torch.inference_mode():
        step()
    values, indices = step.last_output
    assert values.shape == indices.shape == (2, 5)
    assert torch.all(values <= 1) and torch.all(values >= 0)


def test_decoded_images_are_reused_until_the_file_changes(tmp_path):
    """A sweep decodes each (image, imgsz) once; an edited image is decoded again."""
    from medbench.inputs.images import DecodedCache

    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), np.full((40, 60, 3), 7, np.uint8))
    cache = DecodedCache(max_bytes=10**8)
    first = cache.get(path, (32, 32))
    assert cache.get(path, (32, 32)) is first and not first.flags.writeable
    assert cache.get(path, (64, 64)).shape == (64, 64, 3)  # another size is another entry
    cv2.imwrite(str(path), np.full((40, 60, 3), 200, np.uint8))
    os.utime(path, ns=(first_ns := os.stat(path).st_mtime_ns + 10**9, first_ns))
    again = cache.get(path, (32, 32))
    assert again is not first and again[16, 16, 0] > first[16, 16, 0]
    small = DecodedCache(max_bytes=first.nbytes)  # room for one image: the oldest goes first
    small.get(path, (32, 32)), small.get(path, (64, 64))
    assert len(small.items) == 1 and small.nbytes == 64 * 64 * 3


def _png_with_bad_iccp(path: Path, w: int = 8, h: int = 6) -> Path:
    """A valid RGB PNG whose iCCP chunk holds no ICC profile: libpng warns about it on the C-level stderr."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([120, 60, 200]) * w for _ in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"iCCP", b"bad\x00\x00" + zlib.compress(b"not a profile" * 20))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def test_png_with_a_bad_iccp_chunk_decodes_without_libpng_noise(tmp_path, capfd):
    from medbench.inputs.images import read_image

    path = _png_with_bad_iccp(tmp_path / "bad.png")
    raw = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert "libpng warning" in capfd.readouterr().err  # the file does make libpng warn
    img = read_image(path)
    os.write(2, b"fd 2 is back\n")
    err = capfd.readouterr().err
    assert "libpng" not in err and "fd 2 is back" in err
    assert img.shape == (6, 8, 3) and (img == raw).all() and tuple(img[0, 0]) == (200, 60, 120)
