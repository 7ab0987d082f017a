"""The authorization endpoint's direct code issuance (identity/oidc/code_issuance.py) against
oauthlib's create_authorization_response, the reference (settings.AUTHORIZE_ISSUANCE = "oauthlib").

Every scenario sends the same authorization requests (same parameters, same PKCE pair, same
resident and browser session) once through each path. Required: the same status and the same
redirect (the code value, and the one-time link ticket where there is one, aside), the same
stored code row column by column (its code, id and times aside), and the same answer when each
code is exchanged at /token. Each scenario also states what the redirect must hold, so that two
equally wrong paths do not pass. Invalid requests give the same error on both paths.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.conf import settings
from django.http import QueryDict
from django.test import Client as BrowserClient
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.endpoints import AuthorizationEndpoint

from identity.levels import ACR_BASIC
from identity.oidc import code_issuance
from identity.oidc.models import AuthorizationCode
from identity.oidc.server import _DecodedParamsRequest, _ParsedOnceRequest
from identity.oidc.views.authorize import AuthorizeView
from tests.conftest import REDIRECT_URI, OIDCFlow, RegisteredClient
from tests.oidc.dpop_keys import DPoPKey

pytestmark = pytest.mark.django_db

VERIFIER = "v" * 43 + "-differential-verifier"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
STATE = "état & co/=?+ x"
NONCE = "n-0S6_WzA2Mj"
QUERY_REDIRECT = "https://rp.example.org/callback?tenant=a%20b&iss=forged"
ROW_IGNORED = {"id", "code", "created", "updated", "expires", "redeemed_at", "token_family"}
JKT = DPoPKey().jkt


class Env:
    def __init__(self, browser: BrowserClient, make_client: Any) -> None:
        self.browser = browser
        self.rp: RegisteredClient = make_client(redirect_uris=[REDIRECT_URI, QUERY_REDIRECT])
        self.internal: RegisteredClient = make_client(name="Espace démarches", is_internal=True)
        # The resident's consent to the partner, and the internal service's notice, once.
        for rp in (self.rp, self.internal):
            OIDCFlow(browser, rp).get_code()

    def flow(self, rp: RegisteredClient | None = None) -> OIDCFlow:
        flow = OIDCFlow(self.browser, rp or self.rp)
        flow.verifier, flow.challenge, flow.state, flow.nonce = VERIFIER, CHALLENGE, STATE, NONCE
        return flow


@pytest.fixture
def env(signed_in: BrowserClient, make_client: Any) -> Env:
    return Env(signed_in, make_client)


def _get(env: Env, **overrides: Any) -> Any:
    return env.flow().authorize(**overrides)


def _par(env: Env, **overrides: Any) -> Any:
    flow = env.flow()
    pushed = BrowserClient().post(
        "/par", flow.authorize_params(**overrides), HTTP_AUTHORIZATION=flow.rp.basic_auth()
    )
    assert pushed.status_code == 201
    return env.browser.get(
        "/authorize", {"client_id": flow.rp.client_id, "request_uri": pushed.json()["request_uri"]}
    )


CLAIMS = json.dumps({"id_token": {"email": {"essential": True}}, "userinfo": {"name": None}})

# name: (request, what the redirect's parameters must be, besides code and iss; fragment?)
VALID: dict[str, tuple[Callable[[Env], Any], dict[str, str], bool]] = {
    "plain": (lambda env: _get(env), {"state": STATE}, False),
    "no_state": (lambda env: _get(env, state=None), {}, False),
    "no_nonce": (lambda env: _get(env, nonce=None), {"state": STATE}, False),
    "response_mode_query": (lambda env: _get(env, response_mode="query"), {"state": STATE}, False),
    "response_mode_fragment": (lambda env: _get(env, response_mode="fragment"), {"state": STATE}, True),
    "response_mode_form_post": (lambda env: _get(env, response_mode="form_post"), {"state": STATE}, False),
    "post": (lambda env: env.flow().authorize(method="post"), {"state": STATE}, False),
    # django-oauth-toolkit hands oauthlib the URL only: a POSTed or pushed response_mode is
    # not seen (query, the only mode discovery advertises).
    "post_fragment": (
        lambda env: env.flow().authorize(method="post", response_mode="fragment"),
        {"state": STATE},
        False,
    ),
    "par": (lambda env: _par(env), {"state": STATE}, False),
    "par_fragment": (lambda env: _par(env, response_mode="fragment"), {"state": STATE}, False),
    "claims": (lambda env: _get(env, claims=CLAIMS), {"state": STATE}, False),
    "max_age": (lambda env: _get(env, max_age="3600"), {"state": STATE}, False),
    "prompt_none": (lambda env: _get(env, prompt="none"), {"state": STATE}, False),
    "acr_values": (lambda env: _get(env, acr_values=ACR_BASIC), {"state": STATE}, False),
    "resource": (lambda env: _get(env, resource=settings.ISSUER), {"state": STATE}, False),
    "ui_locales": (lambda env: _get(env, ui_locales="en fr"), {"state": STATE}, False),
    "hints_and_display": (
        lambda env: _get(env, login_hint="camille@example.org", display="popup"),
        {"state": STATE},
        False,
    ),
    "dpop_jkt": (lambda env: _get(env, dpop_jkt=JKT), {"state": STATE}, False),
    "redirect_with_query": (
        lambda env: _get(env, redirect_uri=QUERY_REDIRECT),
        {"tenant": "a b", "state": STATE},
        False,
    ),
    "internal_service": (lambda env: env.flow(env.internal).authorize(), {"state": STATE}, False),
    "link_ticket": (lambda env: _get(env, consent_browser_id="browser-1"), {"state": STATE}, False),
}


def _response_params(location: str, fragment: bool) -> dict[str, str]:
    parts = urlsplit(location)
    return dict(parse_qsl(parts.fragment if fragment else parts.query, keep_blank_values=True))


def _outcome(env: Env, scenario: Callable[[Env], Any], fragment: bool) -> dict[str, Any]:
    before = AuthorizationCode.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = scenario(env)
    assert response.status_code in (302, 303), response.status_code
    location = response["Location"]
    params = _response_params(location, fragment)
    code = params["code"]
    masked = location.replace(code, "CODE")
    if "consent_link_ticket" in params:
        masked = masked.replace(params["consent_link_ticket"], "TICKET")
    rows = list(AuthorizationCode.objects.filter(id__gt=before).values())
    assert len(rows) == 1
    row = rows[0]
    lifetime = row["expires"] - timezone.now()
    assert timedelta(0) < lifetime <= timedelta(seconds=oauth2_settings.AUTHORIZATION_CODE_EXPIRE_SECONDS)
    assert AuthorizationCode.objects.filter(code=code, id=row["id"]).exists()
    redirect_uri = row["redirect_uri"]
    token = BrowserClient().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": VERIFIER,
        },
        HTTP_AUTHORIZATION=(
            env.internal if row["application_id"] == env.internal.client.pk else env.rp
        ).basic_auth(),
    )
    body = token.json()
    id_claims = {}
    if "id_token" in body:
        payload = body["id_token"].split(".")[1]
        id_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        for varying in ("jti", "iat", "exp", "at_hash"):
            id_claims.pop(varying, None)
    return {
        "status": response.status_code,
        "location": masked,
        "params": params,
        "row": {name: value for name, value in row.items() if name not in ROW_IGNORED},
        "token": (token.status_code, sorted(body), body.get("error"), body.get("scope"), id_claims),
    }


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_requests_alike_on_both_paths(name: str, env: Env, settings: Any, monkeypatch: Any) -> None:
    scenario, expected, fragment = VALID[name]
    direct_calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> str:
        direct_calls.append(1)
        return code_issuance.issue_validated_code(*args, **kwargs)

    def counted_if_noticed(*args: Any, **kwargs: Any) -> str | None:
        # An internal service's code written with its notice check (PostgreSQL; elsewhere it
        # writes nothing and the code is written by issue_validated_code).
        uri = code_issuance.issue_validated_code_if_noticed(*args, **kwargs)
        if uri is not None:
            direct_calls.append(1)
        return uri

    monkeypatch.setattr("identity.oidc.authorization_request.issue_validated_code", counted)
    monkeypatch.setattr(
        "identity.oidc.authorization_request.issue_validated_code_if_noticed", counted_if_noticed
    )
    outcomes = {}
    for path in ("oauthlib", "native"):
        settings.AUTHORIZE_ISSUANCE = path
        outcomes[path] = _outcome(env, scenario, fragment)
    # The direct issuance was used (and only on its path).
    assert len(direct_calls) == 1
    reference, native = outcomes["oauthlib"], outcomes["native"]
    assert native["location"] == reference["location"]
    assert native["row"] == reference["row"]
    assert native["token"] == reference["token"]
    # And what both must say.
    params = native["params"]
    assert params["iss"] == settings.ISSUER
    assert {
        key: value for key, value in params.items() if key not in ("code", "iss", "consent_link_ticket")
    } == expected
    assert native["row"]["code_challenge"] == CHALLENGE and native["row"]["code_challenge_method"] == "S256"
    status = native["token"][0]
    assert status == (400 if name == "dpop_jkt" else 200)  # a dpop_jkt code needs a proof by that key


def test_stored_values_follow_the_request(env: Env, settings: Any) -> None:
    """What the direct path stores, stated (both paths store it alike: the test above)."""
    settings.AUTHORIZE_ISSUANCE = "native"
    outcome = _outcome(env, lambda env: _get(env, claims=CLAIMS, resource=settings.ISSUER), False)
    row = outcome["row"]
    assert row["nonce"] == NONCE
    assert json.loads(row["claims"]) == json.loads(CLAIMS)
    assert row["resource"] == [settings.ISSUER]
    assert row["scope"] == "openid profile email"
    assert row["redirect_uri"] == REDIRECT_URI
    assert row["sid"] and row["acr"] == ACR_BASIC and row["auth_time"] is not None
    assert outcome["token"][4]["nonce"] == NONCE


INVALID: dict[str, dict[str, Any]] = {
    "plain_pkce": {"code_challenge_method": "plain"},
    "no_pkce": {"code_challenge": None, "code_challenge_method": None},
    "unknown_scope": {"scope": "openid admin"},
    "unknown_resource": {"resource": "https://unknown.example.org"},
    "prompt_none_combined": {"prompt": "none login"},
    "bad_max_age": {"max_age": "-1"},
    "bad_claims": {"claims": "{not json"},
    "bad_dpop_jkt": {"dpop_jkt": "short"},
    "wrong_redirect": {"redirect_uri": "https://rp.example.org/other"},
    "response_type_token": {"response_type": "token"},
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_requests_alike_on_both_paths(name: str, env: Env, settings: Any) -> None:
    answers = []
    count = AuthorizationCode.objects.count()
    for path in ("oauthlib", "native"):
        settings.AUTHORIZE_ISSUANCE = path
        response = _get(env, **INVALID[name])
        answers.append(
            (response.status_code, response.get("Location"), (response.context or {}).get("error"))
        )
    assert answers[0] == answers[1]
    assert answers[0][0] in (303, 400)
    assert AuthorizationCode.objects.count() == count


def test_resumed_pages_still_validate_through_oauthlib(env: Env, settings: Any, monkeypatch: Any) -> None:
    """The consent decision resumes kept credentials: never the direct issuance."""
    settings.AUTHORIZE_ISSUANCE = "native"
    for name in ("issue_validated_code", "issue_validated_code_if_noticed"):
        monkeypatch.setattr(
            f"identity.oidc.authorization_request.{name}",
            lambda *args, **kwargs: pytest.fail("direct issuance on a resumed page"),
        )
    flow = env.flow()
    page = flow.authorize(prompt="consent")
    assert page.status_code == 200 and "pending_id" in page.context
    assert flow.code_from(flow.approve(page))


def _validation(validate: Callable[..., Any], uri: str) -> tuple[Any, ...]:
    try:
        scopes, credentials = validate(uri, http_method="GET", body="", headers={})
    except Exception as error:  # the outcome compared, whatever it is
        return ("raised", type(error).__name__, getattr(error, "description", str(error)))
    kept = {key: value for key, value in credentials.items() if key != "request"}
    return ("ok", scopes, kept)


def _query_variants(flow: Any) -> list[str]:
    """Authorization queries for `flow`'s partner: valid, repeated, oddly encoded and refused."""
    base = urlencode(flow.authorize_params(state="s"))
    return [
        base,
        base + "&resource=" + settings.ISSUER,
        base + "&resource=" + settings.ISSUER + "&resource=https://unknown.example.org",
        base + "&resource=https://unknown.example.org",
        base + "&state=twice",
        base + "&scope=openid",
        base + "&client_id=" + flow.rp.client_id,
        base + "&dpop_jkt=" + JKT,
        base + "&dpop_jkt=" + JKT + "&dpop_jkt=" + JKT,
        base + "&dpop_jkt=short",
        base + "&a=%zz",
        base + "&&",
        base + "&novalue",
        base + "&=empty-name",
        base + "&nonce=%E2%82%AC%00+%2B%25&x=%ff",
        base + "&prompt=none&max_age=12&login_hint=a%40b&claims=%7B%7D",
        base.replace("code_challenge_method=S256", "code_challenge_method=plain"),
        base.replace("response_type=code", "response_type=token"),
        base.replace("response_type=code", "response_type="),
        base.replace(flow.rp.client_id, "unknown"),
        base.replace(urlencode({"redirect_uri": REDIRECT_URI}), "redirect_uri=https%3A%2F%2Fevil.example"),
        "response_type=code&client_id=" + flow.rp.client_id,
        "",
    ]


