"""Property-based tests of the OAuth/OIDC endpoints (issue 16, "Fuzzing"): random and
malformed parameters, repeated parameters, headers and bodies. Whatever arrives, the answer
is one of the errors the specifications define, never a 500, and nothing is issued."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.oidc.models import AccessToken

# Random inputs explore further at every local run; CI runs a fixed sequence so that a
# submission lands or fails on its own merits (a failure found locally is fixed, then kept
# as a test of its own, e.g. tests/security/test_nul_characters.py).
DERANDOMIZE = os.environ.get("CI") == "true"
pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=DERANDOMIZE,
)

# RFC 6749 §5.2, RFC 8707 §2, RFC 7009 §2.2.1, RFC 9126.
TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
}
TOKEN_PARAMETERS = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "resource",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
]
text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["authorization_code", "refresh_token", "client_credentials", "openid", "", " ", "\x00"]),
    st.text(alphabet="ab%=&+/\\\"'<>{}", max_size=20),
    st.just("x" * 5000),
)
form = st.lists(st.tuples(st.sampled_from(TOKEN_PARAMETERS), text), max_size=8)
authorization = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.builds(lambda raw: "Basic " + base64.b64encode(raw.encode()).decode(), st.text(max_size=30)),
    st.builds(lambda raw: "Bearer " + raw, st.text(alphabet="abcXYZ012.-_~+/=", max_size=60)),
    st.just("Basic ####"),
)


BODY_TYPES = ["application/json", "text/plain", "multipart/form-data; boundary=x", "multipart/form-data", ""]


def _headers(value: str | None) -> dict[str, str]:
    # A header value a client could send at all (no line breaks or NULs: the HTTP layer
    # refuses those before us).
    if value is None or any(ch in value for ch in "\r\n\x00") or not value.isprintable():
        return {}
    return {"HTTP_AUTHORIZATION": value}


def _form(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs)


def _error_of(response: Any) -> str:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return json.loads(response.content)["error"]


@FUZZ
@given(pairs=form, auth=authorization)
def test_the_token_endpoint_answers_only_specified_errors(
    pairs: list[tuple[str, str]], auth: str | None
) -> None:
    response = Client().post(
        "/token", _form(pairs), content_type="application/x-www-form-urlencoded", **_headers(auth)
    )
    assert response.status_code in (400, 401), (response.status_code, pairs)
    assert _error_of(response) in TOKEN_ERRORS
    assert response["Cache-Control"] == "no-store"
    assert not AccessToken.objects.exists()


@FUZZ
@given(
    pairs=form,
    auth=authorization,
    content_type=st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x", ""]),
)
def test_the_token_endpoint_refuses_other_bodies(
    pairs: list[tuple[str, str]], auth: str | None, content_type: str
) -> None:
    response = Client().post("/token", json.dumps(dict(pairs)), content_type=content_type, **_headers(auth))
    assert response.status_code in (400, 401)
    assert _error_of(response) in TOKEN_ERRORS


@FUZZ
@given(auth=authorization, method=st.sampled_from(["get", "post"]), pairs=form)
def test_userinfo_answers_only_bearer_errors(
    auth: str | None, method: str, pairs: list[tuple[str, str]]
) -> None:
    client = Client()
    if method == "get":
        response = client.get("/userinfo", dict(pairs), **_headers(auth))
    else:
        response = client.post(
            "/userinfo", _form(pairs), content_type="application/x-www-form-urlencoded", **_headers(auth)
        )
    # RFC 6750 §3.1: 400 invalid_request, 401 (with or without invalid_token), never a 5xx.
    assert response.status_code in (400, 401), response.status_code
    assert response["WWW-Authenticate"].startswith("Bearer")


@FUZZ
@given(
    path=st.sampled_from(["/introspect", "/revoke", "/par"]),
    pairs=form,
    auth=authorization,
    content_type=st.sampled_from(["application/x-www-form-urlencoded", *BODY_TYPES]),
)
def test_client_authenticated_endpoints_answer_only_specified_errors(
    path: str, pairs: list[tuple[str, str]], auth: str | None, content_type: str
) -> None:
    body = _form(pairs) if content_type.endswith("urlencoded") else json.dumps(dict(pairs))
    response = Client().post(path, body, content_type=content_type, **_headers(auth))
    assert response.status_code in (400, 401), (path, response.status_code)
    assert _error_of(response) in TOKEN_ERRORS | {"unsupported_token_type"}


@FUZZ
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "response_type",
                    "client_id",
                    "redirect_uri",
                    "scope",
                    "state",
                    "nonce",
                    "code_challenge",
                    "code_challenge_method",
                    "prompt",
                    "max_age",
                    "request_uri",
                    "request",
                    "claims",
                    "ui_locales",
                    "acr_values",
                    "id_token_hint",
                    "resource",
                    "response_mode",
                ]
            ),
            text,
        ),
        max_size=10,
    )
)
def test_authorize_never_fails_with_a_server_error(pairs: list[tuple[str, str]]) -> None:
    response = Client().get("/authorize?" + _form(pairs))
    # An error page for the resident (400), a redirect with the error to a registered URI, or
    # the sign-in page; nothing else.
    assert response.status_code in (200, 302, 303, 400), response.status_code
