"""Checking real answers of the profiles API against its OpenAPI description.

The description is what drf-spectacular generates for the site (the same generator behind
/api/schema/). Each answer is validated with jsonschema (draft 2020-12, OpenAPI 3.1's
dialect) against the schema of its operation and status, with the document's components;
objects are closed (`additionalProperties: false` where the description lists properties),
so an answer member the description does not name fails too.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema
from django.test import override_settings
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator


@cache
def openapi_document() -> dict[str, Any]:
    spectacular = {"OAS_VERSION": "3.1.0", "COMPONENT_SPLIT_REQUEST": True}
    patterns = [path("profiles/api/v1/", include("profiles.api.urls"))]
    with override_settings(SPECTACULAR_SETTINGS=spectacular):
        return SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if closed.pop("nullable", False):  # OpenAPI 3.0's spelling, in 3.1 (JSON Schema) terms
            if isinstance(closed.get("type"), str):
                closed["type"] = [closed["type"], "null"]
            else:
                closed = {"oneOf": [closed, {"type": "null"}]}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def response_schema(path: str, method: str, status: int, media_type: str = "application/json") -> dict:
    document = openapi_document()
    operation = document["paths"][path][method]
    content = operation["responses"][str(status)]["content"][media_type]
    return {**_closed(copy.deepcopy(content["schema"])), "components": _closed(document["components"])}


def assert_matches_schema(response: Any, path: str, method: str) -> Any:
    """The answer's JSON, after checking it against the description of its status."""
    media_type = response["Content-Type"].split(";")[0].strip()
    body = response.json()
    schema = response_schema(path, method, response.status_code, media_type)
    jsonschema.Draft202012Validator(schema).validate(body)
    return body