def test_query_parsed_once_validates_alike(env: Env) -> None:
    """identity.oidc.server's validate_authorization_request (the URL query parsed once) against
    oauthlib's own, on valid, repeated, malformed and refused queries."""
    server = AuthorizeView.get_oauthlib_core().server
    flow = env.flow()
    base = "/authorize?" + urlencode(flow.authorize_params(state="s"))
    uris = ["/authorize?" + query for query in _query_variants(flow)] + ["/authorize"]
    for uri in uris:
        ours = _validation(server.validate_authorization_request, uri)
        reference = _validation(
            lambda *args, **kwargs: AuthorizationEndpoint.validate_authorization_request(
                server, *args, **kwargs
            ),
            uri,
        )
        assert ours == reference, uri
    # Parsed once, and the same as oauthlib's parse (a copy each time).
    request = _ParsedOnceRequest(base + "&a=1&a=2")
    first = request.uri_query_params
    first.append(("x", "y"))
    assert request.uri_query_params == Request(base + "&a=1&a=2").uri_query_params
    assert request.duplicate_params == ["a"]
    with pytest.raises(ValueError):
        _ParsedOnceRequest(base + "&a=%zz&&").uri_query_params  # noqa: B018


def test_decoded_parameters_validate_as_their_url(env: Env, rf: Any) -> None:
    """identity.oidc.server's validate_authorization_params (the endpoint's parameters handed
    over decoded) against oauthlib's own validation of the URL the endpoint used to build from
    them (`/authorize?` + `QueryDict.urlencode()`): the same scopes and credentials, or the
    same error, on valid, repeated, oddly encoded and refused parameter sets."""
    server = AuthorizeView.get_oauthlib_core().server
    flow = env.flow()
    queries = _query_variants(flow)
    checked = 0
    for query in queries:
        django_request = rf.get("/authorize?" + query, secure=True)
        params = django_request.GET
        headers = AuthorizeView.get_oauthlib_core().extract_headers(django_request)
        items = [(name, value) for name, values in params.lists() for value in values]
        ours = _validation(
            lambda *args, items=items, headers=headers, **kwargs: server.validate_authorization_params(
                "/authorize", items, headers
            ),
            "",
        )
        reference = _validation(
            lambda uri, headers=headers, **kwargs: AuthorizationEndpoint.validate_authorization_request(
                server, uri, http_method="GET", body="", headers=headers
            ),
            "/authorize?" + params.urlencode(),
        )
        assert ours == reference, query
        checked += ours[0] == "ok"
    assert 0 < checked < len(queries)  # both outcomes were compared


