"""Tab completion (bash, and zsh through bashcompinit) for ``medbench`` and ``python -m medbench``.

``eval "$(medbench -sc install=bash)"`` (or ``python -m medbench --shell-completion install=bash``) prints the
script below instead of Hydra's: Hydra's own script completes ``python some_file.py`` and console scripts, but
gives up on ``python -m medbench`` (it looks for a file named ``-m``), and its query reads the ``medbench`` of
``python -m medbench`` as an override. The script completes config groups, keys and values through Hydra's
query (``-sc query=bash``, with the command line rewritten to ``medbench ...``), offers the subcommands
(``collate``, ``compare``, ...) as the first word, and hands every other ``python`` command line to the
completion ``python`` had when the script was installed (else the shell's file completion).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

_PYTHON_M = re.compile(r"^\s*\S*python[0-9.]*\s+-m\s+medbench(\s|$)")

SCRIPT = r"""_MEDBENCH_PYTHON_COMP=$( (complete -p python 2>/dev/null || true) | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
if [ "$_MEDBENCH_PYTHON_COMP" == "_medbench_complete" ]; then _MEDBENCH_PYTHON_COMP=; fi
_medbench_complete()
{
    local words=($COMP_LINE) helper word="${COMP_WORDS[COMP_CWORD]}"
    if [ "$(basename -- "${words[0]}")" == "medbench" ]; then
        helper="${words[0]}"
    elif [ "${words[1]}" == "-m" ] && [ "${words[2]}" == "medbench" ]; then
        helper="${words[0]} -m medbench"
    elif [ -n "$_MEDBENCH_PYTHON_COMP" ]; then
        "$_MEDBENCH_PYTHON_COMP" "$@"  # another python command: the completion python had before
        return
    else
        return  # another python command: the shell's file completion
    fi
    local line="medbench ${COMP_LINE#*medbench}"
    local choices
    choices=$(COMP_POINT=${#line} COMP_LINE="$line" $helper -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _medbench_complete medbench python python3
"""

UNINSTALL = ("complete -r medbench python python3 2>/dev/null; unset -f _medbench_complete\n"
             '[ -n "$_MEDBENCH_PYTHON_COMP" ] && complete -F "$_MEDBENCH_PYTHON_COMP" python python3\n'
             "unset _MEDBENCH_PYTHON_COMP\n")


def _request(argv: Sequence[str]) -> str | None:
    """``install=bash`` / ``uninstall=bash`` / ``query=bash`` when ``argv`` asks for shell completion, else None."""
    for i, arg in enumerate(argv):
        if arg in ("-sc", "--shell-completion") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--shell-completion="):
            return arg.split("=", 1)[1]
    return None


def handle(argv: Sequence[str]) -> bool:
    """Answer a shell-completion request medbench handles itself (prints, returns True); else prepare Hydra's
    query (``COMP_LINE`` of ``python -m medbench ...`` rewritten to ``medbench ...``) and return False."""
    request = _request(argv)
    if request is None:
        return False
    if request == "install=bash":
        sys.stdout.write(SCRIPT)
        return True
    if request == "uninstall=bash":
        sys.stdout.write(UNINSTALL)
        return True
    line = os.environ.get("COMP_LINE")
    if request.startswith("query=") and line is not None:
        line = _PYTHON_M.sub("medbench ", line, count=1)
        words = line.split()
        first = len(words) == 1 or (len(words) == 2 and not line.endswith(" "))
        from medbench.cli.commands import SUBCOMMANDS

        if len(words) >= 2 and words[1] in SUBCOMMANDS and (len(words) > 2 or line.endswith(" ")):
            return True  # a subcommand's arguments: the shell completes file names
        if first:  # the first word: also the subcommands
            prefix = words[1] if len(words) == 2 else ""
            sys.stdout.write(" ".join(n for n in SUBCOMMANDS if n.startswith(prefix)) + " ")
        os.environ["COMP_LINE"] = line
        os.environ["COMP_POINT"] = str(len(line))
    return False
