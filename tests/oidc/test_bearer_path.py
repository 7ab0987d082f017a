"""The bearer path (config/bearer_path.py) answers userinfo, introspection and the
client-credentials grant exactly as Django does.

Every request of the corpus is sent through the protocol stack as config/wsgi.py builds it
without the bearer path (BodyWithoutLength → ProtocolPathDispatch → Django's handler) and
with it in front; both must give the same status, the same headers in the same order (the
X-Request-ID value aside) and the same body (a token answer: the same fields, its access
token's signature checked and its claims the same but jti, iat and exp). The bearer path
must have answered the successful requests of its shapes itself (the Django handler behind
it not called, once it has Django's headers for that kind of request), and nothing else.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import connection

from common import metrics
from common.request_log import JsonFormatter, RequestIdFilter
from config import bearer_path
from config.bearer_path import BearerPath
from config.protocol_handler import ProtocolPathDispatch
from config.request_limits import BodyWithoutLength
from identity.models import User
from identity.oidc import access_tokens
from identity.oidc.errors import json_body
from identity.oidc.models import AccessToken
from tests.conftest import OIDCFlow, RegisteredClient
from tests.oidc.conftest import complete_flow
from tests.oidc.dpop_keys import DPoPKey
from tests.oidc.test_dpop import TOKEN, code_form, post_token, server_nonce, url
from tests.oidc.test_lean_protocol_path import FORM, Answer, Request, call, connection_kept, form

pytestmark = pytest.mark.django_db

API = "https://api.mediatheques.example.org"
SPA_ORIGIN = "https://appli.example.org"


class Counting:
    """A WSGI application, counting the requests that reach it."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.calls = 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.calls += 1
        return self.application(environ, start_response)


@dataclass
class Stacks:
    full: Any
    lean_handler: Counting  # what the bearer path hands requests on to
    lean: BearerPath

    def both(self, request: Request, what: str = "") -> tuple[Answer, Answer]:
        full = call(self.full, request)
        lean = call(self.lean, request)
        assert_same(full, lean, what or f"{request.method} {request.path}")
        return full, lean

    def answered_here(self, request: Request, what: str = "") -> Answer:
        """Through both; the bearer path answered without Django's handler."""
        self.lean_handler.calls = 0
        _full, lean = self.both(request, what)
        assert self.lean_handler.calls == 0, f"{what}: went through Django"
        return lean

    def through_django(self, request: Request, what: str = "") -> Answer:
        self.lean_handler.calls = 0
        _full, lean = self.both(request, what)
        assert self.lean_handler.calls == 1, f"{what}: answered by the bearer path"
        return lean


def comparable(answer: Answer) -> list[tuple[str, str]]:
    """The headers in their order, the per-request id replaced."""
    return [(name, "<id>" if name.lower() == "x-request-id" else value) for name, value in answer.headers]


PER_TOKEN = ("jti", "iat", "exp")


def comparable_body(answer: Answer) -> Any:
    """The body; a token answer's access token as its header, its claims (signature checked)
    without those proper to each token, and its lifetime."""
    if not answer.status.startswith("200") or b'"access_token"' not in answer.body:
        return answer.body
    fields = json.loads(answer.body)
    token = fields["access_token"]
    claims = access_tokens.decode(token)  # our signature, unexpired
    assert claims is not None, token
    fields["access_token"] = (
        token.split(".")[0],
        {name: value for name, value in claims.items() if name not in PER_TOKEN},
        claims["exp"] - claims["iat"],
    )
    return list(fields.items())


def assert_same(full: Answer, lean: Answer, what: str) -> None:
    assert lean.status == full.status, what
    assert comparable_body(lean) == comparable_body(full), what
    assert comparable(lean) == comparable(full), what
    request_ids = [value for name, value in lean.headers if name.lower() == "x-request-id"]
    assert len(request_ids) == 1 and len(request_ids[0]) == 32, what


def build_stacks() -> Stacks:
    behind = Counting(BodyWithoutLength(ProtocolPathDispatch(WSGIHandler())))
    return Stacks(BodyWithoutLength(ProtocolPathDispatch(WSGIHandler())), behind, BearerPath(behind))


@dataclass
class Partners:
    rp: RegisteredClient
    machine: RegisteredClient
    resource_server: RegisteredClient
    flow: OIDCFlow

    def tokens(self, **overrides: Any) -> dict[str, Any]:
        """A fresh token response for `rp`, its access token meant for userinfo and the API."""
        return complete_flow(self.flow, resource=[settings.ISSUER, API], **overrides)

    def userinfo(self, token: str, **headers: str) -> Request:
        return Request("GET", "/userinfo", {"Authorization": f"Bearer {token}", **headers})

    def introspect(self, token: str, **headers: str) -> Request:
        return form(
            "/introspect", {"token": token}, Authorization=self.resource_server.basic_auth(), **headers
        )


def build_partners(make_client: Any, flow: OIDCFlow) -> Partners:
    """The partners of these tests: the flow's RP, a machine client and a resource server."""
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
        flow=flow,
    )


@pytest.fixture
def partners(make_client: Any, flow: OIDCFlow) -> Partners:
    return build_partners(make_client, flow)


@pytest.fixture
def stacks(partners: Partners) -> Stacks:
    return build_stacks()


def learned(stacks: Stacks, *requests: Request) -> None:
    """The first success of each kind goes through Django, which gives its headers."""
    for request in requests:
        stacks.lean_handler.calls = 0
        stacks.both(request, "learning")
        assert stacks.lean_handler.calls == 1