def test_decoded_parameters_request_holds_what_the_url_held() -> None:
    """The request oauthlib validates holds the parameters as its own parse of the URL did."""
    params = QueryDict("b=1&a=x+y&b=%E2%82%AC&c=&d=%2B%26%3D", encoding="utf-8")
    items = [(name, value) for name, values in params.lists() for value in values]
    ours = _DecodedParamsRequest("/authorize", items, {"Host": "h"})
    reference = Request("/authorize?" + params.urlencode(), body="", headers={"Host": "h"})
    assert ours.uri_query_params == reference.uri_query_params
    assert ours._params == reference._params
    assert ours.duplicate_params == reference.duplicate_params == ["b"]
    assert ours.decoded_body == reference.decoded_body
    assert dict(ours.headers) == dict(reference.headers)
    assert ours.b == "€" and ours.a == "x y" and ours.d == "+&="


def test_the_views_decorators_as_on_dispatch(rf: Any) -> None:
    """AuthorizeView.as_view puts csrf_exempt and never_cache around the view once; they were
    put around `dispatch` by method_decorator at every request: the same CSRF exemption, the
    same view class, the same answers and headers (Expires within the second)."""
    from email.utils import parsedate_to_datetime  # noqa: PLC0415

    from django.contrib.auth.models import AnonymousUser  # noqa: PLC0415
    from django.contrib.sessions.backends.cache import SessionStore  # noqa: PLC0415
    from django.utils.decorators import method_decorator  # noqa: PLC0415
    from django.views import View  # noqa: PLC0415
    from django.views.decorators.cache import never_cache  # noqa: PLC0415
    from django.views.decorators.csrf import csrf_exempt  # noqa: PLC0415

    class Reference(AuthorizeView):
        dispatch = method_decorator([csrf_exempt, never_cache])(View.dispatch)  # type: ignore[assignment]

    reference = View.as_view.__func__(Reference)  # type: ignore[attr-defined]
    ours = AuthorizeView.as_view()
    assert ours.csrf_exempt is reference.csrf_exempt is True
    assert ours.view_class is AuthorizeView and reference.view_class is Reference

    def answer(view: Any, method: str, query: dict[str, str]) -> Any:
        request = getattr(rf, method)("/authorize", query)
        request.session, request.user = SessionStore(), AnonymousUser()
        return view(request)

    cases = [
        ("get", {}),
        ("get", {"client_id": "nobody", "redirect_uri": "https://rp.example.org/cb"}),
        ("post", {"response_type": "code"}),
        ("put", {}),
        ("delete", {}),
    ]
    for method, query in cases:
        got, expected = answer(ours, method, query), answer(reference, method, query)
        assert got.status_code == expected.status_code, (method, query)
        assert _masked(got.content) == _masked(expected.content)
        headers = {k: v for k, v in got.items() if k != "Expires"}
        assert headers == {k: v for k, v in expected.items() if k != "Expires"}
        assert got.has_header("Expires") and expected.has_header("Expires")
        delta = parsedate_to_datetime(got["Expires"]) - parsedate_to_datetime(expected["Expires"])
        assert abs(delta.total_seconds()) <= 1


def _masked(content: bytes) -> bytes:
    """A page without its per-request values (the CSRF token, the request id)."""
    import re  # noqa: PLC0415

    return re.sub(rb'(value|content)="[A-Za-z0-9_-]{24,}"', rb'\1="-"', content)
