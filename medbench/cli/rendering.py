"""Collate's report as text for people (terminal), Markdown, LaTeX or CSV: what ``medbench collate`` prints and writes.

Text and Markdown: the runs table and the Δ% table as ``medbench.cli.tables`` fits them, then the verdict notes,
warnings (naming the runs), failed points (as the user wrote them) and skipped files. Markdown and LaTeX start with
the ablation table (``medbench.cli.paper``). No Δ% table when only the baseline ran (it would be all zeros).
"""

from __future__ import annotations

import textwrap

import pandas as pd

from medbench.analysis.ablation import ablation_table, only_baseline
from medbench.analysis.collate import Collated, point_label, setting_label
from medbench.cli import paper
from medbench.cli.tables import blank, constant_settings, delta_view, render_frame, runs_view, setting_line

TEXT_WIDTH = 120  # terminal notes and warnings are wrapped at this width


def _frame(view: pd.DataFrame, fmt: str) -> str:
    if fmt == "latex":
        return paper.tabular(view.map(paper.escape))
    return render_frame(view, fmt)


def _with_settings(settings: str, table: str, fmt: str) -> str:
    if not settings:
        return table
    line = f"every run: {settings}"
    return f"% {paper.escape(line)}\n{table}" if fmt == "latex" else f"{line}\n{table}" if fmt == "text" \
        else f"{line}\n\n{table}"


def render(df: pd.DataFrame, fmt: str = "text") -> str:
    """The runs table: csv (every column), text (terminal), md or latex (what fits: ``medbench.cli.tables``)."""
    if fmt == "csv":
        return df.to_csv(index=False)
    settings, view = runs_view(df, "text" if fmt == "text" else "md")
    return _with_settings(settings, _frame(view, fmt), fmt)


def render_delta(delta: pd.DataFrame, fmt: str = "text", said: str = "") -> str:
    """The Δ% table (csv: every column; else p50 Δ% with its interval and verdict, notes as footnotes);
    ``said``: the settings line already printed above (the runs table's), not repeated."""
    if fmt == "csv":
        return delta.to_csv(index=False)
    settings, view, notes = delta_view(delta, "text" if fmt == "text" else "md")
    table = _with_settings("" if settings == said else settings, _frame(view, fmt), fmt)
    if not notes:
        return table
    if fmt == "latex":
        return table + "\n" + "\n".join(f"% {n}" for n in notes)
    return table + ("\n\n" + "\n".join(notes) if fmt == "md" else "\n" + "\n".join(_wrap(n) for n in notes))


def _wrap(line: str) -> str:
    """A note for the terminal: wrapped at TEXT_WIDTH columns, continuation lines indented."""
    return "\n".join(textwrap.wrap(line, TEXT_WIDTH, subsequent_indent="    ", break_on_hyphens=False,
                                    break_long_words=False)) or line


def _failed_lines(c: Collated) -> list[str]:
    """One line per point that did not finish ok, its setting as the user wrote it (its overrides)."""
    lines = []
    for _, r in c.failed.iterrows():
        where = f"  ({r['run_dir']})" if not blank(r["run_dir"]) else ""
        lines.append(f"{r['status']}: {point_label(r)}: {r['error_type'] or 'error'}: {r['error']}{where}")
    return lines


def _verdict_notes(c: Collated) -> list[str]:
    """The table-level caveats; the unreliable rows in one line (each row's reason is its footnote in the table)."""
    caveats = c.caveats or []
    unreliable = c.delta[c.delta["verdict"] == "unreliable"] if not c.delta.empty else c.delta
    if len(unreliable) < 2:
        return caveats
    by_setting: dict[str, list[str]] = {}
    for _, r in unreliable.iterrows():
        by_setting.setdefault(setting_label(r), []).append(str(r["model"]))
    rows = "; ".join(f"{', '.join(models)} at {where}" for where, models in by_setting.items())
    return [line for line in caveats if ": unreliable (" not in line] + [
        f"{len(unreliable)} rows unreliable, no verdict ({rows}): why is in the Δ% table's notes; the flagged runs "
        "are named in the warnings"]


def _delta_title(c: Collated) -> str:
    return (f"Δ% vs {c.baseline or 'baseline'} (same imgsz, batch, device, precision, backend; replicates aggregated; "
            f"p50 Δ% with its 95% interval; verdict: beyond ±{c.threshold:g}% and the interval excludes 0)")


def _blocks(c: Collated, fmt: str) -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    ok = not c.table.empty and (c.table["status"] == "ok").any()
    if fmt in ("md", "latex") and ok:
        ab = ablation_table(c.table, c.delta, c.baseline)
        blocks.append(("Ablation", paper.latex(ab, c.baseline, c.threshold) if fmt == "latex"
                       else paper.markdown(ab, c.baseline, c.threshold)))
    blocks.append(("Runs", render(c.table, fmt) if not c.table.empty else "(no runs found)"))
    if only_baseline(c.delta, c.baseline):
        blocks.append(("Δ%", f"(no Δ% table: only {c.baseline} ran; nothing to compare it with)"))
    elif not c.delta.empty:
        said = setting_line(constant_settings(c.table[c.table["status"] == "ok"]))
        blocks.append((_delta_title(c), render_delta(c.delta, fmt, said)))
    if c.backend_delta is not None and not c.backend_delta.empty:
        blocks.append((f"Δ% vs backend {c.backend_delta.attrs.get('base')} (same model, imgsz, batch, device, "
                       "precision; replicates aggregated; p50 Δ% with its 95% interval; verdict: beyond "
                       f"±{c.threshold:g}% and the interval excludes 0)", render_delta(c.backend_delta, fmt)))
    return blocks


def render_report(c: Collated, fmt: str = "text") -> str:
    """Both tables (md and latex: the ablation table first), warnings, failed runs and skipped files."""
    if fmt == "csv":
        return render(c.table, "csv")
    blocks = _blocks(c, fmt)
    notes = [("Verdicts", [f"note: {line}" for line in _verdict_notes(c)]),
             ("Warnings", [f"warning: {w}" for w in c.warnings]), ("Failed runs", _failed_lines(c)),
             ("Skipped files", [f"skipped {p}: {why}" for p, why in c.found.skipped])]
    if fmt == "md":
        out = [f"## {title}\n\n{body}" for title, body in blocks]
        out += [f"## {title}\n\n" + "\n".join(f"- {ln}" for ln in lines) for title, lines in notes if lines]
        return "\n\n".join(out) + "\n"
    if fmt == "latex":
        out = ["% medbench collate (needs \\usepackage{booktabs})"]
        out += [body if title == "Ablation" else f"% {paper.escape(title)}\n{body}" for title, body in blocks]
        out += [f"% {title}\n" + "\n".join(f"% {ln}" for ln in lines) for title, lines in notes if lines]
        return "\n\n".join(out) + "\n"
    out = [body if title in ("Runs", "Δ%") else f"{_wrap(title + ':')}\n{body}" for title, body in blocks]
    out += ["\n".join(_wrap(ln) for ln in lines) for _, lines in notes if lines]
    if len(c.failed):
        out.append(f"{len(c.failed)} of {len(c.table)} runs did not finish ok")
    return "\n\n".join(out)
