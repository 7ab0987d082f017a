"""identity.middleware.SecurityHeadersMiddleware writes its headers as
`response.headers.setdefault(name, value)` would, from pairs Django computed once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from identity.middleware import DEFAULT_CSP, PERMISSIONS_POLICY, SecurityHeadersMiddleware


def _with(name: str, value: str) -> Callable[[], HttpResponseBase]:
    def make() -> HttpResponseBase:
        response = HttpResponse("x")
        response[name] = value
        return response

    return make


RESPONSES: dict[str, Callable[[], HttpResponseBase]] = {
    "plain": lambda: HttpResponse("x"),
    "JSON": lambda: JsonResponse({"a": 1}, status=400),
    "streaming": lambda: StreamingHttpResponse(iter([b"x"])),
    "file": lambda: FileResponse(iter([b"x"]), content_type="text/plain"),
    "its own policy": _with("Content-Security-Policy", f"{DEFAULT_CSP}; frame-src https://a.example"),
    "its own policy, lower case": _with("content-security-policy", "default-src 'none'"),
    "its own permissions": _with("PERMISSIONS-POLICY", "camera=(self)"),
}


def reference(response: HttpResponseBase) -> HttpResponseBase:
    """The middleware as it was: Django's setdefault for each header."""
    response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    return response


@pytest.mark.parametrize("make", RESPONSES.values(), ids=RESPONSES.keys())
def test_the_headers_are_setdefaults(make: Callable[[], HttpResponseBase]):
    expected = reference(make())
    response = SecurityHeadersMiddleware(lambda request: make())(HttpRequest())  # type: ignore[arg-type,return-value]
    assert list(response.items()) == list(expected.items())  # names, values and order
    assert response.serialize_headers() == expected.serialize_headers()
    assert response.headers["Content-Security-Policy"] == expected.headers["content-security-policy"]
    assert "Permissions-Policy" in response.headers and "permissions-policy" in response.headers
