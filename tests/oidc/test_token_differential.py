"""Our token endpoint (identity/oidc/token_endpoint.py) against the oauthlib path it replaced.

Every scenario sends the same sequence of requests to /token twice: once answered by
django-oauth-toolkit/oauthlib (settings.TOKEN_ENDPOINT = "oauthlib", the reference), once by
ours ("native"), each time from a fresh authorization (same resident, same browser session).
Required: the same status and `error` code for every request, the same WWW-Authenticate
challenge, and for successes the same response fields and equivalent token claims. Each
scenario also states the answers expected, so that two equally wrong paths do not pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.utils import timezone
from jwcrypto import jwk, jwt

from identity.oidc.models import AccessToken, AuthorizationCode
from tests.conftest import REDIRECT_URI, OIDCFlow, RegisteredClient
from tests.oidc.conftest import basic, userinfo
from tests.oidc.dpop_keys import DPoPKey

pytestmark = pytest.mark.django_db

API = "https://api.mediatheques.example.org"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Claims whose values must be equal on both paths (the others differ by nature: jti, exp, iat,
# at_hash, the nonce of each authorization, the tokens themselves); the names must be the same.
ID_TOKEN_CLAIMS = ("iss", "aud", "sub", "auth_time", "acr", "amr", "sid", "email", "email_verified")
ACCESS_TOKEN_CLAIMS = ("iss", "aud", "sub", "client_id", "scope", "auth_time", "acr")


@dataclass
class Env:
    browser: BrowserClient
    rp: RegisteredClient
    other_rp: RegisteredClient
    public_rp: RegisteredClient
    post_rp: RegisteredClient
    machine: RegisteredClient
    jwt_machine: RegisteredClient
    jwt_key: jwk.JWK
    dpop_rp: RegisteredClient

    def flow(self, rp: RegisteredClient | None = None, **authorize: Any) -> tuple[OIDCFlow, str]:
        flow = OIDCFlow(self.browser, rp or self.rp)
        return flow, flow.get_code(**authorize)

    def code_form(self, flow: OIDCFlow, code: str, /, **overrides: Any) -> dict[str, str]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        }
        data.update(overrides)
        return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def env(signed_in: BrowserClient, make_client: Any) -> Env:
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    public = json.loads(key.export_public())
    public.update({"kid": key.thumbprint(), "alg": "ES256", "use": "sig"})
    make_client(
        name="Médiathèques API",
        redirect_uris=[],
        grant_types=["client_credentials"],
        is_resource_server=True,
        resource_identifier=API,
    )
    return Env(
        browser=signed_in,
        rp=make_client(),
        other_rp=make_client(name="Piscines"),
        public_rp=make_client(name="Appli mobile", public=True),
        post_rp=make_client(name="Bibliothèques", token_endpoint_auth_method="client_secret_post"),
        machine=make_client(
            name="Passerelle transport",
            redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=["profile"],
        ),
        jwt_machine=make_client(
            name="Passerelle signée",
            redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=["profile"],
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [public]},
        ),
        jwt_key=key,
        dpop_rp=make_client(
            name="Passerelle DPoP",
            redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=["profile"],
            require_dpop=True,
        ),
    )


def post(
    data: dict[str, str] | str, *, auth: str | None = None, query: str = "", dpop: str | None = None
) -> Any:
    extra = {"HTTP_AUTHORIZATION": auth} if auth else {}
    if dpop is not None:
        extra["HTTP_DPOP"] = dpop
    if isinstance(data, str):  # a raw form, for repeated parameters
        return BrowserClient().post(
            "/token" + query, data, content_type="application/x-www-form-urlencoded", **extra
        )
    return BrowserClient().post("/token" + query, data, **extra)


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def summary(response: Any, path: str) -> tuple[Any, ...]:
    """What must be equal on both paths."""
    body = json.loads(response.content)
    assert response["Cache-Control"] == "no-store"
    if path == "native":
        # oauthlib leaves out the JSON content type on the errors its endpoint raises itself
        # (query parameters, grant type): ours always sends it.
        assert response["Content-Type"] == "application/json"
    head = (
        response.status_code,
        body.get("error"),
        response.get("WWW-Authenticate"),
        "DPoP-Nonce" in response,
    )
    if response.status_code != 200:
        return head
    fields = tuple(sorted(body))
    scope, expires_in, token_type = body.get("scope"), body["expires_in"], body["token_type"]
    access = claims_of(body["access_token"])
    access_claims = (
        tuple(sorted(access)),
        {name: access.get(name) for name in ACCESS_TOKEN_CLAIMS},
        "cnf" in access,
    )
    id_claims: Any = None
    if "id_token" in body:
        id_token = claims_of(body["id_token"])
        id_claims = (tuple(sorted(id_token)), {name: id_token.get(name) for name in ID_TOKEN_CLAIMS})
    return (*head, fields, scope, expires_in, token_type, access_claims, id_claims)


def assertion(env: Env, **overrides: Any) -> str:
    now = int(time.time())
    client_id = env.jwt_machine.client_id
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": settings.ISSUER,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    token = jwt.JWT(header={"alg": "ES256", "kid": env.jwt_key.thumbprint()}, claims=claims)
    token.make_signed_token(env.jwt_key)
    return token.serialize()


# --- the scenarios: each returns the responses of its requests, in order -------------------------

Scenario = Callable[[Env], list[Any]]


def code_exchange(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [post(env.code_form(flow, code), auth=env.rp.basic_auth())]


def code_exchange_client_secret_post(env: Env) -> list[Any]:
    flow, code = env.flow(env.post_rp)
    form = env.code_form(flow, code, client_id=env.post_rp.client_id, client_secret=env.post_rp.secret)
    return [post(form)]


def code_exchange_public_client(env: Env) -> list[Any]:
    flow, code = env.flow(env.public_rp)
    return [post(env.code_form(flow, code, client_id=env.public_rp.client_id))]


def public_client_without_verifier(env: Env) -> list[Any]:
    flow, code = env.flow(env.public_rp)
    return [post(env.code_form(flow, code, client_id=env.public_rp.client_id, code_verifier=None))]


def missing_code(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [post(env.code_form(flow, code, code=None), auth=env.rp.basic_auth())]


def missing_grant_type(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [post(env.code_form(flow, code, grant_type=None), auth=env.rp.basic_auth())]


def unsupported_grants(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [
        post(env.code_form(flow, code, grant_type=grant), auth=env.rp.basic_auth())
        for grant in ("password", "openid", "implicit", "urn:ietf:params:oauth:grant-type:device_code")
    ]


def repeated_parameters(env: Env) -> list[Any]:
    # Django keeps the last value of a repeated parameter, on both paths (resource excepted).
    flow, code = env.flow()
    form = f"grant_type=refresh_token&grant_type=authorization_code&code=bogus&code={code}"
    form += f"&redirect_uri={REDIRECT_URI}&code_verifier={flow.verifier}"
    return [post(form, auth=env.rp.basic_auth())]


def query_parameters(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [post(env.code_form(flow, code), auth=env.rp.basic_auth(), query="?scope=openid")]


def wrong_client(env: Env) -> list[Any]:
    flow, code = env.flow()
    first = post(env.code_form(flow, code), auth=env.other_rp.basic_auth())
    # Untouched by another client's attempt: the right client still redeems it.
    return [first, post(env.code_form(flow, code), auth=env.rp.basic_auth())]


def wrong_secret(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [
        post(env.code_form(flow, code), auth=basic(env.rp.client_id, "not-the-secret")),
        post(env.code_form(flow, code), auth=basic("no-such-client", "x")),
        post(env.code_form(flow, code, client_id=env.rp.client_id)),  # confidential, no secret
        post(env.code_form(flow, code)),  # nothing at all
        post(env.code_form(flow, code), auth="Bearer abc"),
    ]


def mixed_or_wrong_methods(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [
        # Two methods at once.
        post(env.code_form(flow, code, client_secret=env.rp.secret), auth=env.rp.basic_auth()),
        # Basic from a client registered for client_secret_post.
        post(env.code_form(flow, code), auth=env.post_rp.basic_auth()),
        # A body client_id naming another client than the Basic credentials.
        post(env.code_form(flow, code, client_id=env.other_rp.client_id), auth=env.rp.basic_auth()),
        # The secret in the body, from a client registered for client_secret_basic.
        post(env.code_form(flow, code, client_id=env.rp.client_id, client_secret=env.rp.secret)),
    ]


def _raw_basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


def basic_header_shapes(env: Env) -> list[Any]:
    """The Authorization: Basic header as our endpoint reads it itself for the code and
    refresh grants (client_auth.authenticate_presented, not the oauthlib request's parser)."""
    answers = []
    rp_id, secret = env.rp.client_id, env.rp.secret
    for auth, extra in (
        (_raw_basic(b"no-colon-at-all"), {}),
        (_raw_basic(b"\xff\xfe:" + secret.encode()), {}),  # not UTF-8
        ("Basic !!!not-base64!!!", {}),
        ("basic " + env.rp.basic_auth().split(" ", 1)[1], {}),  # the scheme is case-sensitive here
        ("Basic", {}),  # no credentials: nothing presented, a confidential client refused
        (_raw_basic(f"{rp_id}:{secret}:".encode()), {}),  # the secret is what follows the first colon
        (_raw_basic(f"{rp_id}%00:{secret}".encode()), {}),  # a NUL in the client_id
        (env.public_rp.basic_auth(), {}),  # a public client has no secret to present
        (env.rp.basic_auth(), {"client_id": rp_id}),  # the same client_id in the body: accepted
    ):
        flow, code = env.flow()
        answers.append(post(env.code_form(flow, code, **extra), auth=auth))
    # Form-encoded credentials (RFC 6749 §2.3.1): a client_id and secret with reserved characters.
    flow, code = env.flow()
    encoded = _raw_basic(f"{rp_id}:{secret}".replace("-", "%2D").encode())
    answers.append(post(env.code_form(flow, code), auth=encoded))
    return answers


def basic_empty_from_public_client(env: Env) -> list[Any]:
    """ "Basic " with nothing after it counts as no header (django-oauth-toolkit's test): a
    public client is then identified by its client_id, for the code and for the refresh."""
    flow, code = env.flow(env.public_rp)
    first = post(env.code_form(flow, code, client_id=env.public_rp.client_id), auth="Basic ")
    form = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
    refreshed = post({**form, "client_id": env.public_rp.client_id}, auth="Basic ")
    return [first, refreshed]


def refresh_basic_shapes(env: Env) -> list[Any]:
    """A refresh authenticated by Basic: the right client, a client registered for another
    method, two methods at once, a body client_id naming another client, a bad secret."""
    flow, code = env.flow()
    refresh_token = post(env.code_form(flow, code), auth=env.rp.basic_auth()).json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    answers = [
        post(form, auth=env.post_rp.basic_auth()),
        post({**form, "client_secret": env.rp.secret}, auth=env.rp.basic_auth()),
        post({**form, "client_id": env.other_rp.client_id}, auth=env.rp.basic_auth()),
        post(form, auth=basic(env.rp.client_id, env.rp.secret + "x")),
        post({**form, "client_assertion_type": ASSERTION_TYPE}, auth=env.rp.basic_auth()),
    ]
    # Still live after those refusals: the right client refreshes it.
    answers.append(post({**form, "client_id": env.rp.client_id}, auth=env.rp.basic_auth()))
    return answers


def wrong_verifier(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [post(env.code_form(flow, code, code_verifier="x" * 50), auth=env.rp.basic_auth())]


def missing_verifier(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [post(env.code_form(flow, code, code_verifier=None), auth=env.rp.basic_auth())]


def redirect_uris(env: Env) -> list[Any]:
    flow, code = env.flow()
    other = post(env.code_form(flow, code, redirect_uri=REDIRECT_URI + "/"), auth=env.rp.basic_auth())
    flow, code = env.flow()
    missing = post(env.code_form(flow, code, redirect_uri=None), auth=env.rp.basic_auth())
    return [other, missing]


def replayed_code(env: Env) -> list[Any]:
    flow, code = env.flow()
    first = post(env.code_form(flow, code), auth=env.rp.basic_auth())
    replay = post(env.code_form(flow, code), auth=env.rp.basic_auth())
    tokens = first.json()
    # What the first redemption issued is revoked.
    refresh = post(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=env.rp.basic_auth()
    )
    assert userinfo(tokens["access_token"]).status_code == 401
    return [first, replay, refresh]


def expired_code(env: Env) -> list[Any]:
    flow, code = env.flow()
    AuthorizationCode.objects.update(expires=timezone.now() - timedelta(seconds=1))
    return [post(env.code_form(flow, code), auth=env.rp.basic_auth())]


def unknown_code(env: Env) -> list[Any]:
    flow, _code = env.flow()
    return [post(env.code_form(flow, "unknown-code"), auth=env.rp.basic_auth())]


def code_with_resources(env: Env) -> list[Any]:
    flow, code = env.flow(resource=API)
    granted = post(env.code_form(flow, code, resource=API), auth=env.rp.basic_auth())
    flow, code = env.flow(resource=API)
    other = post(env.code_form(flow, code, resource="https://other.example.org"), auth=env.rp.basic_auth())
    flow, code = env.flow()
    unknown = post(
        env.code_form(flow, code, resource="https://unknown.example.org"), auth=env.rp.basic_auth()
    )
    return [granted, other, unknown]


def grant_not_registered(env: Env) -> list[Any]:
    flow, code = env.flow()
    return [
        post(env.code_form(flow, code), auth=env.machine.basic_auth()),
        post({"grant_type": "client_credentials"}, auth=env.rp.basic_auth()),
    ]


def refresh_rotation_and_replay(env: Env) -> list[Any]:
    flow, code = env.flow()
    first = post(env.code_form(flow, code), auth=env.rp.basic_auth())
    original = first.json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": original}
    rotated = post(form, auth=env.rp.basic_auth())
    replay = post(form, auth=env.rp.basic_auth())
    # The replay revoked the whole family: the rotated token is refused too.
    successor = post(
        {"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]},
        auth=env.rp.basic_auth(),
    )
    return [first, rotated, replay, successor]


def refresh_chain_without_id_token(env: Env) -> list[Any]:
    """Rotations narrowed to a scope without openid (no ID token: the token rows are written
    without one), then the replay of a rotated token in the middle of the chain: the family
    goes, the latest successor with it (its access token's row deleted)."""
    flow, code = env.flow()
    first = post(env.code_form(flow, code), auth=env.rp.basic_auth())
    form = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"], "scope": "profile"}
    narrowed = post(form, auth=env.rp.basic_auth())
    middle = narrowed.json()["refresh_token"]
    latest = post({"grant_type": "refresh_token", "refresh_token": middle}, auth=env.rp.basic_auth())
    replay = post({"grant_type": "refresh_token", "refresh_token": middle}, auth=env.rp.basic_auth())
    successor = post(
        {"grant_type": "refresh_token", "refresh_token": latest.json()["refresh_token"]},
        auth=env.rp.basic_auth(),
    )
    for response in (narrowed, latest):
        assert "id_token" not in response.json()
    checksum = hashlib.sha256(latest.json()["access_token"].encode()).hexdigest()
    assert not AccessToken.objects.filter(token_checksum=checksum).exists()
    return [first, narrowed, latest, replay, successor]


def refresh_scopes(env: Env) -> list[Any]:
    flow, code = env.flow()
    refresh_token = post(env.code_form(flow, code), auth=env.rp.basic_auth()).json()["refresh_token"]
    wider = post(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "scope": "openid profile email phone",
        },
        auth=env.rp.basic_auth(),
    )
    narrower = post(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": "openid email"},
        auth=env.rp.basic_auth(),
    )
    return [wider, narrower]


def refresh_refusals(env: Env) -> list[Any]:
    flow, code = env.flow()
    refresh_token = post(env.code_form(flow, code), auth=env.rp.basic_auth()).json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return [
        post({"grant_type": "refresh_token"}, auth=env.rp.basic_auth()),
        post({**form, "refresh_token": "unknown"}, auth=env.rp.basic_auth()),
        post(form, auth=env.other_rp.basic_auth()),
        post(form, auth=basic(env.rp.client_id, "wrong")),
        post({**form, "resource": API}, auth=env.rp.basic_auth()),  # not granted
        post({**form, "resource": settings.ISSUER}, auth=env.rp.basic_auth()),
    ]


def refresh_public_client(env: Env) -> list[Any]:
    flow, code = env.flow(env.public_rp)
    first = post(env.code_form(flow, code, client_id=env.public_rp.client_id))
    form = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
    return [first, post({**form, "client_id": env.public_rp.client_id}), post(form)]


def client_credentials(env: Env) -> list[Any]:
    auth = env.machine.basic_auth()
    return [
        post({"grant_type": "client_credentials"}, auth=auth),
        post({"grant_type": "client_credentials", "scope": "profile"}, auth=auth),
        post({"grant_type": "client_credentials", "scope": "email"}, auth=auth),
        post({"grant_type": "client_credentials", "scope": ""}, auth=auth),
        post({"grant_type": "client_credentials", "resource": API}, auth=auth),
        post("grant_type=client_credentials&resource=" + API + "&resource=" + settings.ISSUER, auth=auth),
        post({"grant_type": "client_credentials", "resource": "https://unknown.example.org"}, auth=auth),
        post({"grant_type": "client_credentials"}, auth=basic(env.machine.client_id, "wrong")),
        post({"grant_type": "client_credentials", "client_id": env.public_rp.client_id}),
        post({"grant_type": "client_credentials", "client_id": env.machine.client_id}),
    ]


def private_key_jwt(env: Env) -> list[Any]:
    signed = assertion(env)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }
    return [
        post(form),
        post(form),  # the same jti again
        post({**form, "client_assertion": assertion(env, aud=settings.ISSUER + "/token")}),
        post({**form, "client_assertion": assertion(env), "client_assertion_type": "urn:other"}),
        post({**form, "client_assertion": assertion(env)}, auth=env.machine.basic_auth()),
        post(
            {"grant_type": "client_credentials", "client_id": env.jwt_machine.client_id, "client_secret": "x"}
        ),
    ]


# DPoP (RFC 9449): the token view checks the proof before either path runs; both bind alike.


def _proof(key: DPoPKey, nonce: str | None = None) -> str:
    return key.proof("POST", settings.ISSUER + "/token", nonce=nonce)


def dpop_public_client(env: Env) -> list[Any]:
    key = DPoPKey()
    flow, code = env.flow(env.public_rp)
    form = env.code_form(flow, code, client_id=env.public_rp.client_id)
    asked = post(form, dpop=_proof(key))  # use_dpop_nonce: the code is not consumed
    nonce = asked["DPoP-Nonce"]
    first = post(form, dpop=_proof(key, nonce))
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": first.json()["refresh_token"],
        "client_id": env.public_rp.client_id,
    }
    return [
        asked,
        first,
        post(refresh, dpop=_proof(DPoPKey(), nonce)),  # another key: refused, family revoked
        post(refresh, dpop=_proof(key, nonce)),
    ]


def dpop_bound_refresh(env: Env) -> list[Any]:
    key = DPoPKey()
    nonce = post({"grant_type": "client_credentials"}, dpop=_proof(key))["DPoP-Nonce"]
    flow, code = env.flow(env.public_rp)
    first = post(env.code_form(flow, code, client_id=env.public_rp.client_id), dpop=_proof(key, nonce))
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": first.json()["refresh_token"],
        "client_id": env.public_rp.client_id,
    }
    rotated = post(refresh, dpop=_proof(key, nonce))
    return [first, rotated, post({**refresh, "refresh_token": rotated.json()["refresh_token"]})]


