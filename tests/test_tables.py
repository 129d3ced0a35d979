"""Collate's tables for people: terminal tables that fit, the ablation table in Markdown and LaTeX (compiled by a
real pdflatex), escaping, exact params, failed points as written. Pure: records built here, no subprocess."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medbench.analysis.ablation import ablation_table
from medbench.analysis.collate import Collated, comparison_warnings, delta_table, results_table
from medbench.analysis.deltas import DEFAULT_THRESHOLD
from medbench.cli.paper import escape
from medbench.cli.rendering import render, render_report
from medbench.cli.tables import decimals_to_tell_apart, params_cells, pct, width
from medbench.analysis.replicates import run_from_record
from medbench.results.load import Loaded, to_record

PARAMS = {"baseline": 3_157_200, "eca": 3_157_213, "ghost": 1_865_316, "ghost_eca": 1_865_329, "p2": 2_921_000,
          "ghost_eca_p2": 1_700_001}


def _record(model: str, p50: float, imgsz: int = 64, *, run: int = 0, gpu_mem: float | None = None,
            status: str = "ok", repeat: int | None = None) -> dict:
    rng = np.random.default_rng(run)
    samples = sorted((p50 * rng.lognormal(0, 0.02, 40)).tolist())
    params = PARAMS.get(model, 1_000_000)
    rec = {"schema_version": 1, "status": status, "run_dir": f"/sweep/{run}",
           "error": None if status == "ok" else {"type": "crash", "message": "no result.json: killed"},
           "metadata": {"model_name": model, "imgsz": imgsz, "batch": 1, "device": "cpu", "precision": "fp32",
                        "benchmark_list_sha256": None, "repeat": repeat,
                        "overrides": [f"model={model}", f"imgsz={imgsz}", "device=cpu"]},
           "model_complexity": {"params": params, "params_M": params / 1e6, "gflops": params / 3.5e7},
           "latency": {"mean_ms": p50 * 1.01, "p50_ms": p50, "p95_ms": p50 * 1.1,
                       "p50_ci95_ms": [p50 * 0.98, p50 * 1.03]},
           "throughput": {"fps_p50": 1000 / p50}, "memory": {"peak_gpu_mem_MB": gpu_mem},
           "noise": {"iqr_over_median": 0.02}, "env": {"gpu_name": None}, "samples_ms": samples}
    if status != "ok":  # a point that died: the setting only as the overrides say (imgsz unknown here)
        rec.update(latency=None, throughput=None, samples_ms=None, model_complexity=None)
        rec["metadata"].update(imgsz=None, batch=None, precision=None)
    return rec


def _collated(records: list[dict], baseline: str = "baseline") -> Collated:
    """What ``build`` computes, from records made here (the runs keep their samples: intervals and verdicts)."""
    table = results_table(records)
    runs = {r["run_dir"]: run_from_record(to_record(r), r["run_dir"]) for r in records if r["status"] == "ok"}
    delta = delta_table(table, baseline, runs)
    return Collated(table, delta, baseline, comparison_warnings(table, delta, baseline), Loaded(),
                    threshold=DEFAULT_THRESHOLD)


def _study(imgszs=(64, 96)) -> list[dict]:
    """The six variants of an ablation at each imgsz, one run each."""
    out, run = [], 0
    for imgsz in imgszs:
        for model, p50 in (("baseline", 10.0), ("ghost", 8.0), ("eca", 10.4), ("p2", 13.0), ("ghost_eca", 8.3),
                           ("ghost_eca_p2", 11.0)):
            out.append(_record(model, p50 * imgsz / 64, imgsz, run=run))
            run += 1
    return out


def test_latex_escaping():
    assert escape("ghost_eca") == r"ghost\_eca" and escape("params_M") == r"params\_M"
    assert escape("params Δ%") == r"params $\Delta$\%"
    assert escape("a&b #1 ~x {y} $z ^ \\") == (r"a\&b \#1 $\sim$x \{y\} \$z \textasciicircum{} "
                                                r"\textbackslash{}")
    assert escape("8.2–10.5 ± 1") == r"8.2--10.5 $\pm$ 1"


def test_params_shown_exactly_only_when_rounding_hides_a_difference():
    same_at_2 = pd.DataFrame({"params_M": [3.1572, 3.157213], "params": [3_157_200, 3_157_213]})
    assert params_cells(same_at_2) == ("count", ["3,157,200", "3,157,213"])  # eca's 13 extra parameters
    apart = pd.DataFrame({"params_M": [3.1572, 1.865316], "params": [3_157_200, 1_865_316]})
    assert params_cells(apart) == ("M", ["3.16", "1.87"])
    assert params_cells(pd.DataFrame({"params_M": [3.1572, 3.1581], "params": [1, 2]})) == ("M", ["3.157", "3.158"])
    assert decimals_to_tell_apart([0.0902, 0.0902, float("nan")], 2, 4) == 2  # equal values need nothing more
    assert [pct(v) for v in (0.0, 0.00041, -40.918, float("nan"))] == ["0", "+0.0004", "-40.9", ""]


def test_terminal_tables_fit_and_drop_empty_columns():
    c = _collated(_study())
    text = render_report(c, "text")
    runs = render(c.table, "text")
    assert width(runs) <= 120 and width(text) <= 120, text
    assert "every run: batch=1, device=cpu, precision=fp32, backend=pytorch" in runs
    first = runs.splitlines()[1]
    for gone in ("GPU", "pipelined", "flag", "status", "device", "repeat"):  # blank or shared by every run
        assert gone not in first
    assert "3,157,213" in runs and "3,157,200" in runs  # eca vs baseline: exact counts
    assert "Δ% vs baseline" in text and "nan" not in text


def test_only_the_baseline_gives_no_delta_table():
    c = _collated([_record("baseline", 10.0), _record("baseline", 10.2, 96, run=1)])
    text = render_report(c, "text")
    assert "(no Δ% table: only baseline ran" in text and "p50 Δ%" not in text
    assert "p50 Δ%" not in render_report(c, "md")


def test_failed_points_as_written_and_noisy_runs_named():
    recs = [_record("baseline", 10.0), _record("ghost", 8.0, run=1), _record("p2", 9.0, run=2, status="crashed")]
    recs[1]["noise"]["iqr_over_median"] = 0.15
    c = _collated(recs)
    text = render_report(c, "text")
    assert "crashed: model=p2 imgsz=64 device=cpu: crash: no result.json: killed  (/sweep/2)" in text
    assert "nan" not in text and "None" not in text
    assert any("1 of 2 runs are noisy" in w and "ghost imgsz=64 batch=1 cpu fp32 (run 1)" in w for w in c.warnings)


def test_markdown_ablation_layout():
    recs = [_record("baseline", 10.0, gpu_mem=812.0), _record("eca", 10.4, run=1, gpu_mem=815.0)]
    md = render_report(_collated(recs), "md")
    assert md.startswith("## Ablation")
    header = next(ln for ln in md.splitlines() if ln.startswith("| Model"))
    cols = [h.strip() for h in header.strip("|").split("|")]
    assert cols == ["Model", "Params", "GFLOPs", "Latency mean (ms)", "Latency p50 (ms)", "Latency p95 (ms)", "FPS",
                    "GPU Mem (MB)", "Δ% vs baseline"]
    eca = next(ln for ln in md.splitlines() if ln.startswith("| eca"))
    cells = [h.strip() for h in eca.strip("|").split("|")]
    assert cells[1] == "3,157,213" and cells[7] == "815"
    assert cells[4] == "10.40 (+0.31/−0.21)"  # p50 with its interval (the record's [0.98, 1.03] x p50)
    assert re.fullmatch(r"\+[34]\.\d \[\+\d\.\d, \+\d\.\d\] (same|~)", cells[8]), cells[8]  # Δ%, interval, mark
    assert re.search(r"\| baseline +\| 3,157,200 \|.*\| +— \|\n", md)


def test_ablation_of_replicates_has_the_interval_of_the_run_medians():
    recs = [_record(m, p50 * f, run=10 * i + k, repeat=i) for i, f in enumerate((1.0, 1.01, 0.99, 1.02, 0.98))
            for k, (m, p50) in enumerate((("baseline", 10.0), ("ghost", 8.0)))]
    c = _collated(recs)
    ab = ablation_table(c.table, c.delta, "baseline").set_index("model")
    assert ab.loc["ghost", "runs"] == "5/5" and ab.loc["ghost", "latency_p50_ms"] == pytest.approx(8.0)
    assert ab.loc["ghost", ["p50_ci_lo_ms", "p50_ci_hi_ms"]].tolist() == pytest.approx([7.84, 8.16])
    assert ab.loc["ghost", "p50_ci_conf"] == pytest.approx(1 - 2 * 0.5 ** 5)  # [min, max] of 5 run medians
    assert ab.loc["ghost", "verdict"] == "faster" and ab.loc["baseline", "is_baseline"]
    assert "coverage 94% with fewer than 6 runs" in render_report(c, "md")


def _compile(tex: str, tmp_path: Path) -> subprocess.CompletedProcess:
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex
                   + "\n\\end{document}\n")
    return subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_compiles_with_pdflatex(tmp_path):
    recs = _study()
    recs[3]["metadata"]["model_name"] = "p2&#1%"  # specials in a name must not break the file
    recs += [_record("p3", 9.0, run=99, status="crashed")]
    c = _collated(recs)
    c.warnings.append("a warning with 50% and ghost_eca & co")
    tex = render_report(c, "latex")
    for expected in ("\\toprule", "\\midrule", "\\bottomrule", "ghost\\_eca", "p2\\&\\#1\\%",
                     "$\\Delta$\\% vs baseline",
                     "\\multicolumn{3}{c}{Latency (ms)}", "$10.00^{+0.30}_{-0.20}$"):
        assert expected in tex, expected
    body = "\n".join(ln for ln in tex.splitlines() if not ln.startswith("%"))  # notes are comments, as written
    assert not re.search(r"(?<![\\}])[_%#]", body)  # names escaped (& is the column separator, }_{ a subscript)
    assert "% warning: a warning with 50% and ghost_eca & co" in tex
    proc = _compile(tex, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").read_bytes()[:5] == b"%PDF-"
    broken = _compile("\\begin{tabular}{l}\nghost_eca \\\\\n\\end{tabular}", tmp_path)  # the check can fail
    assert broken.returncode != 0


def test_backend_delta_renders_in_every_format():
    from medbench.analysis.backend_delta import backend_delta_table

    recs = [_record("eca", 10.0), _record("eca", 7.0, run=1)]
    recs[1]["metadata"]["backend"] = "onnxruntime"
    c = _collated(recs, "eca")
    c.backend_delta = backend_delta_table(c.table, base_backend="pytorch")
    text = render_report(c, "text")
    assert "Δ% vs backend pytorch" in text and "onnxruntime" in text and "nan" not in text
    assert "Δ% vs backend pytorch" in render_report(c, "md")
    assert "backend pytorch" in render_report(c, "latex") and "onnxruntime" in render_report(c, "latex")


def test_outputs_never_replace_the_sweeps_own_files(tmp_path):
    from argparse import Namespace

    from medbench.cli.collate import _outputs
    from medbench.errors import MedbenchError

    def plan(**kw):
        args = Namespace(directory=tmp_path, output=None, format=None, force=False, baseline=None,
                         threshold=DEFAULT_THRESHOLD, baseline_backend=None)
        vars(args).update(kw)
        return [(p.name, fmt) for p, fmt in _outputs(args)]

    assert plan() == [("comparison.csv", "csv"), ("comparison.md", "md")]  # the sweep's own, refreshed
    assert plan(baseline="ghost", threshold=3.0) == [("comparison-vs-ghost-threshold-3.csv", "csv"),
                                                     ("comparison-vs-ghost-threshold-3.md", "md")]
    assert plan(format="latex") == []  # printed to stdout
    assert plan(output=tmp_path / "t.tex") == [("t.tex", "latex")]
    (tmp_path / "comparison_delta.csv").write_text("x")
    with pytest.raises(MedbenchError, match="comparison_delta.csv is the sweep's own table"):
        plan(output=tmp_path / "comparison.csv")  # its _delta sibling would be replaced
    assert plan(output=tmp_path / "comparison.csv", force=True) == [("comparison.csv", "csv")]
