"""Text for people, in one place: the number formatter, text tables (tabulate), and one-line errors."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

MAX_ERROR_CHARS = 400


def number(value: Any, missing: str = "-") -> str:
    """A number for a table or a message: 4 significant digits, thousands separators for big ones, ints exact."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str = "text") -> str:
    """A text (``text``) or GitHub Markdown (``md``) table; cells already formatted or plain values."""
    return tabulate([list(r) for r in rows], headers=list(headers), tablefmt="github" if fmt == "md" else "simple",
                    disable_numparse=True, missingval="")


def first_line(exc: BaseException | str, with_type: bool = False) -> str:
    """The first non-empty line of an error message (the exception's class name when it has none);
    ``with_type``: prefixed by the class name (``ValueError: ...``)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]


def one_line(exc: BaseException | str) -> str:
    """Squash a (possibly multi-line) error message into one line, dropping OmegaConf's debug trailer.

    Hydra's composition errors keep the useful half in ``__cause__`` ("Key 'x' not in 'RuntimeConfig'").
    """
    text = str(exc)
    cause = getattr(exc, "__cause__", None)
    if cause is not None and str(cause).strip():
        text = f"{text}\n{first_line(cause)}"
    text = text.split("Config search path:")[0]  # Hydra's list of config sources: noise for a user
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not re.match(r"^(object_type|reference_type|full_key)=", ln)]
    out = " ".join(lines) or type(exc).__name__
    return out if len(out) <= MAX_ERROR_CHARS else out[: MAX_ERROR_CHARS - 1] + "…"


def usage_error(prog: str, exc: BaseException | str) -> int:
    """Say a user error of command ``prog`` in one line on stderr; the exit status of bad input (2)."""
    import sys

    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return 2


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as medbench prints it: relative to the current directory when it lies under it, else absolute."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve())) if p.is_absolute() else str(p)
    except (ValueError, OSError):
        return str(p)
