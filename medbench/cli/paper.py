"""The paper tables: the ablation table (``medbench.analysis.ablation``) as Markdown and as LaTeX that compiles.

Markdown, the usual ablation-table layout: Model | Params (M) | GFLOPs | Latency mean / p50 ± interval / p95 (ms) |
FPS | GPU Mem (MB) | Δ% vs baseline (p50, its 95% interval and the verdict mark). Columns blank for every row
(GPU memory on a CPU run) are left out; settings that differ between rows (imgsz, ...) lead; settings every row
shares go into the caption.

LaTeX: the same table with booktabs rules (``\\usepackage{booktabs}``), every name escaped (``ghost\\_eca``,
``\\%``, ``\\#``, ``\\&``), a ``\\midrule`` between settings, and the runs table after it; only ASCII and math mode
(``$\\Delta$``, ``$\\pm$``), so it compiles with pdflatex and the default input encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from medbench.analysis.ablation import COLUMNS
from medbench.cli.tables import SETTING_COLUMNS, blank, constant_settings, decimals_to_tell_apart, drop_empty, fixed, \
    numeric, params_cells, pct, setting_line

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"$\sim$", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
          "Δ": r"$\Delta$", "±": r"$\pm$", "–": "--", "—": "---", "×": r"$\times$", "µ": r"$\mu$", "μ": r"$\mu$",
          "≥": r"$\geq$", "≤": r"$\leq$", "…": r"\ldots{}", "→": r"$\rightarrow$", "·": r"$\cdot$", "≈": r"$\approx$"}
MARKS_LATEX = {"~": r"$\sim$", "(baseline)": "baseline"}


def escape(text: object) -> str:
    """Plain text → LaTeX source that typesets it (specials escaped, a few Unicode symbols as math)."""
    return "".join(_LATEX.get(ch, ch if ord(ch) < 128 else "?") for ch in str(text))


def _p50_cell(r: pd.Series, latex: bool) -> str:
    p50, lo, hi = r["latency_p50_ms"], r["p50_ci_lo_ms"], r["p50_ci_hi_ms"]
    if blank(p50):
        return ""
    if blank(lo) or blank(hi):
        return fixed(p50, 2)
    up, down = fixed(hi - p50, 2), fixed(p50 - lo, 2)
    if up == down:
        return f"${fixed(p50, 2)} \\pm {up}$" if latex else f"{fixed(p50, 2)} ± {up}"
    return f"${fixed(p50, 2)}^{{+{up}}}_{{-{down}}}$" if latex else f"{fixed(p50, 2)} (+{up}/−{down})"


def _delta_cell(r: pd.Series, latex: bool) -> str:
    if r["is_baseline"]:
        return "---" if latex else "—"
    d, lo, hi, mark = r["d_latency_p50_pct"], r["d_p50_ci_lo_pct"], r["d_p50_ci_hi_pct"], r["verdict"]
    if blank(d):
        return ""
    interval = f" [{pct(lo)}, {pct(hi)}]" if not (blank(lo) or blank(hi)) else ""
    if latex:
        spaced = interval.replace(" [", "\\ [")
        return f"${pct(d)}{spaced}$" + (f" {MARKS_LATEX.get(mark, escape(mark))}" if mark else "")
    return f"{pct(d)}{interval}" + (f" {mark}" if mark else "")


def ablation_view(ab: pd.DataFrame, baseline: str | None, latex: bool = False) -> tuple[pd.DataFrame, str, list[int]]:
    """Display strings (headers in the target's syntax), the caption's setting line, and where settings change."""
    constant = constant_settings(ab, [*SETTING_COLUMNS, "variant"])
    varying = [c for c in [*SETTING_COLUMNS, "variant"] if c not in constant and c in ab
               and not all(blank(v) for v in ab[c])]
    text = escape if latex else str
    out = pd.DataFrame({c: [text(v) for v in ab[c]] for c in varying})
    out["Model"] = [text(m) for m in ab["model"]]
    kind, cells = params_cells(ab)
    out["Params" if kind == "count" else "Params (M)"] = cells
    out["GFLOPs"] = [fixed(v, decimals_to_tell_apart(ab["gflops"], 2, 4) or 2) for v in ab["gflops"]]
    out["Latency mean (ms)"] = [fixed(v, 2) for v in ab["latency_mean_ms"]]
    out["Latency p50 (ms)"] = [_p50_cell(r, latex) for _, r in ab.iterrows()]
    out["Latency p95 (ms)"] = [fixed(v, 2) for v in ab["latency_p95_ms"]]
    out["FPS"] = [fixed(v, 1) for v in ab["fps"]]
    out["GPU Mem (MB)"] = [fixed(v, 0) for v in ab["peak_gpu_mem_MB"]]
    out[f"Δ% vs {baseline}" if baseline else "Δ%"] = [_delta_cell(r, latex) for _, r in ab.iterrows()]
    keys = ab[varying].astype(str).agg("|".join, axis=1) if varying else pd.Series([""] * len(ab))
    breaks = [i for i in range(1, len(ab)) if keys.iloc[i] != keys.iloc[i - 1]]
    return drop_empty(out), setting_line(constant), breaks


def caption(ab: pd.DataFrame, baseline: str | None, settings: str, threshold: float) -> str:
    """What the table shows, in one paragraph (plain text: escaped for LaTeX by the caller)."""
    runs = sorted({str(r).split("/")[1] for r in ab["runs"]}) if len(ab) else []
    text = (f"Median over runs ({', '.join(runs)} per row){' at ' + settings if settings else ''}. "
            "Latency p50 with its interval: 95% within one run; with replicates the interval of the run medians")
    low = sorted({c for c in ab["p50_ci_conf"] if not blank(c) and c < 0.949}) if len(ab) else []
    text += f" (coverage {', '.join(f'{c:.0%}' for c in low)} with fewer than 6 runs)" if low else ""
    if baseline:
        text += (f". Δ%: p50 vs {baseline} at the same setting with its 95% interval; slower / faster when beyond "
                 f"±{threshold:g}% and the interval excludes 0, same when the whole interval lies within "
                 f"±{threshold:g}%, ~ otherwise (not distinguishable), unreliable when loaded, throttled or very "
                 "noisy runs leave no evidence")
    return text + "."


def markdown(ab: pd.DataFrame, baseline: str | None, threshold: float) -> str:
    from medbench.cli.tables import render_frame

    view, settings, _ = ablation_view(ab, baseline)
    return f"{caption(ab, baseline, settings, threshold)}\n\n{render_frame(view, 'md')}"


def _grouped_header(heads: list[str], group: str) -> list[str]:
    """``Latency mean (ms)``, ``Latency p50 (ms)`` → one ``Latency (ms)`` spanner over ``mean``, ``p50``: two rows."""
    cols = [i for i, h in enumerate(heads) if h.startswith(f"{group} ") and h.endswith(" (ms)")]
    if len(cols) < 2 or cols != list(range(cols[0], cols[-1] + 1)):
        return [" & ".join(escape(h) for h in heads) + r" \\"]
    span = f"\\multicolumn{{{len(cols)}}}{{c}}{{{escape(group)} (ms)}}"
    top = [""] * cols[0] + [span] + [""] * (len(heads) - cols[-1] - 1)
    rule = f"\\cmidrule(lr){{{cols[0] + 1}-{cols[-1] + 1}}}"
    bottom = [escape(h.removeprefix(f"{group} ").removesuffix(" (ms)")) if i in cols else escape(h)
              for i, h in enumerate(heads)]
    return [" & ".join(top) + r" \\", rule, " & ".join(bottom) + r" \\"]


def tabular(view: pd.DataFrame, breaks: Sequence[int] = (), group: str | None = None) -> str:
    """A booktabs ``tabular`` (cells already LaTeX): numbers right-aligned, text left; ``\\midrule`` before the
    rows in ``breaks``; ``group``: columns ``<group> ... (ms)`` under one spanning header."""
    spec = "".join("r" if numeric(view[c]) else "l" for c in view.columns)
    heads = _grouped_header(list(map(str, view.columns)), group) if group else \
        [" & ".join(escape(h) for h in view.columns) + r" \\"]
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", *heads, "\\midrule"]
    for i, row in enumerate(view.itertuples(index=False)):
        if i in breaks:
            lines.append("\\midrule")
        lines.append(" & ".join(row) + r" \\")
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"])


def latex_table(body: str, cap: str, label: str, small: bool = False) -> str:
    size = "\\footnotesize\n" if small else ""
    return (f"\\begin{{table}}[ht]\n\\centering\n\\setlength{{\\tabcolsep}}{{4pt}}\n{size}"
            f"\\caption{{{escape(cap)}}}\n\\label{{{label}}}\n{body}\n"
            "\\end{table}")


def latex(ab: pd.DataFrame, baseline: str | None, threshold: float) -> str:
    view, settings, breaks = ablation_view(ab, baseline, latex=True)
    return latex_table(tabular(view, breaks, group="Latency"), caption(ab, baseline, settings, threshold),
                       "tab:medbench-ablation")


__all__ = ["COLUMNS", "ablation_view", "caption", "escape", "latex", "latex_table", "markdown", "tabular"]
