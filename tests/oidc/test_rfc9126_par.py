"""Pushed Authorization Requests (RFC 9126).

- §2: the client POSTs its authorization parameters to the PAR endpoint, authenticated as at
  the token endpoint; §2.2: 201 with `request_uri` (urn:ietf:params:oauth:request_uri:…) and
  `expires_in`; §2.3: errors in JSON (invalid_client 401, invalid_request 400, …).
- §4: the authorization endpoint accepts `client_id` + `request_uri` and uses the pushed
  parameters; a request_uri that is unknown, another client's, expired or already used is
  refused (`invalid_request_uri`); §5/§6: a client may be required to use PAR.
- Discovery (§5): `pushed_authorization_request_endpoint`, `require_pushed_authorization_requests`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client as BrowserClient
from django.utils import timezone

from identity.oidc.models import PushedAuthorizationRequest
from tests.conftest import OIDCFlow
from tests.oidc.conftest import is_consent_page, location_query, sign_in

pytestmark = pytest.mark.django_db

URN = "urn:ietf:params:oauth:request_uri:"


def push(flow: OIDCFlow, *, auth: str | None = "basic", **overrides: Any) -> Any:
    params = flow.authorize_params(**overrides)
    extra = {"HTTP_AUTHORIZATION": flow.rp.basic_auth()} if auth == "basic" else {}
    return BrowserClient(enforce_csrf_checks=True).post("/par", params, **extra)


def authorize_by_reference(flow: OIDCFlow, request_uri: str, browser: BrowserClient | None = None) -> Any:
    return (browser or flow.browser).get(
        "/authorize", {"client_id": flow.rp.client_id, "request_uri": request_uri}
    )


def assert_invalid_request_uri(response: Any) -> None:
    assert response.status_code == 400
    assert response.context["error"] == "invalid_request_uri"
    assert "Location" not in response


def test_discovery_advertises_par(client):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["pushed_authorization_request_endpoint"].endswith("/par")
    assert metadata["require_pushed_authorization_requests"] is False


def test_pushed_request_then_authorize_by_reference(flow):
    response = push(flow)
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["request_uri"].startswith(URN) and len(body["request_uri"]) > len(URN) + 30
    assert body["expires_in"] == 60
    page = authorize_by_reference(flow, body["request_uri"])
    assert is_consent_page(page)
    code = flow.code_from(flow.approve(page))
    assert flow.token(code).status_code == 200


def test_only_a_hash_of_the_reference_is_stored(flow):
    reference = push(flow).json()["request_uri"][len(URN) :]
    stored = PushedAuthorizationRequest.objects.get()
    assert reference not in str(stored.reference) and len(stored.reference) == 64


def test_pushed_parameters_win_over_the_query(flow):
    request_uri = push(flow, scope="openid email").json()["request_uri"]
    page = flow.browser.get(
        "/authorize", {"client_id": flow.rp.client_id, "request_uri": request_uri, "scope": "openid profile"}
    )
    assert [item["scope"] for item in page.context["scopes"]] == ["openid", "email"]


def test_request_uri_used_twice_is_refused(flow):
    request_uri = push(flow).json()["request_uri"]
    flow.get_code  # noqa: B018
    first = authorize_by_reference(flow, request_uri)
    flow.code_from(flow.approve(first))
    assert_invalid_request_uri(authorize_by_reference(flow, request_uri))
    assert_invalid_request_uri(authorize_by_reference(flow, request_uri, BrowserClient()))


def test_expired_request_uri_is_refused(flow):
    request_uri = push(flow).json()["request_uri"]
    PushedAuthorizationRequest.objects.update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    assert_invalid_request_uri(authorize_by_reference(flow, request_uri))


def test_request_uri_of_another_client_is_refused(flow, other_rp):
    request_uri = push(flow).json()["request_uri"]
    response = flow.browser.get("/authorize", {"client_id": other_rp.client_id, "request_uri": request_uri})
    assert_invalid_request_uri(response)


def test_unknown_request_uri_is_refused(flow):
    assert_invalid_request_uri(authorize_by_reference(flow, URN + "made-up-reference"))


def test_other_request_uri_values_are_still_not_supported(flow):
    response = flow.authorize(request_uri="https://rp.example.org/request.jwt")
    assert location_query(response)["error"] == ["request_uri_not_supported"]


def test_par_requires_client_authentication(flow):
    response = push(flow, auth=None)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_par_checks_the_request_now(flow):
    response = push(flow, redirect_uri="https://evil.example/callback")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    response = push(flow, code_challenge_method="plain")
    assert response.status_code == 400
    response = push(flow, request_uri=URN + "x")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert not PushedAuthorizationRequest.objects.exists()


def test_client_required_to_use_par_cannot_authorize_directly(make_client, signed_in):
    rp = make_client(require_par=True)
    flow = OIDCFlow(signed_in, rp)
    response = flow.authorize()
    assert location_query(response)["error"] == ["invalid_request"]
    page = authorize_by_reference(flow, push(flow).json()["request_uri"])
    assert is_consent_page(page)


def test_pushed_request_resumes_after_sign_in(rp, resident):
    browser = BrowserClient()
    flow = OIDCFlow(browser, rp)
    request_uri = push(flow).json()["request_uri"]
    response = authorize_by_reference(flow, request_uri)
    assert urlsplit(response["Location"]).path == "/connexion/"
    back = sign_in(browser, resident.email, response["Location"])
    page = browser.get(back["Location"])
    assert is_consent_page(page)
    flow.code_from(flow.approve(page))
    # The resumption was single-use as well.
    assert_invalid_request_uri(browser.get(back["Location"]))
