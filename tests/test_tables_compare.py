"""compare's printout: a failed suite entry as one clean line (its traceback only in the JSON), and section
headings that say what they count (metrics in settings). A real suite run, compared in-process."""

from __future__ import annotations

import importlib
import json

import pytest

from medbench.api.benchmark_suite import BenchmarkSuite
from medbench.cli.compare import main, one_line_error


def _work() -> int:
    return sum(range(500))


def _broken() -> int:
    raise RuntimeError("shape mismatch: expected 3 channels\ngot 4 channels")


def _suite(tmp_path, name: str, broken: bool) -> str:
    suite = BenchmarkSuite("t", output_dir=tmp_path, warmup_iterations=2, test_iterations=20)
    suite.add_benchmark("sum", _work).add_benchmark("other", _work)
    suite.add_benchmark("conv", _broken if broken else _work)
    suite.run_all()
    return str(suite.save_results(name))


def test_failed_suite_entry_is_one_line_and_sections_count_what_they_say(tmp_path, capsys):
    base, cur = _suite(tmp_path, "base.json", False), _suite(tmp_path, "cur.json", True)
    out_json = tmp_path / "report.json"
    assert main(["--baseline", base, "--current", cur, "--output", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "Traceback" not in text and "\\n" not in text and "{'" not in text
    lines = text.splitlines()
    i = lines.index("Failed: 1 setting (tracebacks in the --output JSON)")
    assert lines[i + 1] == "   conv [cpu]: current failed (RuntimeError: shape mismatch: expected 3 channels)"
    report = json.loads(out_json.read_text())
    [err] = report["failed"][0]["errors"]
    assert err["side"] == "current" and "Traceback (most recent call last)" in err["traceback"]
    assert "_broken" in err["traceback"] and "got 4 channels" in err["traceback"]
    stable = report["stable"]
    settings = {c["setting"] for c in stable}
    head = next(ln for ln in lines if ln.startswith("Stable"))
    def plural(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    counted = f"{plural(len(stable), 'metric')} in {plural(len(settings), 'setting')}"
    assert head == f"Stable (within the threshold): {counted}"
    body = lines[lines.index(head) + 1: lines.index(head) + 1 + len(settings)]
    assert sum(int(ln.split(" metric")[0].split()[-1]) for ln in body) == len(stable)  # per-setting counts add up
    n = len(report["regressions"])  # conv's status, and whatever timing noise made of sum / other
    assert lines[-2].startswith(f"metrics: {n} regression{'' if n == 1 else 's'}, ")  # then "report → ..."
    assert "settings: 3 matched, 0 models differ, 0 unmatched, 1 failed" in lines[-2]


def test_one_line_error_of_old_texts():
    assert one_line_error("RuntimeError: bad\nmore") == "RuntimeError: bad"
    assert one_line_error("ValueError: x\\n  File y") == "ValueError: x"  # a literal \n from an older file
    tb = 'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\nKeyError: \'k\''
    assert one_line_error(tb) == "KeyError: 'k'"


@pytest.mark.parametrize("module", ["medbench.cli.collate", "medbench.cli.compare"])
def test_help_has_no_raw_markup(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "usage: medbench " in text
    assert "`" not in text and "**" not in text and "SPEC" not in text, text
