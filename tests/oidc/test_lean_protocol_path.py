"""The protocol endpoints' short request cycle (config/protocol_handler.py) answers exactly as
Django's full request cycle does.

Every request of the corpus below (valid and invalid, for each endpoint) is sent through both
WSGI stacks, built as config/wsgi.py builds them: Django's full `WSGIHandler`, and
`ProtocolPathDispatch` in front of it. Both must give the same status, the same headers (the
X-Request-ID value aside: one per request) and the same body; a body holding tokens issued
for that request is compared by its keys and error codes. The dispatch must really have
answered the protocol paths itself (the full handler is not called), and only them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import OperationalError, close_old_connections, connection

from common.request_log import JsonFormatter, RequestIdFilter
from config.middleware import PROTOCOL_PATHS
from config.protocol_handler import ProtocolPathDispatch, protocol_middleware_paths
from config.request_limits import BodyWithoutLength
from identity.oidc.views import introspect, userinfo
from tests.conftest import OIDCFlow, RegisteredClient
from tests.oidc.conftest import complete_flow

pytestmark = pytest.mark.django_db

API = "https://api.mediatheques.example.org"
SPA_ORIGIN = "https://appli.example.org"
FORM = "application/x-www-form-urlencoded"
# Per-request values in a JSON body: compared by presence and type only.
VOLATILE_KEYS = frozenset({"access_token", "refresh_token", "id_token", "request_uri"})


class CountingHandler(WSGIHandler):
    """Django's full WSGI handler, counting the requests that reach it."""

    calls = 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.calls += 1
        return super().__call__(environ, start_response)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = ""
    query: str = ""
    host: str = "testserver"
    chunked: bool = False
    content_length: str | None = None  # None: the body's length

    def environ(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "PATH_INFO": self.path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": self.query,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": self.host,
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(self.body),
            "wsgi.errors": io.StringIO(),
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if self.content_type:
            env["CONTENT_TYPE"] = self.content_type
        if self.chunked:
            env["HTTP_TRANSFER_ENCODING"] = "chunked"
        elif self.content_length is not None:
            env["CONTENT_LENGTH"] = self.content_length
        elif self.body:
            env["CONTENT_LENGTH"] = str(len(self.body))
        for name, value in self.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        return env


@dataclass
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, *, skip_length: bool = False) -> list[tuple[str, str]]:
        kept = []
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == "x-request-id":
                kept.append((lowered, "<id>" if len(value) == 32 else value))
            elif lowered == "content-length" and skip_length:
                kept.append((lowered, "<length>"))
            elif lowered == "expires" and _near_now(value):
                # never_cache's "now": the two stacks' calls may fall in different seconds.
                kept.append((lowered, "<now>"))
            else:
                kept.append((lowered, value))
        return sorted(kept)


def _near_now(value: str) -> bool:
    try:
        return abs(parsedate_to_datetime(value).timestamp() - time.time()) < 30
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def connection_kept() -> Iterator[None]:
    """As Django's test client does: the test's transaction keeps its connection (the test
    client reconnects close_old_connections after each of its own requests)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def call(app: Any, request: Request, *, keep_connection: bool = True) -> Answer:
    if keep_connection:
        with connection_kept():
            return call(app, request, keep_connection=False)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> None:
        seen["status"], seen["headers"] = status, list(headers)

    result = app(request.environ(), start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return Answer(seen["status"], seen["headers"], body)


def shape(body: bytes) -> Any:
    """A JSON body with its per-request tokens replaced by their type."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict):
        return {
            key: type(value).__name__ if key in VOLATILE_KEYS else value for key, value in document.items()
        }
    return document


def assert_same(full: Answer, lean: Answer, what: str) -> None:
    assert lean.status == full.status, what
    if lean.body == full.body:
        assert lean.header_values() == full.header_values(), what
    else:
        # Tokens issued for each request: same keys, same fixed values, same headers but the length.
        assert shape(lean.body) == shape(full.body) != full.body, what
        assert lean.header_values(skip_length=True) == full.header_values(skip_length=True), what