# --- The corpus ---------------------------------------------------------------------------------


def test_successes_are_answered_here_exactly_as_by_django(stacks: Stacks, partners: Partners):
    access = partners.tokens()["access_token"]
    userinfo_post = form("/userinfo", {}, Authorization=f"Bearer {access}")
    userinfo_post_no_type = Request("POST", "/userinfo", {"Authorization": f"Bearer {access}"})
    refresh = partners.tokens()["refresh_token"]
    requests = {
        "userinfo": partners.userinfo(access),
        "userinfo, lower-case scheme": Request("GET", "/userinfo", {"Authorization": f"bearer {access}"}),
        "userinfo POST, empty form": userinfo_post,
        "userinfo POST, no body": userinfo_post_no_type,
        "userinfo POST, Content-Length 0": Request(
            "POST", "/userinfo", {"Authorization": f"Bearer {access}"}, content_length="0"
        ),
        "introspect": partners.introspect(access),
        "introspect, an unknown token (active: false)": partners.introspect("x"),
        "introspect, a refresh token of another client (active: false)": partners.introspect(refresh),
        "introspect, with a hint": form(
            "/introspect",
            {"token": access, "token_type_hint": "refresh_token"},
            Authorization=partners.resource_server.basic_auth(),
        ),
        "introspect, undecodable body (an unknown token)": Request(
            "POST",
            "/introspect",
            {"Authorization": partners.resource_server.basic_auth()},
            b"token=%ff\xff",
            FORM,
        ),
        "introspect, form with a charset": Request(
            "POST",
            "/introspect",
            {"Authorization": partners.resource_server.basic_auth()},
            urlencode({"token": access}).encode(),
            FORM + "; charset=utf-8",
        ),
    }
    for name, request in requests.items():
        first = stacks.lean_handler.calls
        stacks.both(request, name)  # the first of its kind may go through Django
        assert stacks.lean_handler.calls - first <= 1, name
        stacks.answered_here(request, name)
    body = json.loads(stacks.answered_here(partners.userinfo(access)).body)
    assert body["sub"] and body["email"]
    assert json.loads(stacks.answered_here(partners.introspect(access)).body)["active"] is True
    assert json.loads(stacks.answered_here(partners.introspect("x")).body) == {"active": False}


