"""Checks JSON data against the part of JSON Schema (draft 2020-12) that vdevperf's shipped schemas use.

A result file is checked on every load, so that a malformed one is refused in
one line naming the first bad place, instead of failing somewhere in a report
with a traceback. jsonschema would do it as a runtime dependency (with a
compiled extension) whose messages quote whole values; this subset is small,
and stricter where vdevperf's readers need it: an integer is an int (not 1.0)
within 64 bits, a number is finite and fits a float. A schema using a keyword
outside the subset is refused when it is loaded, so it cannot go unchecked.
"""

from __future__ import annotations

import math
from typing import Any

# Keywords that constrain a value, and keywords that only describe it.
KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "$ref",
        "if",
        "then",
        "else",
    }
)
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
# An integer fits 64 bits; an int where a number goes must convert to a float.
_INT_LIMIT = 2**63
_FLOAT_LIMIT = 2**1023
_TYPE_WORDS = {
    "null": "null",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "an array",
    "object": "an object",
}


class Schema:
    """A loaded schema; ``problem`` names the first place a value breaks it."""

    def __init__(self, schema: dict) -> None:
        self.root = schema
        self._check_keywords(schema, "#")

    def _check_keywords(self, node: Any, where: str) -> None:
        if not isinstance(node, dict):
            raise ValueError(f"schema {where}: not an object")
        for key, value in node.items():
            if key not in KEYWORDS | ANNOTATIONS:
                raise ValueError(f"schema {where}: keyword '{key}' is not supported by vdevperf.jsoncheck")
            if key == "$defs" or key == "properties":
                for name, sub in value.items():
                    self._check_keywords(sub, f"{where}/{key}/{name}")
            elif key in ("items", "if", "then", "else") or (key == "additionalProperties" and isinstance(value, dict)):
                self._check_keywords(value, f"{where}/{key}")
            elif key == "$ref":
                self._resolve(value)
            elif key == "type":
                for name in [value] if isinstance(value, str) else value:
                    if name not in _TYPE_WORDS:
                        raise ValueError(f"schema {where}: unknown type '{name}'")

    def _resolve(self, ref: str) -> dict:
        if not ref.startswith("#/"):
            raise ValueError(f"schema: only local references are supported, not '{ref}'")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def problem(self, value: Any) -> str | None:
        """Where and how ``value`` breaks the schema, in one line (``runs[0].config.flows: ...``), or None."""
        return self._first(self.root, value, "")

    def _first(self, schema: dict, value: Any, path: str) -> str | None:
        def at(why: str) -> str:
            return f"{path or 'top level'}: {why}"

        if "$ref" in schema:
            found = self._first(self._resolve(schema["$ref"]), value, path)
            if found:
                return found
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            if not any(_is(name, value) for name in names):
                return at(f"expected {' or '.join(_TYPE_WORDS[n] for n in names)}, found {_describe(value)}")
        if "const" in schema and not _same(value, schema["const"]):
            return at(f"must be {short(schema['const'])}, found {short(value)}")
        if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
            return at(f"{short(value)} is not one of {', '.join(short(c) for c in schema['enum'])}")
        if _is("number", value):
            found = _bounds(schema, value)
            if found:
                return at(found)
        if isinstance(value, list):
            if len(value) < schema.get("minItems", 0):
                return at(f"needs at least {schema['minItems']} item(s), has {len(value)}")
            if len(value) > schema.get("maxItems", math.inf):
                return at(f"allows at most {schema['maxItems']} item(s), has {len(value)}")
            if "items" in schema:
                for n, item in enumerate(value):
                    found = self._first(schema["items"], item, f"{path}[{n}]")
                    if found:
                        return found
        if isinstance(value, dict):
            found = self._object(schema, value, path)
            if found:
                return found
        if "if" in schema:
            branch = "then" if self._first(schema["if"], value, path) is None else "else"
            if branch in schema:
                return self._first(schema[branch], value, path)
        return None

    def _object(self, schema: dict, value: dict, path: str) -> str | None:
        for key in schema.get("required", ()):
            if key not in value:
                return f"{path or 'top level'}: missing key '{key}'"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            where = _join(path, key)
            if key in properties:
                found = self._first(properties[key], item, where)
            elif extra is False:
                found = f"{path or 'top level'}: unknown key {short(key)}"
            elif isinstance(extra, dict):
                found = self._first(extra, item, where)
            else:
                found = None
            if found:
                return found
        return None


def _is(name: str, value: Any) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) and -_INT_LIMIT <= value <= _INT_LIMIT
    if isinstance(value, int):  # "number": an int must fit a float
        return abs(value) < _FLOAT_LIMIT
    return isinstance(value, float) and math.isfinite(value)


def _bounds(schema: dict, value: float) -> str | None:
    if "minimum" in schema and value < schema["minimum"]:
        return f"{short(value)} is below the minimum {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{short(value)} is above the maximum {schema['maximum']}"
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return f"{short(value)} must be above {schema['exclusiveMinimum']}"
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        return f"{short(value)} must be below {schema['exclusiveMaximum']}"
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


def _describe(value: Any) -> str:
    for name in ("null", "boolean", "string", "array", "object"):
        if _is(name, value):
            return _TYPE_WORDS[name] if name in ("array", "object", "null") else f"{_TYPE_WORDS[name]} {short(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a JSON number)"
    if isinstance(value, int) and not _is("number", value):
        return "a number too large"
    return f"{'an integer' if _is('integer', value) else 'a number'} {short(value)}"


def short(value: Any, limit: int = 40) -> str:
    """A value as it would read in JSON, cut short, always on one line."""
    if isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null"}[value]
    elif isinstance(value, list | dict):
        text = "[...]" if isinstance(value, list) else "{...}"  # never repr: it may be nested too deep
    elif isinstance(value, int) and abs(value) > 10**limit:
        text = "a number too large"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: str) -> str:
    if not key.isidentifier():
        return f"{path}[{short(key)}]"
    return f"{path}.{key}" if path else key