@dataclass
class Stacks:
    full_handler: CountingHandler
    lean_handler: CountingHandler
    full: Any
    lean: Any
    dispatch: ProtocolPathDispatch

    def both(self, request: Request | Callable[[], Request], what: str = "") -> tuple[Answer, Answer]:
        """The same request (or, from a factory, an equivalent one each) through both stacks."""
        make = request if callable(request) else (lambda: request)
        first, second = make(), make()
        full = call(self.full, first)
        lean = call(self.lean, second)
        assert_same(full, lean, what or f"{first.method} {first.path}")
        return full, lean


def build_stacks() -> Stacks:
    """As config/wsgi.py builds the application (LeanProtocolPath aside, tests/test_lean_path.py)."""
    full_handler, lean_handler = CountingHandler(), CountingHandler()
    dispatch = ProtocolPathDispatch(lean_handler)
    return Stacks(
        full_handler, lean_handler, BodyWithoutLength(full_handler), BodyWithoutLength(dispatch), dispatch
    )


@pytest.fixture
def stacks() -> Callable[[], Stacks]:
    """Builds the two stacks (after the test's settings changes: some middleware read them once)."""
    return build_stacks


@dataclass
class Partners:
    rp: RegisteredClient
    machine: RegisteredClient
    resource_server: RegisteredClient
    spa: RegisteredClient
    flow: OIDCFlow

    def tokens(self) -> dict[str, Any]:
        """A fresh authorization-code token response for `rp`, usable at `resource_server` too."""
        return complete_flow(self.flow, resource=[settings.ISSUER, API])


@pytest.fixture
def partners(make_client: Any, flow: OIDCFlow) -> Partners:
    return Partners(
        rp=flow.rp,
        machine=make_client(name="Robot", redirect_uris=[], grant_types=["client_credentials"]),
        resource_server=make_client(
            name="API médiathèques",
            redirect_uris=[],
            grant_types=["client_credentials"],
            is_resource_server=True,
            resource_identifier=API,
        ),
        spa=make_client(
            name="Appli web",
            public=True,
            redirect_uris=["https://appli.example.org/callback"],
            grant_types=["authorization_code"],
            allowed_origins=[SPA_ORIGIN],
        ),
        flow=flow,
    )


def form(path: str, data: dict[str, str] | list[tuple[str, str]], **headers: str) -> Request:
    return Request("POST", path, headers, urlencode(data).encode(), FORM)


# --- The corpus -----------------------------------------------------------------------------


