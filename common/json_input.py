"""JSON that comes from outside (request bodies, tokens, parameters, partners' documents),
parsed so that hostile nesting is a parse error like any other, never a 500.

Python's decoder raises RecursionError (not ValueError) on nesting deeper than the
interpreter's recursion limit: about a thousand `[`, which fits in 2 KB, under every body,
token and parameter size we accept. `loads` turns it into the ValueError callers already
handle; `JSONParser` is DRF's, answering 400 for it too (REST_FRAMEWORK in config/settings.py).
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def loads(data: str | bytes | bytearray) -> Any:
    """json.loads; nesting too deep raises ValueError, as any other malformed JSON."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