def dpop_confidential_and_machine(env: Env) -> list[Any]:
    key = DPoPKey()
    nonce = post({"grant_type": "client_credentials"}, dpop=_proof(key))["DPoP-Nonce"]
    flow, code = env.flow()
    first = post(env.code_form(flow, code), auth=env.rp.basic_auth(), dpop=_proof(key, nonce))
    refresh = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
    machine = {"grant_type": "client_credentials"}
    return [
        first,
        post(refresh, auth=env.rp.basic_auth()),  # not bound: a Bearer token
        post(machine, auth=env.machine.basic_auth(), dpop=_proof(key, nonce)),
        post(machine, auth=env.machine.basic_auth(), dpop=key.proof("GET", settings.ISSUER + "/token")),
        post(machine, auth=env.dpop_rp.basic_auth()),  # dpop_bound_access_tokens, no proof
        post(machine, auth=env.dpop_rp.basic_auth(), dpop=_proof(key, nonce)),
    ]


def dpop_jkt_code(env: Env) -> list[Any]:
    key = DPoPKey()
    nonce = post({"grant_type": "client_credentials"}, dpop=_proof(key))["DPoP-Nonce"]
    answers = []
    for proof in (None, _proof(DPoPKey(), nonce), _proof(key, nonce)):
        flow, code = env.flow(dpop_jkt=key.jkt)
        answers.append(post(env.code_form(flow, code), auth=env.rp.basic_auth(), dpop=proof))
    return answers