def corpus(p: Partners) -> dict[str, Request | Callable[[], Request]]:
    tokens = p.tokens()
    access = tokens["access_token"]
    machine = {"Authorization": p.machine.basic_auth()}
    resource_server = {"Authorization": p.resource_server.basic_auth()}
    preflight = {"Origin": SPA_ORIGIN, "Access-Control-Request-Method": "POST"}
    too_many = [("grant_type", "client_credentials")] + [(f"f{i}", "x") for i in range(1001)]

    refresh_tokens = [p.tokens()["refresh_token"] for _ in range(2)]

    def fresh_revocation() -> Request:  # a token of its own for each stack
        return form("/revoke", {"token": refresh_tokens.pop()}, Authorization=p.rp.basic_auth())

    return {
        # /healthz, the reference
        "healthz": Request("GET", "/healthz"),
        "healthz HEAD": Request("HEAD", "/healthz"),
        "healthz POST (CSRF before require_safe)": form("/healthz", {"a": "b"}),
        "healthz OPTIONS": Request("OPTIONS", "/healthz"),
        "healthz with a query": Request("GET", "/healthz", query="x=1"),
        "healthz/ (trailing slash: the full stack)": Request("GET", "/healthz/"),
        # /token
        "client_credentials": form("/token", {"grant_type": "client_credentials"}, **machine),
        "client_credentials, secret in the body": form(
            "/token",
            {"grant_type": "client_credentials", "client_id": p.machine.client_id, "client_secret": "wrong"},
        ),
        "client_credentials, wrong secret": form(
            "/token", {"grant_type": "client_credentials"}, Authorization="Basic eDp5"
        ),
        "token, no grant_type": form("/token", {}, **machine),
        "token, duplicated grant_type": form(
            "/token", [("grant_type", "client_credentials"), ("grant_type", "password")], **machine
        ),
        "token, unsupported grant": form("/token", {"grant_type": "password"}, **machine),
        "token, code replayed": form(
            "/token",
            {"grant_type": "authorization_code", "code": "nope", "redirect_uri": "https://rp.example.org/cb"},
            Authorization=p.rp.basic_auth(),
        ),
        "token GET": Request("GET", "/token"),
        "token HEAD": Request("HEAD", "/token"),
        "token JSON body": Request(
            "POST", "/token", machine, b'{"grant_type":"client_credentials"}', "application/json"
        ),
        "token multipart": Request(
            "POST",
            "/token",
            machine,
            b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            b"client_credentials\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        "token, malformed multipart": Request(
            "POST", "/token", machine, b"--x\r\n", "multipart/form-data; boundary=b"
        ),
        "token, preflight from a registered origin": Request("OPTIONS", "/token", preflight),
        "token, preflight from another origin": Request(
            "OPTIONS", "/token", {**preflight, "Origin": "https://evil.example"}
        ),
        "token, OPTIONS without Origin": Request("OPTIONS", "/token"),
        "token, from a foreign page": form(
            "/token",
            {"grant_type": "authorization_code", "client_id": p.spa.client_id, "code": "x"},
            Origin="https://evil.example",
        ),
        "token, from the app's page": form(
            "/token",
            {
                "grant_type": "authorization_code",
                "client_id": p.spa.client_id,
                "code": "x",
                "redirect_uri": "https://appli.example.org/callback",
                "code_verifier": "v" * 43,
            },
            Origin=SPA_ORIGIN,
        ),
        "token, body over the limit (413, announced)": Request(
            "POST", "/token", machine, b"", FORM, content_length=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        ),
        "token, body over the limit (413, chunked)": Request(
            "POST", "/token", machine, b"a=" + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE, FORM, chunked=True
        ),
        "token, chunked body within the limit": Request(
            "POST", "/token", machine, b"grant_type=client_credentials", FORM, chunked=True
        ),
        "token, Content-Length not a number": Request(
            "POST", "/token", machine, b"", FORM, content_length="abc"
        ),
        "token, negative Content-Length": Request("POST", "/token", machine, b"", FORM, content_length="-1"),
        "token, too many fields": form("/token", too_many, **machine),
        "token, undecodable body": Request("POST", "/token", machine, b"grant_type=%ff%fe\xff", FORM),
        "token, bad Host": Request(
            "POST", "/token", machine, b"grant_type=client_credentials", FORM, host="evil.example"
        ),
        "token/ (trailing slash: the full stack)": form(
            "/token/", {"grant_type": "client_credentials"}, **machine
        ),
        "tokens (the full stack)": form("/tokens", {"grant_type": "client_credentials"}, **machine),
        # /userinfo
        "userinfo": Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"}),
        "userinfo POST": form("/userinfo", {}, Authorization=f"Bearer {access}"),
        "userinfo HEAD": Request("HEAD", "/userinfo", {"Authorization": f"Bearer {access}"}),
        "userinfo, token in the query": Request(
            "GET", "/userinfo", query=urlencode({"access_token": access})
        ),
        "userinfo, no token": Request("GET", "/userinfo"),
        "userinfo, bad token": Request("GET", "/userinfo", {"Authorization": "Bearer not.a.token"}),
        "userinfo, two schemes": Request(
            "GET", "/userinfo", {"Authorization": f"Bearer {access}, Basic eDp5"}
        ),
        "userinfo, DPoP without proof": Request("GET", "/userinfo", {"Authorization": f"DPoP {access}"}),
        "userinfo, DPoP with a bad proof": Request(
            "GET", "/userinfo", {"Authorization": f"DPoP {access}", "DPoP": "not-a-jwt"}
        ),
        "userinfo, from the app's page": Request(
            "GET", "/userinfo", {"Authorization": f"Bearer {access}", "Origin": SPA_ORIGIN}
        ),
        "userinfo, preflight": Request(
            "OPTIONS", "/userinfo", {"Origin": SPA_ORIGIN, "Access-Control-Request-Method": "GET"}
        ),
        "userinfo PUT": Request("PUT", "/userinfo", {"Authorization": f"Bearer {access}"}),
        "userinfo/ (trailing slash: the full stack)": Request(
            "GET", "/userinfo/", {"Authorization": f"Bearer {access}"}
        ),
        # /introspect
        "introspect": form("/introspect", {"token": access}, **resource_server),
        "introspect, unknown token": form("/introspect", {"token": "x"}, **resource_server),
        "introspect, no token": form("/introspect", {}, **resource_server),
        "introspect, not a resource server": form("/introspect", {"token": access}, **machine),
        "introspect, no client": form("/introspect", {"token": access}),
        "introspect, duplicated token": form(
            "/introspect", [("token", access), ("token", "x")], **resource_server
        ),
        "introspect GET": Request("GET", "/introspect", resource_server, query=urlencode({"token": access})),
        "introspect, from a page": form("/introspect", {"token": "x"}, Origin=SPA_ORIGIN),
        # /revoke
        "revoke": fresh_revocation,
        "revoke, unknown token": form("/revoke", {"token": "x"}, Authorization=p.rp.basic_auth()),
        "revoke, no token": form("/revoke", {}, Authorization=p.rp.basic_auth()),
        "revoke, wrong client": form("/revoke", {"token": "x"}, Authorization="Basic eDp5"),
        "revoke, from a foreign page": form(
            "/revoke", {"token": "x", "client_id": p.spa.client_id}, Origin="https://evil.example"
        ),
        "revoke, preflight": Request("OPTIONS", "/revoke", preflight),
        # /par
        "par": form(
            "/par",
            {
                "response_type": "code",
                "client_id": p.rp.client_id,
                "redirect_uri": "https://rp.example.org/cb",
                "scope": "openid",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            },
            Authorization=p.rp.basic_auth(),
        ),
        "par, no client": form("/par", {"response_type": "code"}),
        "par, duplicated parameter": form(
            "/par", [("response_type", "code"), ("response_type", "token")], Authorization=p.rp.basic_auth()
        ),
        "par GET": Request("GET", "/par"),
        # the other protocol paths
        "readyz": Request("GET", "/readyz"),
        "metrics": Request("GET", "/metrics"),
        "metrics, a token": Request("GET", "/metrics", {"Authorization": "Bearer " + "x" * 40}),
        "discovery": Request("GET", "/.well-known/openid-configuration"),
        "jwks": Request("GET", "/jwks.json"),
        "jwks POST": form("/jwks.json", {}),
        # not protocol paths
        "not found": Request("GET", "/nowhere"),
    }


