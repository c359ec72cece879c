"""The policy's JSON Schema (the single source of its shape) and how messages show values. Data only."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Final

SCHEMA: Final[dict[str, Any]] = json.loads(
    resources.files("retention").joinpath("schema", "policy.schema.json").read_text(encoding="utf-8")
)
_RULE_SCHEMA: Final[dict[str, Any]] = SCHEMA["$defs"]["rule"]
_DURATION_SCHEMA: Final[dict[str, Any]] = SCHEMA["$defs"]["duration"]
_NAME_SCHEMA: Final[dict[str, Any]] = _RULE_SCHEMA["properties"]["name"]
# JSON Schema's `$` also matches before a final newline; names must not smuggle one in.
_NAME: Final = re.compile(_NAME_SCHEMA["pattern"].removeprefix("^").removesuffix("$"))
_NAME_RULES: Final = "use 1 to 63 lowercase letters, digits and '-', starting with a letter or digit"
_TYPE_NAMES: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}
_SHOWN_CHARS: Final = 40


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _show(value: object) -> str:
    """A value as a message shows it: YAML spelling for scalars, a kind for collections, long text cut."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
