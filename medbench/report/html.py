"""Small HTML building blocks for the report: escaped text, tables from DataFrames, sections, one inline style sheet.

Everything is escaped here (names, paths and error messages come from users' files); nothing refers to anything
outside the page (no CDN, no script, no external style sheet).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1b1f24;
       margin: 0 auto; padding: 1.5em 2em 4em; max-width: 1500px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
.sub { color: #57606a; margin-top: 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td:last-child { min-width: 14em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
.slower { color: #b42318; font-weight: 600; } .faster { color: #067647; font-weight: 600; }
.unreliable, .dominated { color: #9a6700; } .front { color: #0550ae; font-weight: 600; }
.failed, .crashed, .interrupted, .not_run { color: #b42318; font-weight: 600; }
ul.warnings li { margin: 0.2em 0; } .muted { color: #57606a; } code { font-size: 12px; }
figure { margin: 0.8em 0 1.5em; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 13px; max-width: 1100px; }
dl.kv { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; } dl.kv dt { font-weight: 600; }
dl.kv dd { margin: 0; }
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def blank(value: Any) -> bool:
    """None, NaN and empty strings show as an empty cell."""
    if value is None:
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return True
    try:
        if pd.isna(value) is True:
            return True
    except (TypeError, ValueError):
        pass
    return isinstance(value, str) and not value.strip()


def number(value: Any, digits: int = 2) -> str:
    if blank(value):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):d}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


Cell = Callable[[pd.Series], tuple[str, str]]  # a row → (cell HTML, css class)


def table(df: pd.DataFrame, columns: Mapping[str, str | Cell], *, drop_empty: bool = True, css: str = "") -> str:
    """An HTML table: ``columns`` maps a header to a column of ``df`` (plain value, numbers formatted) or to a
    function of the row giving ``(html, css class)``. Columns empty in every row are left out."""
    cells: dict[str, list[tuple[str, str]]] = {}
    for header, spec in columns.items():
        if callable(spec):
            col = [spec(row) for _, row in df.iterrows()]
        elif spec in df:
            col = [(esc(number(v)), "num" if isinstance(v, (int, float)) and not isinstance(v, bool) else "")
                   for v in df[spec]]
        else:
            continue
        if drop_empty and all(not text for text, _ in col):
            continue
        cells[header] = col
    head = "".join(f"<th>{esc(h)}</th>" for h in cells)
    rows = []
    for i in range(len(df)):
        tds = "".join(f'<td class="{esc(c)}">{text}</td>' if c else f"<td>{text}</td>"
                      for text, c in (cells[h][i] for h in cells))
        rows.append(f"<tr>{tds}</tr>")
    attr = f' class="{esc(css)}"' if css else ""
    return (f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def bullets(items: Iterable[str], css: str = "warnings") -> str:
    """A list of already escaped HTML items (empty string when there are none)."""
    lis = "".join(f"<li>{item}</li>" for item in items)
    return f'<ul class="{css}">{lis}</ul>' if lis else ""


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if not blank(v))
    return f'<dl class="kv">{rows}</dl>'


def figure(uri: str | None, alt: str, caption: str) -> str:
    if uri is None:
        return f'<p class="muted">{esc(alt)}: nothing to plot.</p>'
    return (f'<figure><img src="{uri}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    body = "\n".join(s for s in sections if s)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n<h1>{esc(title)}</h1>"
            f'<p class="sub">{esc(subtitle)}</p>\n{body}\n</body></html>\n')