def test_the_short_cycle_answers_like_the_full_one(stacks: Callable[[], Stacks], partners: Partners):
    built = stacks()
    requests = corpus(partners)
    for name, request in requests.items():
        built.full_handler.calls = built.lean_handler.calls = 0
        built.both(request, name)
        path = request.path if isinstance(request, Request) else "/revoke"
        # The protocol paths never reach the full handler behind the dispatch; other paths do.
        assert built.lean_handler.calls == (0 if path in PROTOCOL_PATHS else 1), name
        assert built.full_handler.calls == 1, name
    assert len(requests) > 60


@pytest.mark.parametrize("proxy_scheme", ["https", "http", None])
def test_behind_a_tls_proxy_with_ssl_redirect_and_hsts(
    stacks: Callable[[], Stacks], partners: Partners, settings: Any, proxy_scheme: str | None
):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    built = stacks()  # SecurityMiddleware reads its settings once
    headers = {"X-Forwarded-Proto": proxy_scheme} if proxy_scheme else {}
    machine = {**headers, "Authorization": partners.machine.basic_auth()}
    for request in (
        Request("GET", "/healthz", headers),
        form("/token", {"grant_type": "client_credentials"}, **machine),
        form("/token", {"grant_type": "nope"}, **machine),
        Request("GET", "/userinfo", headers),
        Request("GET", "/userinfo", headers, query="a=1"),
    ):
        full, _lean = built.both(request)
        if proxy_scheme == "https":
            assert dict(full.headers)["Strict-Transport-Security"].startswith("max-age=31536000")
        elif request.path != "/healthz":
            assert full.status.startswith("301")


