"""Oversized and malformed input on every endpoint (issue 16, "Fuzzing"): every URL pattern of
the root URLconf (walked, so a new endpoint is covered without editing this file) receives
oversized form, JSON and multipart bodies, malformed JSON, a wrong content type, deep JSON
nesting, too many and repeated parameters, huge query strings, oversized and numerous headers
and a huge cookie, as an anonymous client without a CSRF token would send them. Every answer
is a 4xx (never a 5xx); the refusals for size and shape speak the endpoint's language: an
OAuth error object on the protocol endpoints, an RFC 7807 problem on the JSON APIs, a page
elsewhere (config/request_limits.py). The chunked body without Content-Length goes through
the production WSGI application (config/wsgi.py). The real server's memory under such bodies
is tests/security/test_hostile_bodies_server.py."""

from __future__ import annotations

import base64
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from config.request_limits import endpoint_kind
from identity.keys import clear_key_cache, signing_keys_ensure
from identity.models import SigningKey
from tests.conftest import REDIRECT_URI, open_session

pytestmark = pytest.mark.django_db

SAMPLE_UUID = str(uuid.UUID(int=1))


def _sample(pattern: str) -> str | None:
    """A concrete path for a route or regex pattern, or None when it cannot be made."""

    def group(match: re.Match[str]) -> str:
        # Admin regexes: (?P<app_label>auth|identity) → auth; (?P<url>.*) → x
        first = match.group(1).split("|")[0]
        return first if re.fullmatch(r"[\w-]+", first) else "x"

    path = re.sub(r"\(\?P<\w+>([^)]*)\)", group, pattern)
    path = re.sub(r"<int:\w+>", "1", path)
    path = re.sub(r"<uuid:\w+>", SAMPLE_UUID, path)
    path = re.sub(r"<(?:str:|path:|slug:)?\w+>", "x", path)
    path = path.replace("^", "").replace("$", "").replace("\\", "")
    if re.search(r"[()\[\]*+?|{}]", path):
        return None
    return "/" + path


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            path = _sample(prefix + str(entry.pattern))
            if path is not None:
                yield path


PATHS = sorted(set(_walk(get_resolver())))


def _patterns(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern)


def test_the_walk_reaches_every_kind_of_endpoint() -> None:
    assert [pattern for pattern in _patterns(get_resolver()) if _sample(pattern) is None] == []
    assert len(PATHS) > 200
    for expected in ("/token", "/userinfo", "/par", "/connexion/", "/inscription/", "/admin/login/"):
        assert expected in PATHS
    assert "/consent/api/v1/cookie/choices" in PATHS and "/profiles/api/v1/me/profile" in PATHS
    kinds = {endpoint_kind(path) for path in PATHS}
    assert kinds == {"protocol", "api", "page"}


