"""Public JSON documents served from precomputed bytes: discovery and JWKS.

Each carries a strong `ETag` (the SHA-256 of its bytes) and `Cache-Control: public`; a
conditional GET or HEAD whose `If-None-Match` names the current tag gets `304 Not Modified`
with the same headers and no body (RFC 9110 §13.1.2, §15.4.5). The same answers are given
before Django's request cycle by config/lean_path.py, which replays the headers of a
response built here.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/"x" matches "x"."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    if tags == ["*"]:
        return True
    return etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in tags}


def document_response(request: HttpRequest, *, body: bytes, etag: str, max_age: int) -> HttpResponse:
    response = HttpResponse(body, content_type="application/json")
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = f"public, max-age={max_age}"
    response["ETag"] = etag
    if etag_matches(request.headers.get("If-None-Match"), etag):
        not_modified = HttpResponseNotModified()
        for header, value in response.items():
            if header.lower() not in {"content-type", "content-length"}:
                not_modified[header] = value
        return not_modified
    return response