def test_disallowed_user_agents_and_append_slash(stacks: Callable[[], Stacks], settings: Any):
    settings.DISALLOWED_USER_AGENTS = [re.compile(r"^BadBot")]
    built = stacks()
    full, _lean = built.both(Request("GET", "/healthz", {"User-Agent": "BadBot/1.0"}))
    assert full.status.startswith("403")
    built.both(Request("GET", "/healthz", {"User-Agent": "GoodBot/1.0"}))


def test_a_view_raising_gets_the_same_500_and_logging(
    stacks: Callable[[], Stacks], partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(userinfo.UserInfoView, "get", broken)
    built = stacks()
    raised: list[Any] = []

    def record(sender: Any, request: Any, **kwargs: Any) -> None:
        raised.append(request.path)

    got_request_exception.connect(record)
    try:
        full, _lean = built.both(Request("GET", "/userinfo", {"Authorization": "Bearer x"}))
    finally:
        got_request_exception.disconnect(record)
    assert full.status.startswith("500")
    assert raised == ["/userinfo", "/userinfo"]  # got_request_exception, once per stack


def test_a_backing_service_down_is_the_same_503(
    stacks: Callable[[], Stacks], partners: Partners, monkeypatch: Any
):
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(introspect.IntrospectView, "post", unreachable)
    built = stacks()
    full, _lean = built.both(
        form("/introspect", {"token": "x"}, Authorization=partners.resource_server.basic_auth())
    )
    assert full.status.startswith("503")
    assert json.loads(full.body)["error"] == "temporarily_unavailable"


@pytest.mark.parametrize("sole_handler", [False, True], ids=["beside other handlers", "the only handler"])
def test_the_access_lines_are_the_same(
    stacks: Callable[[], Stacks], partners: Partners, monkeypatch: pytest.MonkeyPatch, sole_handler: bool
):
    # As the only handler (production's configuration) the access line is written without a
    # LogRecord (common.request_log.end); beside pytest's handlers it goes through logging.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    if sole_handler:
        monkeypatch.setattr(root, "handlers", [])
    root.addHandler(handler)
    access_logger = logging.getLogger("cum.access")
    previous = access_logger.level
    access_logger.setLevel(logging.INFO)
    built = stacks()
    access = partners.tokens()["access_token"]
    try:
        for request in (
            form("/token", {"grant_type": "client_credentials"}, Authorization=partners.machine.basic_auth()),
            form("/token", {"grant_type": "client_credentials"}, Authorization="Basic eDp5"),
            Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"}),
            Request("GET", "/userinfo"),
            form("/introspect", {"token": access}, Authorization=partners.resource_server.basic_auth()),
            Request("GET", "/healthz"),
        ):
            full, lean = built.both(request)
            lines = [json.loads(line) for line in stream.getvalue().splitlines()]
            stream.seek(0)
            stream.truncate()
            by_id = {line.get("request_id"): line for line in lines if line["logger"] != "cum.access"}
            full_lines = [
                line for line in lines if line.get("request_id") == dict(full.headers)["X-Request-ID"]
            ]
            lean_lines = [
                line for line in lines if line.get("request_id") == dict(lean.headers)["X-Request-ID"]
            ]
            assert full_lines and len(full_lines) == len(lean_lines), (request.path, lines, by_id)

            def comparable(line: dict[str, Any]) -> dict[str, Any]:
                kept = {key: value for key, value in line.items() if key not in {"time", "request_id"}}
                if "http" in kept:
                    kept["http"] = {k: v for k, v in kept["http"].items() if k != "duration_ms"}
                return kept

            assert [comparable(line) for line in lean_lines] == [comparable(line) for line in full_lines]
            access_line = [line for line in lean_lines if line["logger"] == "cum.access"][-1]
            assert access_line["http"]["route"] == request.path
    finally:
        root.removeHandler(handler)
        access_logger.setLevel(previous)


def test_the_views_see_the_same_resolver_match(
    stacks: Callable[[], Stacks], partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    seen: list[tuple[Any, ...]] = []
    original = userinfo.UserInfoView.get

    def spying(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        match = request.resolver_match
        seen.append(
            (
                match.func,
                match.args,
                match.kwargs,
                match.url_name,
                match.app_names,
                match.namespaces,
                match.route,
                match.view_name,
                match._func_path,
                match.tried,
                match.captured_kwargs,
                match.extra_kwargs,
                id(match),
            )
        )
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(userinfo.UserInfoView, "get", spying)
    built = stacks()
    access = partners.tokens()["access_token"]
    for _ in range(2):
        built.both(Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"}))
    assert len(seen) == 4
    assert len({repr(entry[:-1]) for entry in seen}) == 1  # the same fields…
    assert len({entry[-1] for entry in seen}) == 4  # …in an object of each request's own
    assert seen[0][6] == "userinfo" and seen[0][7] == "oidc:userinfo"


def test_only_the_browser_middleware_are_left_out():
    kept = protocol_middleware_paths(list(settings.MIDDLEWARE))
    left_out = [path for path in settings.MIDDLEWARE if path not in kept]
    assert left_out == [
        "config.middleware.SessionMiddleware",
        "config.middleware.LocaleMiddleware",
        "config.middleware.AuthenticationMiddleware",
        "identity.middleware.BrowserSessionMiddleware",
        "config.middleware.OTPMiddleware",
        "config.middleware.MessageMiddleware",
    ]
    assert kept == [path for path in settings.MIDDLEWARE if path in kept]  # same order


def test_the_browser_session_check_stays_if_a_session_middleware_runs_there():
    middleware = [path for path in settings.MIDDLEWARE if path != "config.middleware.SessionMiddleware"]
    middleware.insert(1, "django.contrib.sessions.middleware.SessionMiddleware")
    kept = protocol_middleware_paths(middleware)
    assert "django.contrib.sessions.middleware.SessionMiddleware" in kept
    assert "identity.middleware.BrowserSessionMiddleware" in kept


def test_the_production_application_uses_the_short_cycle():
    from config import wsgi  # noqa: PLC0415 - builds the WSGI stack once Django is set up

    # LeanProtocolPath → BearerPath → BodyWithoutLength → dispatch
    dispatch = wsgi.application.application.application.app
    assert isinstance(dispatch, ProtocolPathDispatch)
    assert dispatch.protocol_application is not dispatch.application
    assert isinstance(dispatch.protocol_application, WSGIHandler)


# --- Signals and database connections ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_signals_are_sent_as_by_django_and_connections_closed(
    signing_keys: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch
):
    machine = make_client(name="Robot", redirect_uris=[], grant_types=["client_credentials"])
    request = form("/introspect", {"token": "x"}, Authorization=machine.basic_auth())
    full, lean = BodyWithoutLength(WSGIHandler()), BodyWithoutLength(ProtocolPathDispatch(WSGIHandler()))
    sent: list[tuple[str, Any]] = []

    def started(sender: Any, **kwargs: Any) -> None:
        sent.append(("started", sender))

    def finished(sender: Any, **kwargs: Any) -> None:
        sent.append(("finished", sender))

    request_started.connect(started)
    request_finished.connect(finished)
    closed: list[bool] = []
    close = connection.close

    def counting_close() -> None:  # Django's own close, counted
        closed.append(True)
        close()

    monkeypatch.setattr(connection, "close", counting_close)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    try:
        for app in (full, lean):
            sent.clear()
            closed.clear()
            connection.ensure_connection()
            connection.close_at = time.monotonic()  # as connect() sets it when CONN_MAX_AGE is 0
            answer = call(app, keep_connection=False, request=request)
            assert answer.status.startswith("403"), answer  # not a resource server: the client was read
            # request_started then request_finished, from Django's own handler class; the
            # connection is closed at the end of the request (CONN_MAX_AGE=0).
            assert sent == [("started", WSGIHandler), ("finished", WSGIHandler)]
            assert closed, "close_old_connections did not close the connection"
            if connection.vendor == "postgresql":  # (SQLite's in-memory test database stays open)
                assert connection.connection is None
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
