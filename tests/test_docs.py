"""The README's and docs/'s code blocks run as written.

Every fenced ``python`` and ``bash`` block of README.md and docs/*.md runs in a fresh temporary directory (python:
a fresh interpreter; bash: ``bash -euo pipefail`` with this interpreter's bin/ first on PATH), unless the line
before it is ``<!-- not-tested: reason -->`` (a placeholder path, a long sweep, a GPU, a cluster: the reason says
which). Blocks of other languages (yaml, text) are not programs and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
MARK = re.compile(r"<!--\s*not-tested:\s*(\S.*?)\s*-->\s*$")
RUN = {"python", "bash", "sh", "shell"}


def blocks() -> list[tuple[str, str, str, str | None]]:
    """``(where, language, code, not-tested reason)`` of every runnable block."""
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) not in RUN:
                continue
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{doc.relative_to(ROOT)}:{line}", m.group(1), m.group(2), mark.group(1) if mark else None))
    return out


BLOCKS = blocks()


def test_every_block_runs_or_says_why_not():
    assert any(lang == "python" and reason is None for _, lang, _, reason in BLOCKS)
    for where, _, _, reason in BLOCKS:
        assert reason is None or len(reason) > 5, f"{where}: say why the block is not tested"


@pytest.mark.slow
@pytest.mark.parametrize("where,lang,code", [(w, lang, c) for w, lang, c, reason in BLOCKS if reason is None],
                         ids=[w for w, _, _, reason in BLOCKS if reason is None])
def test_block_runs_as_written(where, lang, code, tmp_path):
    env = {**os.environ, "YOLO_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{where} ({lang}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
