"""Checking real answers of the profiles API against its OpenAPI description.

The description is the one the site serves at /api/schema/ (drf-spectacular). Each answer
is validated with jsonschema (draft 2020-12, OpenAPI 3.1's dialect) against the schema of its
operation and status, with the document's components; objects are closed
(`additionalProperties: false` where the description lists properties), so an answer member
the description does not name fails too.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import jsonschema
from django.test import Client as BrowserClient


@cache
def openapi_document() -> dict[str, Any]:
    """The description the site serves (/api/schema/, drf-spectacular), as JSON."""
    response = BrowserClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    return json.loads(response.content)


def _as_31(schema: Any, *, close: bool) -> Any:
    """OpenAPI 3.0's `nullable` in JSON Schema terms (3.1); with `close`, objects that list
    their properties admit no other member."""
    if isinstance(schema, dict):
        converted = {key: _as_31(value, close=close) for key, value in schema.items()}
        if converted.pop("nullable", False):
            if isinstance(converted.get("type"), str):
                converted["type"] = [converted["type"], "null"]
            else:
                converted = {"oneOf": [converted, {"type": "null"}]}
        if close and "properties" in converted and "additionalProperties" not in converted:
            converted["additionalProperties"] = False
        return converted
    if isinstance(schema, list):
        return [_as_31(item, close=close) for item in schema]
    return schema


def response_schema(
    path: str, method: str, status: int, media_type: str = "application/json", *, closed: bool = True
) -> dict:
    """The schema the description gives this answer (KeyError: the answer is not described)."""
    document = openapi_document()
    operation = document["paths"][path][method]
    content = operation["responses"][str(status)]["content"][media_type]
    return {
        **_as_31(copy.deepcopy(content["schema"]), close=closed),
        "components": _as_31(document["components"], close=closed),
    }


def operation_of(response: Any) -> tuple[str, str]:
    """(path template, method) of the described operation a test client's request reached."""
    requested = response.request["PATH_INFO"]
    method = response.request["REQUEST_METHOD"].lower()
    for template in openapi_document()["paths"]:
        pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", pattern)
        if re.fullmatch(pattern, requested):
            return template, method
    raise AssertionError(f"{requested} is not described")


def assert_problem_described(response: Any) -> None:
    """A problem answer of a described operation: its status is listed with the problem media
    type, and the body is a Problem (extension members allowed)."""
    path, method = operation_of(response)
    schema = response_schema(path, method, response.status_code, "application/problem+json", closed=False)
    jsonschema.Draft202012Validator(schema).validate(response.json())


def assert_matches_schema(response: Any, path: str, method: str) -> Any:
    """The answer's JSON, after checking it against the description of its status."""
    media_type = response["Content-Type"].split(";")[0].strip()
    body = response.json()
    schema = response_schema(path, method, response.status_code, media_type)
    jsonschema.Draft202012Validator(schema).validate(body)
    return body