@pytest.fixture(scope="module")
def module_signing_keys(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Signing keys made once for the module's few hundred tests (each test rolls back its own
    writes; these are deleted at the end)."""
    with django_db_blocker.unblock():
        created = [key.pk for key in signing_keys_ensure()]
    yield
    with django_db_blocker.unblock():
        SigningKey.objects.filter(pk__in=created).delete()
    clear_key_cache()


@pytest.fixture
def anonymous(module_signing_keys: None) -> Client:
    """An attacker's client: no session, no CSRF token (Django's checks enforced)."""
    return Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="fr")


def _refused_in_its_language(response: Any, path: str, status: int) -> None:
    assert response.status_code == status, (path, response.status_code, response.content[:300])
    kind = endpoint_kind(path)
    if kind == "protocol":
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"] == "invalid_request"
        assert response["Cache-Control"] == "no-store"
    elif kind == "api":
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == status
    else:
        assert response["Content-Type"].startswith("text/html")
        text = response.content.decode()
        assert "<h1>" in text and '<html lang="fr">' in text


# The demo partner's pages answer 503 "demo not set up" until `load_demo` has run (not here).
DEMO_PATHS = ("/demo/", "/consent/demo-widget/")
# RP-initiated logout accepts a POST whatever its body (OIDC RP-Initiated Logout 1.0, § 2):
# the sign-out confirmation page.
BODY_IGNORED = {"/end-session"}


def _answered(response: Any, path: str, what: str) -> None:
    """Never a server error; a refusal from an API is a problem in JSON."""
    status = response.status_code
    if path.startswith(DEMO_PATHS) and status == 503:
        return
    assert status < 500, (what, path, status, response.content[:300])
    if endpoint_kind(path) == "api" and status >= 400:
        assert response["Content-Type"] in ("application/problem+json", "application/json"), (what, path)


def _client_error(response: Any, path: str, what: str) -> None:
    _answered(response, path, what)
    if path not in BODY_IGNORED and not path.startswith(DEMO_PATHS):
        assert 400 <= response.status_code < 500, (what, path, response.status_code, response.content[:300])


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("path", PATHS)
def test_a_body_over_its_limit_is_refused_413_without_being_read(anonymous: Client, path: str) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # Announced over the limit: refused on the header alone (the body sent is short, and never read).
    for content_type in (FORM, "application/json", "text/plain"):
        response = anonymous.generic(
            "POST", path, b"a=1", content_type=content_type, CONTENT_LENGTH=str(limit + 1)
        )
        _refused_in_its_language(response, path, 413)
    response = anonymous.generic(
        "PUT",
        path,
        b"--b--",
        content_type="multipart/form-data; boundary=b",
        CONTENT_LENGTH=str(settings.REQUEST_MULTIPART_MAX_BYTES + 1),
    )
    _refused_in_its_language(response, path, 413)
    response = anonymous.generic("POST", path, b"a=1", content_type=FORM, CONTENT_LENGTH="12abc")
    _refused_in_its_language(response, path, 400)


@pytest.mark.parametrize(
    "path", ["/token", "/par", "/consent/api/v1/cookie/choices", "/profiles/api/v1/page-views", "/connexion/"]
)
def test_a_real_oversized_body_is_refused_413(anonymous: Client, path: str) -> None:
    body = b"a=" + b"b" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    _refused_in_its_language(anonymous.post(path, body, content_type=FORM), path, 413)
    json_body = b'{"a": "' + b"b" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'
    _refused_in_its_language(anonymous.post(path, json_body, content_type="application/json"), path, 413)


DEEP_JSON = b"[" * 1_500 + b"]" * 1_500  # deeper than Python's recursion limit, under every API's size cap
DEEP_OBJECT = b'{"client_id": "x", "a":' + b"[" * 1_400 + b"]" * 1_400 + b"}"
TOO_MANY_FIELDS = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 10)).encode()


@pytest.mark.parametrize("path", PATHS)
def test_malformed_bodies_get_a_client_error(anonymous: Client, path: str) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("malformed json", b'{"client_id": "x", ', "application/json"),
        ("json not an object", b'"\\ud800"', "application/json"),
        ("deep json", DEEP_JSON, "application/json"),
        ("deep json object", DEEP_OBJECT, "application/json"),
        ("not utf-8", b'{"a": "\xff\xfe"}', "application/json"),
        ("wrong content type", b"<a>1</a>", "application/xml"),
        (
            "broken multipart",
            b"--x\r\nContent-Disposition: form-data\r\n\r\n",
            "multipart/form-data; boundary=x",
        ),
        ("multipart without boundary", b"a=1", "multipart/form-data"),
        ("too many fields", TOO_MANY_FIELDS, FORM),
        ("form not utf-8", b"a=%ff%fe&b=\xff", FORM),
    ]
    for what, body, content_type in cases:
        _client_error(anonymous.post(path, body, content_type=content_type), path, what)


@pytest.mark.parametrize("path", PATHS)
def test_hostile_queries_and_headers_never_fail_the_server(anonymous: Client, path: str) -> None:
    many = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 10))
    repeated = "&".join(
        f"{name}=a&{name}=b"
        for name in ("client_id", "redirect_uri", "scope", "response_type", "state", "next", "token", "code")
    )
    for what, query in (
        ("too many parameters", many),
        ("huge value", "q=" + "x" * 200_000),
        ("repeated", repeated),
    ):
        response = anonymous.get(f"{path}?{query}")
        _answered(response, path, what)
        if what == "too many parameters" and response.status_code == 400:
            assert endpoint_kind(path) != "protocol" or response["Content-Type"] == "application/json"
    _answered(anonymous.post(path, repeated.encode(), content_type=FORM), path, "repeated form")
    headers: dict[str, str] = {f"HTTP_X_NOISE_{i}": "v" * 100 for i in range(500)}
    headers["HTTP_X_HUGE"] = "h" * 200_000
    _answered(anonymous.get(path, **headers), path, "many and huge headers")
    anonymous.cookies.load({f"c{i}": "x" * 100 for i in range(300)})
    anonymous.cookies.load(
        {settings.SESSION_COOKIE_NAME: "s" * 60_000, settings.CSRF_COOKIE_NAME: "\x00" * 10}
    )
    _answered(anonymous.get(path), path, "huge cookies")


@pytest.mark.parametrize("path", ["/token", "/par", "/introspect", "/revoke"])
def test_repeated_protocol_parameters_are_an_invalid_request(anonymous: Client, path: str) -> None:
    body = "grant_type=authorization_code&grant_type=refresh_token&client_id=a&client_id=b&token=t&token=u"
    response = anonymous.post(path, body.encode(), content_type=FORM)
    assert response.status_code in (400, 401), response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] in ("invalid_request", "invalid_client")


# --- The production WSGI application: a body sent without Content-Length -------------------


@pytest.fixture
def wsgi_app(module_signing_keys: None) -> Iterator[Any]:
    request_started.disconnect(close_old_connections)  # the test's transaction keeps its connection
    request_finished.disconnect(close_old_connections)
    from config.wsgi import application  # noqa: PLC0415 - builds the WSGI stack once Django is set up

    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


class _CountingStream(io.BytesIO):
    """The client's body; counts what the server read of it."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def _chunked(app: Any, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes, int]:
    stream = _CountingStream(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "CONTENT_TYPE": content_type,
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    result = app(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], content, stream.consumed


def test_a_chunked_body_over_the_limit_is_refused_after_reading_no_more_than_the_limit(wsgi_app: Any) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = b"grant_type=" + b"x" * (3 * limit)
    status, headers, content, consumed = _chunked(wsgi_app, "/token", body, FORM)
    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert b'"invalid_request"' in content
    assert consumed == limit + 1


def test_a_chunked_body_within_the_limit_reaches_the_view(wsgi_app: Any) -> None:
    # Without the wrapper Django would read an empty body: "grant_type missing". With it, the
    # token endpoint reads the grant type it was sent and refuses the unknown client.
    status, _headers, content, consumed = _chunked(
        wsgi_app, "/token", b"grant_type=client_credentials&client_id=nobody&client_secret=x", FORM
    )
    assert status == 401, content
    assert b"invalid_client" in content
    assert consumed > 0
    status, headers, content, _consumed = _chunked(
        wsgi_app, "/consent/api/v1/cookie/choices", b'{"client_id": "nobody"}', "application/json"
    )
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert b"unknown_client" in content or b"invalid" in content


# --- JSON nested too deeply inside tokens and parameters ----------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


DEEP = b"[" * 1_500 + b"]" * 1_500
DEEP_JWT = f"{_b64(DEEP)}.{_b64(DEEP)}.{_b64(b'sig')}"


def test_deep_json_in_tokens_and_parameters_is_refused_as_malformed(rp: Any, resident: Any) -> None:
    client_id = rp.client.client_id
    anonymous = Client()
    response = anonymous.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {DEEP_JWT}")
    assert response.status_code == 401 and "invalid_token" in response["WWW-Authenticate"]
    response = anonymous.post("/introspect", {"token": DEEP_JWT}, HTTP_AUTHORIZATION=rp.basic_auth())
    # This partner may not introspect: 403; the token is never parsed into a 500 either way.
    assert response.status_code in (200, 401, 403) and response.json().get("active") in (False, None)
    response = anonymous.post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": DEEP_JWT,
        },
    )
    assert response.status_code in (400, 401) and response.json()["error"] in (
        "invalid_client",
        "invalid_request",
    )
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "claims": DEEP.decode(),
    }
    browser = open_session(Client(), resident)
    response = browser.get("/authorize", query)
    assert 300 <= response.status_code < 500, response.status_code
    response = anonymous.post("/par", query, HTTP_AUTHORIZATION=rp.basic_auth())
    assert response.status_code == 400 and response.json()["error"] in (
        "invalid_request",
        "invalid_request_object",
    )
    response = anonymous.get("/end-session", {"id_token_hint": DEEP_JWT, "client_id": client_id})
    assert response.status_code < 500