OK = 200
DPOP_PROOF = (400, "invalid_dpop_proof")
SCENARIOS: dict[str, tuple[Scenario, list[tuple[int, str | None]]]] = {
    "code_exchange": (code_exchange, [(OK, None)]),
    "code_exchange_client_secret_post": (code_exchange_client_secret_post, [(OK, None)]),
    "code_exchange_public_client": (code_exchange_public_client, [(OK, None)]),
    "public_client_without_verifier": (public_client_without_verifier, [(400, "invalid_request")]),
    "missing_code": (missing_code, [(400, "invalid_request")]),
    "missing_grant_type": (missing_grant_type, [(400, "unsupported_grant_type")]),
    "unsupported_grants": (unsupported_grants, [(400, "unsupported_grant_type")] * 4),
    "repeated_parameters": (repeated_parameters, [(OK, None)]),
    "query_parameters": (query_parameters, [(400, "invalid_request")]),
    "wrong_client": (wrong_client, [(400, "invalid_grant"), (OK, None)]),
    "wrong_secret": (wrong_secret, [(401, "invalid_client")] * 5),
    "mixed_or_wrong_methods": (mixed_or_wrong_methods, [(401, "invalid_client")] * 4),
    "basic_header_shapes": (
        basic_header_shapes,
        [(401, "invalid_client")] * 8 + [(OK, None), (OK, None)],
    ),
    "basic_empty_from_public_client": (basic_empty_from_public_client, [(OK, None), (OK, None)]),
    "refresh_basic_shapes": (refresh_basic_shapes, [(401, "invalid_client")] * 5 + [(OK, None)]),
    "wrong_verifier": (wrong_verifier, [(400, "invalid_grant")]),
    "missing_verifier": (missing_verifier, [(400, "invalid_request")]),
    "redirect_uris": (redirect_uris, [(400, "invalid_grant"), (400, "invalid_request")]),
    "replayed_code": (replayed_code, [(OK, None), (400, "invalid_grant"), (400, "invalid_grant")]),
    "expired_code": (expired_code, [(400, "invalid_grant")]),
    "unknown_code": (unknown_code, [(400, "invalid_grant")]),
    "code_with_resources": (
        code_with_resources,
        [(OK, None), (400, "invalid_target"), (400, "invalid_target")],
    ),
    "grant_not_registered": (grant_not_registered, [(400, "unauthorized_client")] * 2),
    "refresh_rotation_and_replay": (
        refresh_rotation_and_replay,
        [(OK, None), (OK, None), (400, "invalid_grant"), (400, "invalid_grant")],
    ),
    "refresh_chain_without_id_token": (
        refresh_chain_without_id_token,
        [(OK, None), (OK, None), (OK, None), (400, "invalid_grant"), (400, "invalid_grant")],
    ),
    "refresh_scopes": (refresh_scopes, [(400, "invalid_scope"), (OK, None)]),
    "refresh_refusals": (
        refresh_refusals,
        [
            (400, "invalid_request"),
            (400, "invalid_grant"),
            (400, "invalid_grant"),
            (401, "invalid_client"),
            (400, "invalid_target"),
            (OK, None),
        ],
    ),
    "refresh_public_client": (refresh_public_client, [(OK, None), (OK, None), (401, "invalid_client")]),
    "client_credentials": (
        client_credentials,
        [
            (OK, None),
            (OK, None),
            (400, "invalid_scope"),
            (400, "invalid_scope"),
            (OK, None),
            (OK, None),
            (400, "invalid_target"),
            (401, "invalid_client"),
            (401, "invalid_client"),
            (401, "invalid_client"),
        ],
    ),
    "private_key_jwt": (private_key_jwt, [(OK, None)] + [(401, "invalid_client")] * 5),
    "dpop_public_client": (
        dpop_public_client,
        [(400, "use_dpop_nonce"), (OK, None), DPOP_PROOF, (400, "invalid_grant")],
    ),
    "dpop_bound_refresh": (dpop_bound_refresh, [(OK, None), (OK, None), DPOP_PROOF]),
    "dpop_confidential_and_machine": (
        dpop_confidential_and_machine,
        [(OK, None), (OK, None), (OK, None), DPOP_PROOF, DPOP_PROOF, (OK, None)],
    ),
    "dpop_jkt_code": (dpop_jkt_code, [DPOP_PROOF, DPOP_PROOF, (OK, None)]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_both_paths_answer_alike(name: str, env: Env, settings: Any) -> None:
    scenario, expected = SCENARIOS[name]
    answers = {}
    for path in ("oauthlib", "native"):
        settings.TOKEN_ENDPOINT = path
        answers[path] = [summary(response, path) for response in scenario(env)]
    assert answers["native"] == answers["oauthlib"]
    assert [answer[:2] for answer in answers["native"]] == expected
