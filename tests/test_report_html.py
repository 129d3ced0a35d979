"""The sweep's HTML report, rendered from a real small sweep and opened in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import QUICK
from medbench.cli import html_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium (Debian: apt-get install "
                                                             "chromium; .ci/run installs it before pytest)")


def test_labels_of_near_identical_variants_do_not_overlap() -> None:
    """eca has 13 parameters more than baseline and about its latency: both labels readable, nothing on top."""
    from medbench.cli.plots import latency_vs_size_figure
    from medbench.report.labels import overlapping

    rows = [("baseline", 3.157200, 20.0), ("eca", 3.157213, 20.1), ("ghost", 1.72, 15.0), ("ghost_eca", 1.72, 15.05),
            ("p2", 3.35, 31.0), ("ghost_eca_p2", 1.9, 24.0)]
    table = pd.DataFrame([{"model": m, "params_M": p, "latency_p50_ms": t, "status": "ok", "imgsz": 640, "batch": 1,
                           "device": "cpu", "precision": "fp32", "variant": ""} for m, p, t in rows])
    fig = latency_vs_size_figure(table)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    a, b = ax.transData.transform([(3.157200, 20.0), (3.157213, 20.1)])
    assert np.hypot(*(a - b)) < 5  # the two points nearly coincide on screen
    assert sorted(t.get_text() for t in ax.texts) == sorted(m for m, _, _ in rows)
    assert overlapping(ax.texts, renderer) == []


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@needs_chromium
def test_sweep_report_opens_in_headless_chromium(trained_checkpoints, medbench_cli, tmp_path: Path) -> None:
    base, ghost = trained_checkpoints["base_s0"], trained_checkpoints["ghost_s0"]
    missing = tmp_path / "gone" / "best.pt"
    proc = medbench_cli("-m", *QUICK, "iters.iters=8", "device=cpu", f"model.weights={base},{ghost},null,{missing}",
                        "hydra.sweep.dir=sweep")
    sweep = tmp_path / "sweep"
    records = {r["metadata"]["model_name"]: r for r in
               (json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json")))}
    assert proc.returncode != 0 and set(records) >= {"base_s0", "ghost_s0", "baseline"}, proc.stderr[-3000:]
    assert records["base_s0"]["accuracy"]["source"] in ("checkpoint", "results.csv")
    assert 0.0 <= records["ghost_s0"]["accuracy"]["map50_95"] <= 1.0
    assert records["baseline"]["accuracy"] is None  # random init: null, not 0
    csv = pd.read_csv(sweep / "comparison.csv").set_index("model")
    assert csv.loc["ghost_s0", "map50_95_pct"] == pytest.approx(records["ghost_s0"]["accuracy"]["map50_95"] * 100)
    assert pd.isna(csv.loc["baseline", "map50_95_pct"])  # blank, not 0
    assert "mAP50-95" in proc.stdout  # the terminal table shows it

    page = sweep / "report.html"
    assert page.is_file()  # written by the end-of-sweep callback
    assert html_report.main([str(sweep)]) == 2  # the sweep's own report is kept
    assert html_report.main([str(sweep), "--output", str(tmp_path / "again.html")]) == 0

    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    assert "<table" in dom and "Pareto front" in dom and "Latency distributions" in dom
    for name in ("base_s0", "ghost_s0", "baseline"):
        assert name in dom
    assert re.search(r'<td class="failed">failed</td>', dom) and str(missing) in dom  # the failed point, named
    assert re.search(r'<td class="front">front</td>', dom)
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(images) == 3  # Pareto vs latency, Pareto vs GFLOPs, distributions
    from PIL import Image

    for data in images:
        assert Image.open(io.BytesIO(base64.b64decode(data))).size[0] > 200
    assert not re.search(r'(src|href)="(https?:)?//', dom)  # nothing fetched from elsewhere: opens offline

    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars", page.as_uri(),
              profile=tmp_path / "profile")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (2400, 1280, 3)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, tables, plots: not blank


def test_page_escapes_what_files_say_and_needs_nothing_from_elsewhere(tmp_path: Path) -> None:
    """Names, warnings and errors come from users' files: escaped, never markup; the page holds no script."""
    from medbench.analysis.collate import build
    from medbench.report.build import render

    rng = np.random.default_rng(0)
    for i, (name, status) in enumerate([("baseline", "ok"), ("<script>alert(1)</script>", "ok"), ("x&y", "failed")]):
        samples = list(rng.normal(10 + i, 0.2, 30)) if status == "ok" else None
        record = {"schema_version": 2, "kind": "run", "status": status,
                  "error": None if status == "ok" else {"type": "model", "message": "weights file not found: <a.pt>"},
                  "metadata": {"model_name": name, "imgsz": 64, "batch": 1, "device": "cpu", "precision": "fp32"},
                  "latency": {"p50_ms": float(np.median(samples))} if samples else None, "samples_ms": samples,
                  "warnings": ["<img src=x onerror=alert(2)>"]}
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "result.json").write_text(json.dumps(record))
    page = render(build(tmp_path), tmp_path)
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "weights file not found: &lt;a.pt&gt;" in page
    assert "No run carries an accuracy" in page  # random init only: no Pareto front, said why
    assert page.count('<img src="data:image/png;base64,') == 1  # the latency distributions
    assert not re.search(r'(src|href)="(https?:)?//', page)
