"""The one loader: version-1 files still read, and malformed files are skipped and named, never a crash.

Every reader goes through ``medbench.results.load``; the command-line readers (collate, compare, resume, targets)
are run on a directory holding every malformed case at once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import run_medbench
from medbench.analysis.collate import build
from medbench.analysis.entries import load_entries
from medbench.analysis.targets import check_targets, load_targets
from medbench.cli.resume import points_to_rerun
from medbench.errors import ResultError
from medbench.results.load import load_dir, load_source, read_record, read_suite

V1 = Path(__file__).parent / "fixtures" / "v1"


def _good(v1_sweep: Path) -> dict:
    return json.loads((v1_sweep / "0" / "result.json").read_text())


# --- version 1 ------------------------------------------------------------------------------------------------------

def test_version_1_files_read_as_version_2():
    found = load_dir(V1 / "sweep")
    assert [(r.status, r.schema_version, r.kind) for r in found.records] == [
        ("ok", 2, "run"), ("ok", 2, "run"), ("crashed", 2, "run")]
    assert not found.skipped and not found.notes
    ok = found.records[0]
    assert ok.metadata.model_name == "baseline" and ok.get("latency.p50_ms") > 0 and len(ok.samples_ms) == 5
    assert ok.get("telemetry.cpu_cores") and ok.get("metadata.iters_config.iters") == 5  # extra keys kept
    crashed = found.records[2]
    assert crashed.metadata.overrides[-1] == "model=eca" and "overrides" not in (crashed.model_extra or {})
    assert read_record(V1 / "config_failure" / "result.json").error.type == "config"
    assert read_record(V1 / "runtime_failure" / "result.json").error.type == "input"
    suite = read_suite(V1 / "suite.json")
    ok_entry, failed = suite.results
    assert ok_entry.kind == "api" and ok_entry.status == "ok" and failed.status == "failed"
    assert ok_entry.throughput.items_per_s > 0 and ok_entry.throughput.fps_p50 > 0
    assert ok_entry.memory.peak_rss_MB > 0 and ok_entry.metadata.duration_s > 0


def test_collate_and_compare_on_version_1_files(tmp_path):
    collated = build(V1 / "sweep")
    assert sorted(collated.table["status"]) == ["crashed", "ok", "ok"]
    assert collated.delta["d_latency_mean_pct"].notna().sum() == 2
    proc = run_medbench("--baseline", str(V1 / "sweep"), "--current", str(V1 / "sweep"), "--fail-on-regression",
                        cwd=tmp_path, module="medbench.compare", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "0 regressions" in proc.stdout
    suite = load_entries(V1 / "suite.json")
    assert [e.key for e in suite] == [("api", "sum", "cpu"), ("api", "boom", "cpu")]


# --- readers never crash --------------------------------------------------------------------------------------------

def _bad_cases(root: Path, good: dict) -> dict[str, str]:
    """Directories holding one malformed result each → the words the skip reason must contain."""
    cases = {}

    def case(name: str, content: str | None, why: str) -> Path:
        d = root / name
        d.mkdir(parents=True)
        if content is not None:
            (d / "result.json").write_text(content)
        cases[name] = why
        return d

    case("deep", "[" * 200_000 + "]" * 200_000, "nested too deeply")
    (case("dir", None, "is a directory") / "result.json").mkdir()
    loop = case("loop", None, "cannot read")
    os.symlink(loop / "result.json", loop / "result.json")  # a symlink to itself: ELOOP
    case("error_str", json.dumps({**good, "status": "failed", "error": "boom"}), "error")
    case("error_list", json.dumps({**good, "status": "failed", "error": ["a", "b"]}), "error")
    case("meta_list", json.dumps({**good, "metadata": ["x"]}), "metadata")
    case("str_samples", json.dumps({**good, "samples_ms": ["1.0", "2.0"]}), "samples_ms")
    case("version", json.dumps({**good, "schema_version": 99}), "unknown schema_version 99")
    case("foreign", json.dumps({"hello": 1}), "not a medbench result")
    case("truncated", json.dumps(good)[:100], "unreadable")
    return cases


@pytest.fixture
def bad_sweep(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "sweep"
    shutil.copytree(V1 / "sweep", root)
    good = _good(root)
    cases = _bad_cases(root / "bad", good)
    nan = json.dumps({**good, "latency": {**good["latency"], "p95_ms": float("nan")},
                      "samples_ms": [1.0, float("inf")]})  # Python writes NaN / Infinity; JSON has neither
    (root / "nan").mkdir()
    (root / "nan" / "result.json").write_text(nan)
    os.symlink(root, root / "bad" / "up")  # a directory symlink loop: not followed
    return root, cases


def test_every_malformed_file_is_skipped_with_its_reason(bad_sweep):
    root, cases = bad_sweep
    found = load_dir(root)
    reasons = {p.parent.name: why for p, why in found.skipped}
    assert set(reasons) == set(cases)
    for name, words in cases.items():
        assert words in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert [r.metadata.model_name for r in found.records if r.status == "ok"] == ["baseline", "ghost", "baseline"]
    nan = next(r for r in found.records if r.run_dir.endswith("nan"))
    assert nan.latency.p95_ms is None and nan.samples_ms is None  # read as missing ...
    assert len(found.notes) == 1 and "latency.p95_ms" in found.notes[0] and "samples_ms" in found.notes[0]  # ... said


def test_one_bad_file_asked_for_is_one_line(tmp_path, bad_sweep):
    root, cases = bad_sweep
    with pytest.raises(ResultError, match="results not found"):
        load_source(tmp_path / "missing.json")
    for name in cases:
        with pytest.raises(ResultError) as err:
            read_record(root / "bad" / name / "result.json")
        assert "\n" not in str(err.value)


def test_the_readers_survive_and_name_the_bad_files(bad_sweep, tmp_path):
    root, cases = bad_sweep
    collate = run_medbench(str(root), cwd=tmp_path, module="medbench.collate", timeout=120)
    assert collate.returncode == 0, collate.stderr
    for name in cases:
        assert f"bad/{name}/result.json" in collate.stdout
    assert "NaN/Infinity" in collate.stdout and "Traceback" not in collate.stderr
    compare = run_medbench("--baseline", str(root), "--current", str(root), cwd=tmp_path, module="medbench.compare",
                           timeout=120)
    assert compare.returncode == 0 and "skipped" in compare.stdout and "Traceback" not in compare.stderr
    assert check_targets(load_targets(), root).checks  # targets read through the same loader
    points = points_to_rerun(root)
    assert [p["status"] for p in points] == ["crashed"]
