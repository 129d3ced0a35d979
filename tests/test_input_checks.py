"""Bad inputs end in one line and a failed record, or in a documented correction recorded as a warning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medbench.config.schema import fit_imgsz, to_job
from medbench.errors import ConfigError
from medbench.inputs.images import scan_images

QUICK = ["iters=quick", "iters.warmup=0", "iters.iters=2"]


@pytest.mark.parametrize("override,message", [
    ("iters.max_iters=0", "iters.max_iters must be >= iters.iters"),
    ("iters.max_iters=-3", "iters.max_iters must be >= iters.iters"),
    ("iters.max_iters=10", "iters.max_iters must be >= iters.iters (300)"),
    ("iters.min_time_s=nan", "iters.min_time_s must be a finite number"),
    ("iters.min_time_s=inf", "iters.min_time_s must be a finite number"),
    ("result_file=''", "result_file must be a plain file name"),
    ("result_file=../../x.json", "result_file must be a plain file name"),
    ("result_file=sub/x.json", "result_file must be a plain file name"),
    ("result_file=..", "result_file must be a plain file name"),
])
def test_bad_values_are_one_config_error(compose_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_job(compose_cfg(override))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("imgsz,stride,want", [(1, 32, 32), (31, 32, 32), (33, 32, 64), (100, 32, 128),
                                               (500, 32, 512), (640, 32, 640), ((100, 64), 32, (128, 64))])
def test_imgsz_rounds_up_to_the_stride_like_ultralytics(imgsz, stride, want) -> None:
    from ultralytics.utils.checks import check_imgsz

    pair = imgsz if isinstance(imgsz, tuple) else (imgsz, imgsz)
    got, warning = fit_imgsz(pair, stride)
    assert got == (want if isinstance(want, tuple) else (want, want))
    assert list(got) == check_imgsz(list(pair), stride=stride)
    assert (warning is None) == (got == pair)


def test_odd_imgsz_runs_rounded_with_a_warning(tmp_path: Path, medbench_cli) -> None:
    threads = len(os.sched_getaffinity(0)) + 1  # one more than this process may use (not thousands: each is real)
    out = medbench_cli(*QUICK, "imgsz=33", f"runtime.threads={threads}", "model.imports=[json]", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["metadata"]["imgsz"] == 64 and record["metadata"]["imgsz_requested"] == 33
    assert record["metadata"]["input_shape"] == [1, 3, 64, 64]
    assert any("rounded up to [64, 64]" in w for w in record["warnings"])
    assert any(f"runtime.threads={threads} is more than" in w for w in record["warnings"])
    assert record["metadata"]["model_imports"] == ["json"] and record["metadata"]["trust_weights"] is False


def test_bad_result_file_fails_with_a_record_in_the_run_dir(tmp_path: Path, medbench_cli) -> None:
    out = medbench_cli(*QUICK, "imgsz=64", "result_file=../../x.json", "hydra.run.dir=run")
    assert out.returncode == 1
    assert not (tmp_path / "x.json").exists() and not (tmp_path.parent / "x.json").exists()
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "failed" and "result_file must be a plain file name" in record["error"]["message"]
    assert [ln for ln in out.stderr.splitlines() if "error" in ln.lower()] and "Traceback" not in out.stderr


def test_custom_result_file_points_are_collated(tmp_path: Path, medbench_cli) -> None:
    from medbench.results.load import load_dir

    out = medbench_cli("-m", *QUICK, "imgsz=64", "batch=1,2", "result_file=out.json", "hydra.sweep.dir=sweep")
    assert out.returncode == 0, out.stderr[-2000:]
    found = load_dir(tmp_path / "sweep")
    assert sorted(Path(r.run_dir).name for r in found.records) == ["0", "1"] and not found.crashed
    assert {r["status"] for r in found.records} == {"ok"}


def test_folder_with_symlink_loop_and_gif_counts_each_file_once(tmp_path: Path) -> None:
    import shutil
    import ultralytics

    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    shutil.copy(Path(ultralytics.__file__).parent / "assets" / "bus.jpg", root / "bus.jpg")
    (root / "anim.gif").write_bytes(b"GIF89a")
    (root / "notes.txt").write_text("x")
    os.symlink(root, root / "sub" / "loop")  # sub/loop -> imgs: a loop
    os.symlink(root / "bus.jpg", root / "sub" / "same.jpg")  # the same file again
    images, skipped = scan_images(root)
    assert images == [root / "bus.jpg"]
    assert [p.name for p in skipped] == ["anim.gif", "notes.txt"]


def test_folder_input_names_skipped_files_in_the_record(tmp_path: Path, medbench_cli) -> None:
    import shutil
    import ultralytics

    root = tmp_path / "imgs"
    root.mkdir()
    shutil.copy(Path(ultralytics.__file__).parent / "assets" / "bus.jpg", root / "bus.jpg")
    (root / "anim.gif").write_bytes(b"GIF89a")
    os.symlink(root, root / "loop")
    out = medbench_cli(*QUICK, "imgsz=64", "input=folder", f"input.path={root}", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["metadata"]["benchmark_size"] == 1
    assert any("skipped 1 file(s)" in w and "anim.gif" in w for w in record["warnings"])