def test_everything_else_goes_through_django_and_gets_its_answer(stacks: Stacks, partners: Partners):
    tokens = partners.tokens()
    access = tokens["access_token"]
    learned(stacks, partners.userinfo(access), partners.introspect(access))
    revoked = partners.tokens()["access_token"]
    AccessToken.objects.filter(token_checksum=access_tokens.checksum(revoked)).delete()
    foreign = complete_flow(partners.flow, resource=[API])["access_token"]  # for the API only
    expired = access_tokens.sign({**access_tokens.decode(access), "exp": int(time.time()) - 1})
    altered = access[:-2] + ("AA" if not access.endswith("AA") else "BB")
    machine_token = call(
        stacks.full,
        form("/token", {"grant_type": "client_credentials"}, Authorization=partners.machine.basic_auth()),
    ).body
    client_token = json.loads(machine_token)["access_token"]
    resource_server = {"Authorization": partners.resource_server.basic_auth()}
    requests = {
        # userinfo: refusals
        "no token": Request("GET", "/userinfo"),
        "malformed": partners.userinfo("not.a.token"),
        "empty credentials": Request("GET", "/userinfo", {"Authorization": "Bearer "}),
        "revoked": partners.userinfo(revoked),
        "expired": partners.userinfo(expired),
        "altered": partners.userinfo(altered),
        "wrong audience": partners.userinfo(foreign),
        "a client's own token": partners.userinfo(client_token),
        "two schemes": Request("GET", "/userinfo", {"Authorization": f"Bearer {access}, Basic eDp5"}),
        "token in the query": Request("GET", "/userinfo", query=urlencode({"access_token": access})),
        "token in the query and the header": Request(
            "GET",
            "/userinfo",
            {"Authorization": f"Bearer {access}"},
            query=urlencode({"access_token": access}),
        ),
        "token in a form body and the header": form(
            "/userinfo", {"access_token": access}, Authorization=f"Bearer {access}"
        ),
        # userinfo: successes of another shape (Django answers them)
        "token in a form body": form("/userinfo", {"access_token": access}),
        "with Origin": partners.userinfo(access, Origin=SPA_ORIGIN),
        "with a foreign Origin": partners.userinfo(access, Origin="https://evil.example"),
        "with a query string": Request(
            "GET", "/userinfo", {"Authorization": f"Bearer {access}"}, query="a=1"
        ),
        "with a cookie": partners.userinfo(access, Cookie="theme=dark"),
        "with a DPoP header": partners.userinfo(access, DPoP="not-a-jwt"),
        "DPoP scheme, unbound token": Request("GET", "/userinfo", {"Authorization": f"DPoP {access}"}),
        "HEAD": Request("HEAD", "/userinfo", {"Authorization": f"Bearer {access}"}),
        "PUT": Request("PUT", "/userinfo", {"Authorization": f"Bearer {access}"}),
        "OPTIONS (preflight)": Request(
            "OPTIONS", "/userinfo", {"Origin": SPA_ORIGIN, "Access-Control-Request-Method": "GET"}
        ),
        "wrong Host": Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"}, host="evil.example"),
        "GET with a body": Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"}, b"a=b", FORM),
        "chunked POST": Request(
            "POST", "/userinfo", {"Authorization": f"Bearer {access}"}, b"a=b", FORM, chunked=True
        ),
        "trailing slash": Request("GET", "/userinfo/", {"Authorization": f"Bearer {access}"}),
        # introspection
        "introspect, no token": form("/introspect", {}, **resource_server),
        "introspect, wrong secret": form("/introspect", {"token": access}, Authorization="Basic eDp5"),
        "introspect, not a resource server": form(
            "/introspect", {"token": access}, Authorization=partners.machine.basic_auth()
        ),
        "introspect, two methods": form(
            "/introspect", {"token": access, "client_secret": "x"}, **resource_server
        ),
        "introspect, secret in the body": form(
            "/introspect",
            {"token": access, "client_id": partners.resource_server.client_id, "client_secret": "x"},
        ),
        "introspect, credentials in the query": Request(
            "POST",
            "/introspect",
            resource_server,
            urlencode({"token": access}).encode(),
            FORM,
            query=urlencode({"client_secret": "x"}),
        ),
        "introspect, JSON body": Request(
            "POST", "/introspect", resource_server, json.dumps({"token": access}).encode(), "application/json"
        ),
        "introspect, multipart": Request(
            "POST",
            "/introspect",
            resource_server,
            b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\nx\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
        "introspect, chunked": Request(
            "POST", "/introspect", resource_server, urlencode({"token": access}).encode(), FORM, chunked=True
        ),
        "introspect, over the limit (announced)": Request(
            "POST",
            "/introspect",
            resource_server,
            b"",
            FORM,
            content_length=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
        ),
        "introspect, Content-Length not a number": Request(
            "POST", "/introspect", resource_server, b"", FORM, content_length="abc"
        ),
        "introspect, too many fields": form(
            "/introspect", [("token", access)] + [(f"f{i}", "x") for i in range(1001)], **resource_server
        ),
        "introspect, wrong Host": Request(
            "POST",
            "/introspect",
            resource_server,
            urlencode({"token": access}).encode(),
            FORM,
            host="evil.example",
        ),
        "introspect, from a page": partners.introspect(access, Origin=SPA_ORIGIN),
        "introspect GET": Request("GET", "/introspect", resource_server, query=urlencode({"token": access})),
        "introspect HEAD": Request("HEAD", "/introspect", resource_server),
    }
    for name, request in requests.items():
        stacks.through_django(request, name)
    assert len(requests) > 40


def test_a_dpop_bound_token_goes_through_django(stacks: Stacks, partners: Partners):
    key = DPoPKey()
    code = partners.flow.get_code(resource=[settings.ISSUER, API])
    response = post_token(
        code_form(partners.flow, code),
        key.proof("POST", url(TOKEN), nonce=server_nonce(key)),
        partners.rp.basic_auth(),
    )
    bound = response.json()["access_token"]
    stacks.through_django(partners.userinfo(bound), "bound token as Bearer")  # 401
    for _ in range(2):  # as it should be sent: the DPoP scheme and a proof (Django's to check)
        proof = key.proof("GET", url("/userinfo"), token=bound)
        request = Request("GET", "/userinfo", {"Authorization": f"DPoP {bound}", "DPoP": proof})
        stacks.lean_handler.calls = 0
        call(stacks.lean, request)
        assert stacks.lean_handler.calls == 1
    stacks.through_django(partners.introspect(bound), "introspection of a bound token (learning)")
    assert json.loads(stacks.answered_here(partners.introspect(bound)).body)["token_type"] == "DPoP"


def test_the_state_of_the_token_and_the_resident_is_read_at_each_request(stacks: Stacks, partners: Partners):
    access = partners.tokens()["access_token"]
    learned(stacks, partners.userinfo(access), partners.introspect(access))
    stacks.answered_here(partners.userinfo(access))
    user = AccessToken.objects.get(token_checksum=access_tokens.checksum(access)).user
    User.objects.filter(pk=user.pk).update(is_active=False)
    stacks.through_django(partners.userinfo(access), "resident deactivated")
    assert json.loads(stacks.answered_here(partners.introspect(access)).body) == {"active": False}
    User.objects.filter(pk=user.pk).update(is_active=True)
    stacks.answered_here(partners.userinfo(access))
    partners.rp.client.delete()
    stacks.through_django(partners.userinfo(access), "client deleted")


def test_a_token_without_the_openid_scope_is_refused_by_django(stacks: Stacks, partners: Partners):
    access = partners.tokens()["access_token"]
    learned(stacks, partners.userinfo(access))
    claims = {**access_tokens.decode(access), "scope": "profile", "jti": "other"}
    token = access_tokens.sign(claims)
    row = AccessToken.objects.get(token_checksum=access_tokens.checksum(access))
    row.pk = row.id = None
    row.id_token = row.source_refresh_token = None
    row.token = token
    row.token_checksum = access_tokens.checksum(token)
    row.save()
    full, _lean = stacks.both(partners.userinfo(token))
    assert full.status.startswith("403")
    stacks.through_django(partners.userinfo(token))


# --- Headers, HTTPS, limits ------------------------------------------------------------------


@pytest.mark.parametrize("proxy_scheme", ["https", "http", None])
def test_behind_a_tls_proxy_with_ssl_redirect_and_hsts(
    partners: Partners, settings: Any, proxy_scheme: str | None
):
    access = partners.tokens()["access_token"]  # (the test client's flow is plain HTTP)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    built = build_stacks()  # the middleware read their settings once
    headers = {"X-Forwarded-Proto": proxy_scheme} if proxy_scheme else {}
    for request in (partners.userinfo(access, **headers), partners.introspect(access, **headers)):
        built.both(request)
        full, _lean = built.both(request)
        if proxy_scheme == "https":
            assert dict(full.headers)["Strict-Transport-Security"].startswith("max-age=31536000")
            built.answered_here(request)
        else:
            assert full.status.startswith("301")
            built.through_django(request)


def test_plain_http_and_https_answers_keep_their_own_headers(partners: Partners, settings: Any):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    built = build_stacks()
    access = partners.tokens()["access_token"]
    secure = partners.userinfo(access, **{"X-Forwarded-Proto": "https"})
    plain = partners.userinfo(access)
    learned(built, secure, plain)
    assert "Strict-Transport-Security" in dict(built.answered_here(secure).headers)
    assert "Strict-Transport-Security" not in dict(built.answered_here(plain).headers)


def test_disallowed_user_agents_and_prepend_www(partners: Partners, settings: Any):
    import re  # noqa: PLC0415

    settings.DISALLOWED_USER_AGENTS = [re.compile(r"^BadBot")]
    built = build_stacks()
    access = partners.tokens()["access_token"]
    learned(built, partners.userinfo(access))
    full, _lean = built.both(partners.userinfo(access, **{"User-Agent": "BadBot/1.0"}))
    assert full.status.startswith("403")
    built.through_django(partners.userinfo(access, **{"User-Agent": "BadBot/1.0"}))
    built.answered_here(partners.userinfo(access, **{"User-Agent": "GoodBot/1.0"}))
    settings.PREPEND_WWW = True
    full, _lean = built.both(partners.userinfo(access))
    assert full.status.startswith("301")
    built.through_django(partners.userinfo(access))


# --- Falling back ----------------------------------------------------------------------------


def test_an_exception_here_lets_django_answer(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch, caplog: Any
):
    access = partners.tokens()["access_token"]
    learned(stacks, partners.userinfo(access), partners.introspect(access))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(bearer_path, "userinfo_outcome", broken)
    monkeypatch.setattr(bearer_path, "introspection_outcome", broken)
    with caplog.at_level(logging.WARNING, logger="config.bearer_path"):
        stacks.through_django(partners.userinfo(access))
        stacks.through_django(partners.introspect(access))  # its body given back to Django
    warnings = [record.getMessage() for record in caplog.records if record.name == "config.bearer_path"]
    assert warnings == ["bearer path: falling back to Django"] * 2
    monkeypatch.setattr(bearer_path, "WSGIRequest", broken)
    stacks.through_django(partners.userinfo(access))
    monkeypatch.setattr(bearer_path.BearerPath, "_key", broken)
    stacks.through_django(partners.introspect(access))


def test_nothing_is_kept_from_an_answer_that_differs(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    access = partners.tokens()["access_token"]
    monkeypatch.setattr(bearer_path, "json_body", lambda data: b"{}")
    attempts: list[Any] = []
    outcome = bearer_path.userinfo_outcome

    def counted(request: Any) -> Any:
        attempts.append(request)
        return outcome(request)

    monkeypatch.setattr(bearer_path, "userinfo_outcome", counted)
    for _ in range(bearer_path.LEARNING_ATTEMPTS + 2):
        stacks.through_django(partners.userinfo(access))
    assert not stacks.lean._stored
    # After LEARNING_ATTEMPTS mismatches that kind of request goes to Django without a try here.
    assert len(attempts) == bearer_path.LEARNING_ATTEMPTS
    monkeypatch.setattr(bearer_path, "json_body", json_body)
    stacks.through_django(partners.introspect(access))  # another kind: learned as before
    stacks.answered_here(partners.introspect(access))


def test_nothing_is_kept_from_an_answer_setting_a_cookie(partners: Partners):
    class CookieHandler(WSGIHandler):
        def get_response(self, request: Any) -> Any:
            response = super().get_response(request)
            response.set_cookie("x", "y")
            return response

    handler = Counting(ProtocolPathDispatch(CookieHandler()))
    lean = BearerPath(handler)
    access = partners.tokens()["access_token"]
    for _ in range(2):
        answer = call(lean, partners.userinfo(access))
        assert answer.status.startswith("200") and "Set-Cookie" in dict(answer.headers)
    assert handler.calls == 2 and not lean._stored


def test_a_body_other_than_a_form_is_not_read_here(stacks: Stacks, partners: Partners):
    class Unread(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("read by the bearer path")

    for content_type in ("multipart/form-data; boundary=b", "application/json", ""):
        environ = Request(
            "POST", "/introspect", {"Authorization": "Basic eDp5"}, b"x", content_type
        ).environ()
        environ["wsgi.input"] = Unread()
        assert stacks.lean._request(environ, "/introspect") is None


def test_off_with_a_middleware_it_does_not_know(partners: Partners, settings: Any, caplog: Any):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    with caplog.at_level(logging.WARNING, logger="config.bearer_path"):
        built = build_stacks()
    assert not built.lean.enabled
    assert "GZipMiddleware" in caplog.text
    access = partners.tokens()["access_token"]
    for _ in range(2):
        built.through_django(partners.userinfo(access))


def test_off_when_whitenoise_serves_the_site_root(partners: Partners, settings: Any, tmp_path: Any):
    settings.WHITENOISE_ROOT = str(tmp_path)
    assert not build_stacks().lean.enabled


def test_the_production_application_has_the_bearer_path():
    from config import wsgi  # noqa: PLC0415 - builds the WSGI stack once Django is set up

    bearer = wsgi.application.application
    assert isinstance(bearer, BearerPath) and bearer.enabled
    assert bearer.handler_class is type(wsgi.django_application)
    assert isinstance(bearer.application, BodyWithoutLength)


# --- Access lines, metrics, signals, connections ----------------------------------------------


def test_the_access_lines_and_metrics_are_the_same(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # production's configuration: the only handler
    root.addHandler(handler)
    access_logger = logging.getLogger("cum.access")
    previous = access_logger.level
    access_logger.setLevel(logging.INFO)
    access = partners.tokens()["access_token"]
    try:
        learned(stacks, partners.userinfo(access), partners.introspect(access))
        for request, client_id in (
            (partners.userinfo(access), partners.rp.client_id),
            (partners.introspect(access), partners.resource_server.client_id),
        ):
            counted = metrics.child(metrics.REQUESTS, request.path, request.method, "200")
            before = counted._value.get()
            stream.seek(0)
            stream.truncate()
            lean = stacks.answered_here(request)
            lines = [json.loads(line) for line in stream.getvalue().splitlines()]
            assert len(lines) == 2, lines  # one access line per request, nothing else
            full_line, lean_line = lines
            assert lean_line["request_id"] == dict(lean.headers)["X-Request-ID"]
            for line in lines:
                line.pop("time")
                line.pop("request_id")
                line["http"].pop("duration_ms")
            assert lean_line == full_line
            assert lean_line["http"] == {
                "method": request.method,
                "route": request.path,
                "status": 200,
                "client_id": client_id,
            }
            assert counted._value.get() == before + 2  # the request counter, once per stack
        # A refusal handed on to Django after the attempt began: still one line per request,
        # Django's (the attempt's context is abandoned without a line).
        stream.seek(0)
        stream.truncate()
        full, lean = stacks.both(partners.userinfo(access + "x"))
        assert full.status.startswith("401")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        access_lines = [line for line in lines if line["logger"] == "cum.access"]
        assert [line["request_id"] for line in access_lines] == [
            dict(full.headers)["X-Request-ID"],
            dict(lean.headers)["X-Request-ID"],
        ]
        assert access_lines[1]["http"]["status"] == 401
    finally:
        root.removeHandler(handler)
        access_logger.setLevel(previous)


@pytest.mark.django_db(transaction=True)
def test_signals_are_sent_as_by_django_and_connections_closed(
    signing_keys: Any, make_client: Any, flow: OIDCFlow, monkeypatch: pytest.MonkeyPatch
):
    access = complete_flow(flow)["access_token"]
    request = Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"})
    refused = Request("GET", "/userinfo", {"Authorization": "Bearer x.y.z"})
    handler = Counting(BodyWithoutLength(ProtocolPathDispatch(WSGIHandler())))
    lean = BearerPath(handler)
    sent: list[tuple[str, Any]] = []

    def started(sender: Any, **kwargs: Any) -> None:
        sent.append(("started", sender))

    def finished(sender: Any, **kwargs: Any) -> None:
        sent.append(("finished", sender))

    request_started.connect(started)
    request_finished.connect(finished)
    closed: list[bool] = []
    close = connection.close

    def counting_close() -> None:
        closed.append(True)
        close()

    monkeypatch.setattr(connection, "close", counting_close)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    try:
        for what, expected_calls, pairs in (("learning", 1, 2), ("answered here", 0, 1), ("refused", 1, 2)):
            sent.clear()
            closed.clear()
            handler.calls = 0
            connection.ensure_connection()
            connection.close_at = time.monotonic()  # as connect() sets it when CONN_MAX_AGE is 0
            answer = call(lean, refused if what == "refused" else request, keep_connection=False)
            assert answer.status.startswith("401" if what == "refused" else "200"), (what, answer)
            assert handler.calls == expected_calls, what
            # request_started then request_finished, from Django's own handler class, once per
            # handling (a request handed to Django after the work began: twice).
            assert sent == [("started", WSGIHandler), ("finished", WSGIHandler)] * pairs, what
            assert closed, f"{what}: close_old_connections did not close the connection"
            if connection.vendor == "postgresql":
                assert connection.connection is None
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)


def test_request_finished_is_sent_even_if_the_server_never_closes_the_answer(
    stacks: Stacks, partners: Partners
) -> None:
    """granian answers a list without calling its close() (PEP 3333 says it should): the end of
    the request (close_old_connections, the caches' close) must not depend on it."""
    access = partners.tokens()["access_token"]
    learned(stacks, partners.userinfo(access))
    finished: list[Any] = []

    def record(sender: Any, **kwargs: Any) -> None:
        finished.append(sender)

    request_finished.connect(record)
    try:
        with connection_kept():
            stacks.lean_handler.calls = 0
            result = stacks.lean(partners.userinfo(access).environ(), lambda status, headers: None)
            assert stacks.lean_handler.calls == 0  # answered by the bearer path
            assert finished == [WSGIHandler]  # without close()
            assert b"".join(result).startswith(b'{"sub": ')
            close = getattr(result, "close", None)
            if close is not None:
                close()
            assert finished == [WSGIHandler]  # once
    finally:
        request_finished.disconnect(record)


# --- The client-credentials grant -------------------------------------------------------------


def client_credentials(client: RegisteredClient, **fields: str) -> Request:
    return form("/token", {"grant_type": "client_credentials", **fields}, Authorization=client.basic_auth())


@pytest.fixture
def post_client(make_client: Any) -> RegisteredClient:
    """A machine client authenticating by client_secret_post."""
    return make_client(
        name="Robot (post)",
        redirect_uris=[],
        grant_types=["client_credentials"],
        token_endpoint_auth_method="client_secret_post",
    )


def test_client_credentials_successes_are_answered_here_as_by_django(
    stacks: Stacks, partners: Partners, post_client: RegisteredClient
):
    machine = partners.machine
    post_form = {"grant_type": "client_credentials", "client_id": post_client.client_id}
    requests = {
        "basic": client_credentials(machine),
        "basic, a scope": client_credentials(machine, scope="profile"),
        "basic, the client's scopes": client_credentials(machine, scope="profile email"),
        "basic, a resource": client_credentials(machine, resource=API),
        "basic, two resources": form(
            "/token",
            [("grant_type", "client_credentials"), ("resource", API), ("resource", settings.ISSUER)],
            Authorization=machine.basic_auth(),
        ),
        "basic, the same resource twice": form(
            "/token",
            [("grant_type", "client_credentials"), ("resource", API), ("resource", API)],
            Authorization=machine.basic_auth(),
        ),
        "basic, its client_id in the body too": client_credentials(machine, client_id=machine.client_id),
        "basic, a state (not echoed)": client_credentials(machine, state="xyz"),
        "basic, grant_type twice (the last one counts)": form(
            "/token",
            [("grant_type", "authorization_code"), ("grant_type", "client_credentials")],
            Authorization=machine.basic_auth(),
        ),
        "basic, form with a charset": Request(
            "POST",
            "/token",
            {"Authorization": machine.basic_auth()},
            b"grant_type=client_credentials",
            FORM + "; charset=utf-8",
        ),
        "client_secret_post": form("/token", {**post_form, "client_secret": str(post_client.secret)}),
        "client_secret_post, a scope": form(
            "/token", {**post_form, "client_secret": str(post_client.secret), "scope": "email"}
        ),
    }
    issued = metrics.TOKENS_ISSUED.labels("client_credentials")
    for name, request in requests.items():
        first = stacks.lean_handler.calls
        full, _lean = stacks.both(request, name)  # the first of its kind may go through Django
        assert full.status.startswith("200"), (name, full)
        assert stacks.lean_handler.calls - first <= 1, name
        before = issued._value.get()
        lean = stacks.answered_here(request, name)
        assert issued._value.get() == before + 2, name  # counted once per stack
        token = json.loads(lean.body)["access_token"]
        claims = access_tokens.decode(token)  # signed with our key
        assert claims is not None and claims["client_id"] in (machine.client_id, post_client.client_id)
        if API in claims["aud"]:  # what was issued here is a token like any other for the API
            assert json.loads(call(stacks.full, partners.introspect(token)).body)["active"] is True, name
    assert stacks.lean._stored.keys() == {("/token", "POST", False)}


def test_client_credentials_bodies_are_byte_for_byte_django_s_with_the_same_clock_and_jti(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    """Without what makes each token unique (the time, the jti; an RS256 signature is
    deterministic), the answers are the same bytes."""
    now = time.time()
    monkeypatch.setattr(access_tokens, "time", SimpleNamespace(time=lambda: now))
    monkeypatch.setattr(access_tokens, "secrets", SimpleNamespace(token_urlsafe=lambda n: "j" * 24))
    monkeypatch.setattr(settings, "ACCESS_TOKEN_SIGNING_ALG", "RS256", raising=False)
    request = client_credentials(partners.machine, scope="profile", resource=API)
    learned(stacks, request)
    stacks.lean_handler.calls = 0
    full, lean = stacks.both(request)
    assert stacks.lean_handler.calls == 0
    assert full.body == lean.body and b'"scope": "profile"' in lean.body


def test_client_credentials_refusals_and_other_shapes_go_through_django(
    stacks: Stacks, partners: Partners, make_client: Any, post_client: RegisteredClient, settings: Any
):
    machine = partners.machine
    learned(stacks, client_credentials(machine))
    basic = {"Authorization": machine.basic_auth()}
    body = urlencode({"grant_type": "client_credentials"}).encode()
    unknown = base64.b64encode(b"nobody:secret").decode()
    wrong = base64.b64encode(f"{machine.client_id}:wrong".encode()).decode()
    post_form = {"grant_type": "client_credentials", "client_id": post_client.client_id}
    requests = {
        # refusals (Django answers them: 400 / 401)
        "wrong secret": form("/token", {"grant_type": "client_credentials"}, Authorization=f"Basic {wrong}"),
        "unknown client": form(
            "/token", {"grant_type": "client_credentials"}, Authorization=f"Basic {unknown}"
        ),
        "not base64": form("/token", {"grant_type": "client_credentials"}, Authorization="Basic %%%"),
        "no client authentication": form("/token", {"grant_type": "client_credentials"}),
        "client not allowed the grant": client_credentials(partners.rp),
        "a scope beyond the client's": client_credentials(machine, scope="profile admin"),
        "the openid scope not registered": client_credentials(machine, scope="openid phone"),
        "an unknown resource": client_credentials(machine, resource="https://unknown.example"),
        "a resource with a fragment": client_credentials(machine, resource=API + "#x"),
        "another client_id in the body": client_credentials(machine, client_id=partners.rp.client_id),
        "basic and a secret in the body": client_credentials(machine, client_secret="x"),
        "client_secret_post, wrong secret": form("/token", {**post_form, "client_secret": "wrong"}),
        "client_secret_post client using Basic": form(
            "/token",
            {"grant_type": "client_credentials"},
            Authorization=post_client.basic_auth(),
        ),
        "basic client using the body": form(
            "/token",
            {
                "grant_type": "client_credentials",
                "client_id": machine.client_id,
                "client_secret": str(machine.secret),
            },
        ),
        "a client assertion": client_credentials(
            machine,
            client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion="a.b.c",
        ),
        "a client assertion alone": form(
            "/token",
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "a.b.c",
            },
        ),
        "grant_type twice (the last one another)": form(
            "/token", [("grant_type", "client_credentials"), ("grant_type", "refresh_token")], **basic
        ),
        "no grant_type": form("/token", {"scope": "profile"}, **basic),
        "another grant": form(
            "/token", {"grant_type": "password", "username": "a", "password": "b"}, **basic
        ),
        # successes of another shape (Django answers them)
        "with a query string": Request("POST", "/token", basic, body, FORM, query="a=1"),
        "with Origin": Request("POST", "/token", {**basic, "Origin": SPA_ORIGIN}, body, FORM),
        "with a cookie": Request("POST", "/token", {**basic, "Cookie": "theme=dark"}, body, FORM),
        "with a DPoP header": Request("POST", "/token", {**basic, "DPoP": "not-a-jwt"}, body, FORM),
        "Bearer authorization": Request("POST", "/token", {"Authorization": "Bearer x"}, body, FORM),
        "JSON body": Request(
            "POST",
            "/token",
            basic,
            json.dumps({"grant_type": "client_credentials"}).encode(),
            "application/json",
        ),
        "multipart": Request(
            "POST",
            "/token",
            basic,
            b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            b"client_credentials\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        "chunked": Request("POST", "/token", basic, body, FORM, chunked=True),
        "over the limit (announced)": Request(
            "POST", "/token", basic, b"", FORM, content_length=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        ),
        "over the limit": form(
            "/token",
            {"grant_type": "client_credentials", "x": "a" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
            **basic,
        ),
        "too many fields": form(
            "/token", [("grant_type", "client_credentials")] + [(f"f{i}", "x") for i in range(1001)], **basic
        ),
        "Content-Length not a number": Request("POST", "/token", basic, b"", FORM, content_length="abc"),
        "empty body": Request("POST", "/token", basic, b"", FORM),
        "wrong Host": Request("POST", "/token", basic, body, FORM, host="evil.example"),
        "GET": Request("GET", "/token", basic, query="grant_type=client_credentials"),
        "OPTIONS (preflight)": Request(
            "OPTIONS", "/token", {"Origin": SPA_ORIGIN, "Access-Control-Request-Method": "POST"}
        ),
        "trailing slash": Request("POST", "/token/", basic, body, FORM),
    }
    for name, request in requests.items():
        stacks.through_django(request, name)
    # A client that must bind its tokens (dpop_bound_access_tokens) and sends no proof: refused.
    bound = make_client(
        name="Robot DPoP", redirect_uris=[], grant_types=["client_credentials"], require_dpop=True
    )
    full, _lean = stacks.both(client_credentials(bound))
    assert full.status.startswith("400") and b"invalid_dpop_proof" in full.body
    stacks.through_django(client_credentials(bound))
    # The oauthlib token endpoint (settings.TOKEN_ENDPOINT): never answered here.
    settings.TOKEN_ENDPOINT = "oauthlib"
    stacks.through_django(client_credentials(machine), "oauthlib")


def test_client_credentials_with_a_dpop_proof_goes_through_django(stacks: Stacks, partners: Partners):
    learned(stacks, client_credentials(partners.machine))
    key = DPoPKey()
    nonce = server_nonce(key)
    stacks.lean_handler.calls = 0
    proof = key.proof("POST", url(TOKEN), nonce=nonce)
    answer = call(
        stacks.lean,
        Request(
            "POST",
            "/token",
            {"Authorization": partners.machine.basic_auth(), "DPoP": proof},
            b"grant_type=client_credentials",
            FORM,
        ),
    )
    assert answer.status.startswith("200") and json.loads(answer.body)["token_type"] == "DPoP"
    assert stacks.lean_handler.calls == 1


def test_a_client_whose_registration_changes_is_read_again(
    stacks: Stacks, partners: Partners, django_capture_on_commit_callbacks: Any
):
    request = client_credentials(partners.machine, scope="profile")
    learned(stacks, request)
    stacks.answered_here(request)
    client = partners.machine.client
    with django_capture_on_commit_callbacks(execute=True):  # the client cache forgets it
        client.allowed_scopes = "email"
        client.save()
    stacks.through_django(request, "scope withdrawn")
    with django_capture_on_commit_callbacks(execute=True):
        client.allowed_scopes = "profile"
        client.grant_types = "authorization_code"
        client.save()
    stacks.through_django(request, "grant withdrawn")
    with django_capture_on_commit_callbacks(execute=True):
        client.grant_types = "client_credentials"
        client.save()
    stacks.answered_here(request)
    with django_capture_on_commit_callbacks(execute=True):
        client.delete()
    stacks.through_django(request, "client deleted")


def test_a_token_answer_is_kept_only_when_django_s_has_the_same_claims(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    request = client_credentials(partners.machine, scope="profile")
    outcome = bearer_path.client_credentials_outcome

    def other_scope(request: Any) -> Any:
        issued = outcome(request)
        claims = access_tokens.decode(issued["access_token"])
        issued["access_token"] = access_tokens.sign({**claims, "scope": "email"})
        return issued

    monkeypatch.setattr(bearer_path, "client_credentials_outcome", other_scope)
    for _ in range(bearer_path.LEARNING_ATTEMPTS + 1):
        stacks.through_django(request)
    assert not stacks.lean._stored
    monkeypatch.setattr(bearer_path, "client_credentials_outcome", outcome)
    stacks.lean._mismatches.clear()
    learned(stacks, request)
    stacks.answered_here(request)


def test_token_bodies_are_compared_without_what_makes_each_token_unique():
    def body(**claims: Any) -> bytes:
        base = {"iss": "i", "exp": 1060, "aud": "a", "sub": "s", "client_id": "s", "iat": 1000, "jti": "j"}
        payload = base64.urlsafe_b64encode(json.dumps({**base, **claims}).encode()).rstrip(b"=").decode()
        token = f"eyJoIjoxfQ.{payload}.c2ln"
        return json.dumps({"access_token": token, "expires_in": 60, "token_type": "Bearer"}).encode()

    same = bearer_path._same_body
    assert same("/token", body(), body())
    assert same("/token", body(jti="k", iat=1001, exp=1061), body())
    assert not same("/token", body(exp=1061), body())  # another lifetime
    assert not same("/token", body(scope="x"), body())
    assert not same("/token", body(aud="b"), body())
    assert not same("/token", body().replace(b'"Bearer"', b'"DPoP"'), body())
    assert not same("/token", b'{"error": "invalid_client"}', body())
    assert not same("/token", b"not json", body())
    assert same("/introspect", b"x", b"x") and not same("/introspect", b"x", b"y")


def test_the_client_credentials_access_line_is_the_same(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    root.addHandler(handler)
    access_logger = logging.getLogger("cum.access")
    previous = access_logger.level
    access_logger.setLevel(logging.INFO)
    request = client_credentials(partners.machine)
    try:
        learned(stacks, request)
        counted = metrics.child(metrics.REQUESTS, "/token", "POST", "200")
        before = counted._value.get()
        stream.seek(0)
        stream.truncate()
        stacks.answered_here(request)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert len(lines) == 2, lines
        for line in lines:
            line.pop("time")
            line.pop("request_id")
            line["http"].pop("duration_ms")
        assert lines[0] == lines[1]
        assert lines[1]["http"] == {
            "method": "POST",
            "route": "/token",
            "status": 200,
            "client_id": partners.machine.client_id,
        }
        assert counted._value.get() == before + 2
    finally:
        root.removeHandler(handler)
        access_logger.setLevel(previous)


def test_an_exception_in_the_grant_lets_django_answer(
    stacks: Stacks, partners: Partners, monkeypatch: pytest.MonkeyPatch, caplog: Any
):
    request = client_credentials(partners.machine)
    learned(stacks, request)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(bearer_path, "client_credentials_outcome", broken)
    with caplog.at_level(logging.WARNING, logger="config.bearer_path"):
        answer = stacks.through_django(request)  # its body given back to Django
    assert answer.status.startswith("200")
    warnings = [record.getMessage() for record in caplog.records if record.name == "config.bearer_path"]
    assert warnings == ["bearer path: falling back to Django"]


def _filled_as_before(headers: list[tuple[str, str]], body: bytes, request_id: str) -> list[tuple[str, str]]:
    """The former `_filled`, on the former template (None in the per-answer places)."""
    template = [(name, None if name.lower() in bearer_path._PER_ANSWER else value) for name, value in headers]
    per_answer = {"content-length": str(len(body)), "x-request-id": request_id}
    return [(name, per_answer[name.lower()] if value is None else value) for name, value in template]


@pytest.mark.parametrize(
    "headers",
    [
        [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Content-Length", "231"),
            ("X-Request-ID", "5194518483fed0c8f5699ac4f21c297a"),
            ("X-Frame-Options", "DENY"),
        ],
        [("x-request-id", "learned"), ("content-length", "0"), ("Vary", "Origin")],
        [("CONTENT-LENGTH", "7"), ("X-Content-Length", "7"), ("X-Request-Id", "a"), ("X-Request-Id", "b")],
        [("Content-Type", "application/json")],
        [],
    ],
)
@pytest.mark.parametrize("body", [b"", b'{"sub": "x"}', b"\xc3\xa9" * 300])
def test_stored_headers_are_filled_as_before(headers: list[tuple[str, str]], body: bytes) -> None:
    template = bearer_path._Template(headers)
    for request_id in ("5194518483fed0c8f5699ac4f21c297a", "proxy-id.1:2"):
        filled = bearer_path._filled(template, body, request_id)
        assert filled == _filled_as_before(headers, body, request_id)
        assert filled is not template.headers
    assert template.headers == headers  # never changed by filling
