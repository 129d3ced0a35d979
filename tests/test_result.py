"""Result files: atomic writes, tolerant reads, error blocks and the environment record."""

import json
import math

import pytest

from medbench.errors import DeviceError, ResultError
from medbench.results.load import read_record as read_result
from medbench.results.store import collect_env, error_block, write_json_atomic


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(path, {"schema_version": 1, "status": "ok", "x": 1})
    write_json_atomic(path, {"schema_version": 1, "status": "ok", "x": 2})
    assert json.loads(path.read_text())["x"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_non_finite_numbers_become_null(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"a": math.inf, "b": [math.nan, 1.5], "c": {"d": -math.inf}})
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"schema_version": 1, "status": "ok"})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object.__new__(type("Unjsonable", (), {"__str__": None}))})
    assert json.loads(path.read_text())["status"] == "ok"
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "not found"), ('{"schema_version": 1, "status": "o', "unreadable"), ('{"hello": 1}', "not a medbench")],
)
def test_read_result_errors_are_one_line(tmp_path, content, match):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultError, match=match) as err:
        read_result(path)
    assert "\n" not in str(err.value)


def test_error_block_user_error_vs_bug():
    user = error_block(DeviceError("device=0 requested but CUDA is not available"))
    assert user == {"type": "device", "exception": "DeviceError",
                    "message": "device=0 requested but CUDA is not available"}
    try:
        {}["missing"]
    except KeyError as exc:
        bug = error_block(exc)
    assert bug["type"] == "KeyError" and "Traceback" in bug["traceback"]


def test_env_has_the_spec_fields():
    env = collect_env()
    for key in ("python", "platform", "cpu", "torch", "torchvision", "ultralytics", "cuda", "cudnn",
                "gpu_name", "gpu_count", "driver", "git_commit", "git_dirty"):
        assert key in env, key
    assert env["torch"] and env["python"].count(".") == 2
