"""The base of every record block: known fields typed, unknown ones kept, dict-style access (``block["key"]``,
``block.get("latency.p50_ms")``) for readers written against the JSON. ``Numbers``: measurement blocks, strict."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Block(BaseModel):
    """A record block: known fields typed, unknown ones kept; ``block["key"]`` reads either."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.model_extra or {}
        if key not in extra:
            raise KeyError(key)
        return extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        """A key with a value: a typed field that is not None, or an extra key."""
        if isinstance(key, str) and key in type(self).model_fields:
            return getattr(self, key) is not None
        return key in (self.model_extra or {})

    def get(self, dotted: str, default: Any = None) -> Any:
        """A nested value by dotted path (``"latency.p50_ms"``), or ``default`` where any level is missing."""
        value = dig(self, dotted)
        return default if value is None else value


class Numbers(Block):
    """A measurement block: strict numbers (an int is a number, a string or a bool is not)."""

    model_config = ConfigDict(extra="allow", strict=True, validate_assignment=True)


def dig(node: Any, dotted: str) -> Any:
    """A nested value of a model or dict by dotted path (typed fields and extra keys alike), or None."""
    for key in dotted.split("."):
        if isinstance(node, BaseModel):
            node = getattr(node, key, None) if key in type(node).model_fields else (node.model_extra or {}).get(key)
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
    return node


def json_form(model: BaseModel) -> dict[str, Any]:
    """Every top-level field; inside blocks only the fields that were given (read or set)."""
    out = model.model_dump(mode="json", exclude_unset=True)
    for name, info in type(model).model_fields.items():
        if name not in out and not info.exclude:
            value = getattr(model, name)
            out[name] = value.model_dump(mode="json", exclude_unset=True) if isinstance(value, BaseModel) else value
    return {name: out[name] for name in [*type(model).model_fields, *out] if name in out}
