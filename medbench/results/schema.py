"""The JSON Schemas of the record, generated from ``medbench.results.record`` and committed under ``docs/``.

    python -m medbench.results.schema docs/      # regenerate docs/result.schema.json and docs/suite.schema.json

A test checks that the committed files equal what this generates, so the documented record cannot drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from medbench.results.record import Record, Suite
from medbench.results.store import write_text_atomic

MODELS = {"result": Record, "suite": Suite}


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``result.json`` (``result``) or a suite file (``suite``)."""
    schema = MODELS[name].model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.schema.json", **schema}


def text(name: str) -> str:
    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv if argv is not None else sys.argv[1:] or ["docs"])[0])
    for name in MODELS:
        print(write_text_atomic(out / f"{name}.schema.json", text(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
