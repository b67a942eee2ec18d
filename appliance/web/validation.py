"""JSON request bodies, checked the same way for the API and the public endpoints.

One status for each fault, wherever the body arrives, so a client learns one rule:

- 415: the endpoint needs ``Content-Type: application/json`` and the body is not declared so;
- 400: the bytes are not a JSON object (malformed, not UTF-8, empty, an array or a bare value);
- 413: the body is larger than ``json_max_bytes``;
- 400: the document nests deeper than ``json_max_depth`` (checked on the raw bytes, before
  the parser could recurse into it);
- 422: the object is well formed but its content is wrong (an unknown or a missing field,
  a wrong type, null where not allowed, too long, not one of the allowed values).

Unknown fields are a fault of content like a wrong type, so they answer 422 as well: a
client that sends a field we do not know gets told which fields exist, never ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flask import abort, current_app, has_app_context, request

from appliance.core.config import DEFAULTS

# A JSON string (escapes included) or one bracket: strings are skipped whole, so a bracket
# inside a string never counts as nesting.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


@dataclass(frozen=True)
class F:
    """One body field."""

    type: str  # string | integer | boolean | array (max_length: the most items)
    required: bool = False
    max_length: int | None = None
    enum: tuple | None = None
    nullable: bool = False
    description: str = ""

    def check(self, name, value):
        if value is None:
            if self.nullable:
                return None
            abort(422, description=f"{name} must not be null.")
        if self.type == "string":
            if not isinstance(value, str):
                abort(422, description=f"{name} must be a string.")
            if self.max_length and len(value) > self.max_length:
                abort(422, description=f"{name} is limited to {self.max_length} characters.")
        elif self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or not (0 < value < 2**62):
                abort(422, description=f"{name} must be a positive integer.")
        elif self.type == "boolean" and not isinstance(value, bool):
            abort(422, description=f"{name} must be true or false.")
        elif self.type == "array":
            if not isinstance(value, list):
                abort(422, description=f"{name} must be a list.")
            if self.max_length and len(value) > self.max_length:
                abort(422, description=f"{name} holds at most {self.max_length} items.")
        if self.enum and value not in self.enum:
            abort(422, description=f"{name} must be one of: {', '.join(map(str, self.enum))}.")
        return value

    def openapi(self) -> dict:
        out = {"type": self.type}
        if self.type == "array":
            out["items"] = {"type": "object"}
            if self.max_length:
                out["maxItems"] = self.max_length
        elif self.max_length:
            out["maxLength"] = self.max_length
        if self.enum:
            out["enum"] = list(self.enum)
        if self.nullable:
            out["nullable"] = True
        if self.description:
            out["description"] = self.description
        return out


def nesting_depth(raw: bytes, limit: int) -> int:
    """How deep ``raw`` nests arrays and objects, counting no further than ``limit + 1``.

    A scan of the bytes that never recurses, so it is safe on any input: the parser
    itself recurses per level and would raise RecursionError on a deep enough document.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0  # cannot exceed the limit: no need to scan
    depth = deepest = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _limits() -> tuple[int, int]:
    settings = current_app.extensions["appliance_instance"] if has_app_context() else DEFAULTS
    return int(settings["json_max_bytes"]), int(settings["json_max_depth"])


def parse_json(raw: bytes):
    """``raw`` parsed as JSON within the size and depth limits; abort 413/400 otherwise."""
    max_bytes, max_depth = _limits()
    if len(raw) > max_bytes:
        abort(413, description=f"The JSON body is limited to {max_bytes} bytes (setting json_max_bytes).")
    if nesting_depth(raw, max_depth) > max_depth:
        abort(400, description=f"The JSON body nests deeper than {max_depth} levels (setting json_max_depth).")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        abort(400, description="The body is not valid JSON (UTF-8).")


def json_object(raw: bytes, fields: dict[str, F]) -> dict:
    """``raw`` parsed as a JSON object and checked against ``fields``; abort 400/413/422 otherwise."""
    data = parse_json(raw)
    if not isinstance(data, dict):
        abort(400, description="The body must be a JSON object.")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        abort(422, description=f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(sorted(fields))}.")
    missing = sorted(k for k, f in fields.items() if f.required and k not in data)
    if missing:
        abort(422, description=f"Missing field(s): {', '.join(missing)}.")
    return {k: fields[k].check(k, v) for k, v in data.items()}


def request_json(fields: dict[str, F]) -> dict:
    """The current request's body, declared as JSON (415 otherwise), checked as ``json_object``."""
    if not request.is_json:
        abort(415, description="Send the body as JSON with Content-Type: application/json.")
    return json_object(request.get_data(), fields)
