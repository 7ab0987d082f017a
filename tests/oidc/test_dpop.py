"""DPoP (RFC 9449) at the token endpoint, PAR, userinfo and introspection, by RFC section.

Proofs are made by tests/oidc/dpop_keys.py (its own signing code; thumbprints by jwcrypto),
sent with Django's test client. The real client library over a real socket, and two
server processes sharing nonces: tests/oidc/test_dpop_live.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.test import Client as BrowserClient
from django.utils import timezone

from identity.oidc import dpop, dpop_resource
from identity.oidc.dpop_resource import DPoPError, verify_request
from identity.oidc.models import DPoPProofJti, RefreshToken
from identity.oidc.profiles_tokens import read_partner_token
from tests.conftest import REDIRECT_URI, OIDCFlow
from tests.oidc.conftest import basic
from tests.oidc.dpop_keys import DPoPKey
from tests.oidc.test_token_differential import claims_of

pytestmark = pytest.mark.django_db

TOKEN = "/token"


def url(path: str) -> str:
    return settings.ISSUER + path


def post_token(data: dict[str, str], proof: str | None = None, auth: str | None = None, **extra: Any) -> Any:
    headers = dict(extra)
    if proof is not None:
        headers["HTTP_DPOP"] = proof
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    return BrowserClient().post(TOKEN, data, **headers)


def server_nonce(key: DPoPKey, path: str = TOKEN) -> str:
    """The nonce the server hands out (RFC 9449 §8): a first proof without one is refused."""
    response = BrowserClient().post(path, {}, HTTP_DPOP=key.proof("POST", url(path)))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "use_dpop_nonce"
    return response["DPoP-Nonce"]


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey()


@pytest.fixture
def nonce(key: DPoPKey) -> str:
    return server_nonce(key)


@pytest.fixture
def machine(make_client: Any) -> Any:
    return make_client(
        name="Passerelle transport", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )


def cc(machine: Any, proof: str | None, **extra: Any) -> Any:
    return post_token({"grant_type": "client_credentials"}, proof, machine.basic_auth(), **extra)


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json().get("error")


# --- §4.3 checking a proof: each check failing alone -------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256", "RS256", "EdDSA"])
def test_each_supported_algorithm_binds_the_access_token(alg: str, machine: Any):
    key = DPoPKey(alg)
    response = cc(machine, key.proof("POST", url(TOKEN), nonce=server_nonce(key)))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}  # RFC 7638 thumbprint


def _bad_proofs(key: DPoPKey, nonce: str) -> dict[str, str]:
    other = DPoPKey()
    now = timezone.now().timestamp()
    good = {"nonce": nonce}
    return {
        "not a JWT": "not-a-jwt",
        "two headers": key.proof("POST", url(TOKEN), **good) + ", " + key.proof("POST", url(TOKEN), **good),
        "too long": key.proof("POST", url(TOKEN), claims={"pad": "x" * 9000}, **good),
        "typ missing": key.proof("POST", url(TOKEN), drop=("typ",), **good),
        "typ JWT": key.proof("POST", url(TOKEN), header={"typ": "JWT"}, **good),
        "alg none": key.proof("POST", url(TOKEN), header={"alg": "none"}, **good),
        "alg HS256": key.proof("POST", url(TOKEN), header={"alg": "HS256"}, **good),
        "alg of another key type": key.proof("POST", url(TOKEN), header={"alg": "RS256"}, **good),
        "jwk missing": key.proof("POST", url(TOKEN), drop=("jwk",), **good),
        "private jwk": key.proof("POST", url(TOKEN), header={"jwk": key.private_jwk()}, **good),
        "crit": key.proof("POST", url(TOKEN), header={"crit": ["x"], "x": 1}, **good),
        "signed by another key": key.proof("POST", url(TOKEN), signer=other, **good),
        "jti missing": key.proof("POST", url(TOKEN), drop=("jti",), **good),
        "htm missing": key.proof("POST", url(TOKEN), drop=("htm",), **good),
        "htu missing": key.proof("POST", url(TOKEN), drop=("htu",), **good),
        "iat missing": key.proof("POST", url(TOKEN), drop=("iat",), **good),
        "htm GET": key.proof("GET", url(TOKEN), **good),
        "htm lowercase": key.proof("post", url(TOKEN), **good),
        "htu another path": key.proof("POST", url("/userinfo"), **good),
        "htu another host": key.proof("POST", "https://elsewhere.example.org/token", **good),
        "htu another scheme": key.proof("POST", url(TOKEN).replace("http", "ftp", 1), **good),
        "iat too old": key.proof("POST", url(TOKEN), iat=now - 301, **good),
        "iat in the future": key.proof("POST", url(TOKEN), iat=now + 61, **good),
        "iat a string": key.proof("POST", url(TOKEN), claims={"iat": str(int(now))}, **good),
        "iat NaN": key.proof("POST", url(TOKEN), claims={"iat": float("nan")}, **good),
        "deeply nested JSON": _nested_proof(),
    }


def _nested_proof() -> str:
    """A header of 3000 nested arrays: refused, not a RecursionError (a 500)."""
    nested = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode()
    return f"{nested}.{nested}.AAAA"


@pytest.mark.parametrize("case", list(_bad_proofs(DPoPKey(), "n")))
def test_each_check_failing_alone_is_invalid_dpop_proof(case: str, key: DPoPKey, nonce: str, machine: Any):
    response = cc(machine, _bad_proofs(key, nonce)[case])
    assert error_of(response) == (400, "invalid_dpop_proof"), case
    assert "access_token" not in response.json()


def test_a_small_rsa_key_is_refused(machine: Any):
    key = DPoPKey("RS256", rsa_bits=1024)
    response = cc(machine, key.proof("POST", url(TOKEN), nonce=server_nonce(DPoPKey())))
    assert error_of(response) == (400, "invalid_dpop_proof")


def test_htu_is_compared_normalised_without_query_or_fragment(key: DPoPKey, nonce: str, machine: Any):
    issuer = settings.ISSUER.replace("http://", "HTTP://").replace("127.0.0.1", "127.0.0.1")
    htu = f"{issuer}/token?x=1#frag"
    response = cc(machine, key.proof("POST", htu, nonce=nonce))
    assert response.status_code == 200, response.content


def test_a_replayed_proof_is_refused(key: DPoPKey, nonce: str, machine: Any):
    proof = key.proof("POST", url(TOKEN), nonce=nonce)
    assert cc(machine, proof).status_code == 200
    assert error_of(cc(machine, proof)) == (400, "invalid_dpop_proof")
    # The same jti under another key is another proof.
    other = DPoPKey()
    jti = json.loads(dpop_resource_claims(proof))["jti"]
    assert cc(machine, other.proof("POST", url(TOKEN), nonce=nonce, claims={"jti": jti})).status_code == 200


def dpop_resource_claims(proof: str) -> str:
    part = proof.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_replay_cache_rows_expire_and_are_pruned(key: DPoPKey, nonce: str, machine: Any, settings: Any):
    settings.REDIS_URL = ""  # the database's replay cache (a deployment without Redis)
    DPoPProofJti.objects.create(jti_hash="0" * 64, expires_at=timezone.now() - timedelta(seconds=1))
    assert cc(machine, key.proof("POST", url(TOKEN), nonce=nonce)).status_code == 200
    assert not DPoPProofJti.objects.filter(jti_hash="0" * 64).exists()
    assert DPoPProofJti.objects.count() == 1


def test_replay_cache_on_redis_when_configured(key: DPoPKey, machine: Any, settings: Any):
    redis_url = "redis://127.0.0.1:6379/8"
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings.REDIS_URL = redis_url
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": "cum-dpop-test",
        },
    }
    proof = key.proof("POST", url(TOKEN), nonce=server_nonce(key))
    assert cc(machine, proof).status_code == 200
    assert error_of(cc(machine, proof)) == (400, "invalid_dpop_proof")
    assert not DPoPProofJti.objects.exists()  # kept in Redis, not in the database


# --- §8 server-provided nonces ---------------------------------------------------------------


def test_token_endpoint_asks_for_a_nonce_then_accepts_it(key: DPoPKey, machine: Any):
    first = cc(machine, key.proof("POST", url(TOKEN)))
    assert error_of(first) == (400, "use_dpop_nonce")
    nonce = first["DPoP-Nonce"]
    second = cc(machine, key.proof("POST", url(TOKEN), nonce=nonce))
    assert second.status_code == 200
    assert "DPoP-Nonce" not in second  # still the current one


def test_a_forged_nonce_is_refused_with_a_fresh_one(key: DPoPKey, nonce: str, machine: Any):
    response = cc(machine, key.proof("POST", url(TOKEN), nonce=nonce[:-2] + "AA"))
    assert error_of(response) == (400, "use_dpop_nonce")
    assert response["DPoP-Nonce"] == nonce


def test_nonces_rotate_previous_step_accepted_older_refused(
    key: DPoPKey, nonce: str, machine: Any, monkeypatch: pytest.MonkeyPatch
):
    step = settings.DPOP_NONCE_STEP_SECONDS
    start = time.time()
    # One step later: the nonce is the previous one, accepted; the answer carries the new one.
    monkeypatch.setattr(dpop.time, "time", lambda: start + step)
    response = cc(machine, key.proof("POST", url(TOKEN), nonce=nonce, iat=start + step))
    assert response.status_code == 200, response.content
    fresh = response["DPoP-Nonce"]
    assert fresh != nonce
    # Two steps later: stale; answered with a fresh nonce, which is then accepted.
    monkeypatch.setattr(dpop.time, "time", lambda: start + 2 * step)
    response = cc(machine, key.proof("POST", url(TOKEN), nonce=nonce, iat=start + 2 * step))
    assert error_of(response) == (400, "use_dpop_nonce")
    newest = response["DPoP-Nonce"]
    assert newest not in (nonce, fresh)
    assert cc(machine, key.proof("POST", url(TOKEN), nonce=newest, iat=start + 2 * step)).status_code == 200


def test_nonces_can_be_made_optional(key: DPoPKey, machine: Any, settings: Any):
    settings.DPOP_NONCE_REQUIRED = False
    response = cc(machine, key.proof("POST", url(TOKEN)))
    assert response.status_code == 200
    assert response.json()["token_type"] == "DPoP"
    assert "DPoP-Nonce" in response  # offered for the next proofs


# --- §5 the token endpoint binds what it issues ------------------------------------------------


@pytest.fixture
def public_rp(make_client: Any) -> Any:
    return make_client(name="Appli mobile", public=True)


def code_form(flow: OIDCFlow, code: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": flow.verifier,
        **extra,
    }


def public_tokens(signed_in: Any, public_rp: Any, key: DPoPKey, nonce: str, **authorize: str) -> dict:
    flow = OIDCFlow(signed_in, public_rp)
    code = flow.get_code(**authorize)
    proof = key.proof("POST", url(TOKEN), nonce=nonce)
    response = post_token(code_form(flow, code, client_id=public_rp.client_id), proof)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client: Any, refresh_token: str, proof: str | None) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client.secret:
        return post_token(data, proof, client.basic_auth())
    return post_token({**data, "client_id": client.client_id}, proof)


def test_code_exchange_binds_access_token_and_public_refresh_token(
    signed_in: Any, public_rp: Any, key: DPoPKey, nonce: str
):
    body = public_tokens(signed_in, public_rp, key, nonce)
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}
    row = RefreshToken.objects.get(token_checksum=dpop_checksum(body["refresh_token"]))
    assert row.dpop_jkt == key.jkt
    # A refresh with a proof by the same key: bound again, the new refresh token too.
    rotated = refresh(public_rp, body["refresh_token"], key.proof("POST", url(TOKEN), nonce=nonce))
    assert rotated.status_code == 200, rotated.content
    assert rotated.json()["token_type"] == "DPoP"
    assert claims_of(rotated.json()["access_token"])["cnf"] == {"jkt": key.jkt}


def dpop_checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize("how", ["without a proof", "with another key"])
def test_bound_public_refresh_token_refused_otherwise_and_its_family_revoked(
    how: str, signed_in: Any, public_rp: Any, key: DPoPKey, nonce: str
):
    body = public_tokens(signed_in, public_rp, key, nonce)
    proof = None if how == "without a proof" else DPoPKey().proof("POST", url(TOKEN), nonce=nonce)
    assert error_of(refresh(public_rp, body["refresh_token"], proof)) == (400, "invalid_dpop_proof")
    # Misuse of a bound token, as a replay: the family is gone, even for the right key.
    again = refresh(public_rp, body["refresh_token"], key.proof("POST", url(TOKEN), nonce=nonce))
    assert error_of(again) == (400, "invalid_grant")


def test_bound_public_refresh_token_is_exempt_from_the_idle_lifetime(
    signed_in: Any, public_rp: Any, key: DPoPKey, nonce: str, settings: Any
):
    settings.OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS = 60
    bound = public_tokens(signed_in, public_rp, key, nonce)
    flow = OIDCFlow(signed_in, public_rp)
    unbound = post_token(code_form(flow, flow.get_code(), client_id=public_rp.client_id)).json()
    assert unbound["token_type"] == "Bearer"
    RefreshToken.objects.update(created=timezone.now() - timedelta(seconds=120))
    assert error_of(refresh(public_rp, unbound["refresh_token"], None)) == (400, "invalid_grant")
    response = refresh(public_rp, bound["refresh_token"], key.proof("POST", url(TOKEN), nonce=nonce))
    assert response.status_code == 200, response.content


def test_confidential_client_refresh_token_is_not_bound(flow: OIDCFlow, key: DPoPKey, nonce: str):
    code = flow.get_code()
    proof = key.proof("POST", url(TOKEN), nonce=nonce)
    body = post_token(code_form(flow, code), proof, flow.rp.basic_auth()).json()
    assert body["token_type"] == "DPoP"
    assert RefreshToken.objects.get(token_checksum=dpop_checksum(body["refresh_token"])).dpop_jkt == ""
    # RFC 9449 §5: refreshed without a proof, a Bearer token; with another key, bound to it.
    plain = refresh(flow.rp, body["refresh_token"], None)
    assert plain.status_code == 200 and plain.json()["token_type"] == "Bearer"
    other = DPoPKey()
    rebound = refresh(flow.rp, plain.json()["refresh_token"], other.proof("POST", url(TOKEN), nonce=nonce))
    assert claims_of(rebound.json()["access_token"])["cnf"] == {"jkt": other.jkt}


def test_client_credentials_token_is_bound(key: DPoPKey, nonce: str, machine: Any):
    body = cc(machine, key.proof("POST", url(TOKEN), nonce=nonce)).json()
    assert body["token_type"] == "DPoP"
    assert "refresh_token" not in body
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}


def test_client_requiring_dpop_refused_without_a_proof(make_client: Any, key: DPoPKey, nonce: str):
    strict = make_client(
        name="Passerelle stricte",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["profile"],
        require_dpop=True,
    )
    assert error_of(cc(strict, None)) == (400, "invalid_dpop_proof")
    assert cc(strict, key.proof("POST", url(TOKEN), nonce=nonce)).json()["token_type"] == "DPoP"


def test_a_refused_proof_does_not_consume_the_code(flow: OIDCFlow, key: DPoPKey, nonce: str):
    code = flow.get_code()
    refused = post_token(code_form(flow, code), key.proof("POST", url(TOKEN)), flow.rp.basic_auth())
    assert error_of(refused) == (400, "use_dpop_nonce")
    retried = post_token(
        code_form(flow, code),
        key.proof("POST", url(TOKEN), nonce=refused["DPoP-Nonce"]),
        flow.rp.basic_auth(),
    )
    assert retried.status_code == 200, retried.content


# --- §10 dpop_jkt: codes bound at the authorization request and at PAR ---------------------------


def test_code_bound_by_dpop_jkt_needs_that_key(flow: OIDCFlow, key: DPoPKey, nonce: str):
    for proof_key, expected in ((None, 400), (DPoPKey(), 400), (key, 200)):
        code = flow.get_code(dpop_jkt=key.jkt)
        proof = proof_key.proof("POST", url(TOKEN), nonce=nonce) if proof_key else None
        response = post_token(code_form(flow, code), proof, flow.rp.basic_auth())
        assert response.status_code == expected, response.content
        if expected == 400:
            assert response.json()["error"] == "invalid_dpop_proof"
    assert claims_of(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


@pytest.mark.parametrize("value", ["short", "x" * 43 + "!", "+" * 43])
def test_malformed_dpop_jkt_is_redirected_invalid_request(flow: OIDCFlow, value: str):
    response = flow.authorize(dpop_jkt=value)
    assert response.status_code in (302, 303)
    assert response["Location"].startswith(REDIRECT_URI + "?error=invalid_request")


def _par(rp: Any, proof: str | None, **extra: str) -> Any:
    flow_params = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        **extra,
    }
    headers = {"HTTP_AUTHORIZATION": rp.basic_auth()}
    if proof:
        headers["HTTP_DPOP"] = proof
    return BrowserClient().post("/par", flow_params, **headers)


def test_par_with_a_proof_binds_the_code(flow: OIDCFlow, key: DPoPKey):
    rp = flow.rp
    first = _par(rp, key.proof("POST", url("/par")))
    assert error_of(first) == (400, "use_dpop_nonce")
    par_nonce = first["DPoP-Nonce"]
    pushed = _par(rp, key.proof("POST", url("/par"), nonce=par_nonce))
    assert pushed.status_code == 201, pushed.content
    response = flow.browser.get(
        "/authorize", {"client_id": rp.client_id, "request_uri": pushed.json()["request_uri"]}
    )
    if response.status_code == 200:
        response = flow.approve(response)
    code = parse_qs(urlsplit(response["Location"]).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    }
    other = post_token(data, DPoPKey().proof("POST", url(TOKEN), nonce=par_nonce), rp.basic_auth())
    assert error_of(other) == (400, "invalid_dpop_proof")


def test_par_dpop_jkt_must_match_the_proof(flow: OIDCFlow, key: DPoPKey):
    par_nonce = _par(flow.rp, key.proof("POST", url("/par")))["DPoP-Nonce"]
    response = _par(flow.rp, key.proof("POST", url("/par"), nonce=par_nonce), dpop_jkt=DPoPKey().jkt)
    assert error_of(response) == (400, "invalid_dpop_proof")
    assert error_of(_par(flow.rp, key.proof("POST", url(TOKEN), nonce=par_nonce))) == (
        400,
        "invalid_dpop_proof",
    )


# --- §7 userinfo ---------------------------------------------------------------------------------


@pytest.fixture
def bound(flow: OIDCFlow, key: DPoPKey, nonce: str) -> str:
    code = flow.get_code()
    body = post_token(code_form(flow, code), key.proof("POST", url(TOKEN), nonce=nonce), flow.rp.basic_auth())
    return body.json()["access_token"]


def get_userinfo(token: str, proof: str | None, scheme: str = "DPoP") -> Any:
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {token}"}
    if proof is not None:
        headers["HTTP_DPOP"] = proof
    return BrowserClient().get("/userinfo", **headers)


def challenge_error(response: Any) -> tuple[int, str]:
    header = response["WWW-Authenticate"]
    assert header.startswith("DPoP ") and 'algs="ES256 ES384 PS256 RS256 EdDSA"' in header
    return response.status_code, header.split('error="')[1].split('"')[0]


def test_userinfo_with_the_proof(bound: str, key: DPoPKey, nonce: str, resident: Any):
    response = get_userinfo(bound, key.proof("GET", url("/userinfo"), nonce=nonce, token=bound))
    assert response.status_code == 200, response.content
    assert response.json()["email"] == resident.email


def test_userinfo_asks_for_a_nonce(bound: str, key: DPoPKey):
    response = get_userinfo(bound, key.proof("GET", url("/userinfo"), token=bound))
    assert challenge_error(response) == (401, "use_dpop_nonce")
    retry = get_userinfo(bound, key.proof("GET", url("/userinfo"), nonce=response["DPoP-Nonce"], token=bound))
    assert retry.status_code == 200


def test_userinfo_refusals(bound: str, key: DPoPKey, nonce: str):
    old = timezone.now().timestamp() - 400
    cases = {
        "no proof": (None, "DPoP", "invalid_dpop_proof"),
        "as Bearer": (
            key.proof("GET", url("/userinfo"), nonce=nonce, token=bound),
            "Bearer",
            "invalid_token",
        ),
        "another key": (
            DPoPKey().proof("GET", url("/userinfo"), nonce=nonce, token=bound),
            "DPoP",
            "invalid_dpop_proof",
        ),
        "wrong htu": (key.proof("GET", url(TOKEN), nonce=nonce, token=bound), "DPoP", "invalid_dpop_proof"),
        "wrong htm": (
            key.proof("POST", url("/userinfo"), nonce=nonce, token=bound),
            "DPoP",
            "invalid_dpop_proof",
        ),
        "old iat": (
            key.proof("GET", url("/userinfo"), nonce=nonce, token=bound, iat=old),
            "DPoP",
            "invalid_dpop_proof",
        ),
        "no ath": (key.proof("GET", url("/userinfo"), nonce=nonce), "DPoP", "invalid_dpop_proof"),
        "wrong ath": (
            key.proof("GET", url("/userinfo"), nonce=nonce, token=bound + "x"),
            "DPoP",
            "invalid_dpop_proof",
        ),
    }
    for case, (proof, scheme, error) in cases.items():
        assert challenge_error(get_userinfo(bound, proof, scheme)) == (401, error), case


def test_deeply_nested_tokens_and_proofs_are_refused_not_a_500(bound: str):
    nested = _nested_proof()
    assert get_userinfo(nested, None, "Bearer").status_code == 401
    assert challenge_error(get_userinfo(bound, nested)) == (401, "invalid_dpop_proof")


def test_userinfo_replayed_proof(bound: str, key: DPoPKey, nonce: str):
    proof = key.proof("GET", url("/userinfo"), nonce=nonce, token=bound)
    assert get_userinfo(bound, proof).status_code == 200
    assert challenge_error(get_userinfo(bound, proof)) == (401, "invalid_dpop_proof")


def test_unbound_tokens_keep_working_as_bearer_only(tokens: dict, key: DPoPKey, nonce: str):
    token = tokens["access_token"]
    assert get_userinfo(token, None, "Bearer").status_code == 200
    response = get_userinfo(token, key.proof("GET", url("/userinfo"), nonce=nonce, token=token))
    assert challenge_error(response) == (401, "invalid_token")


def test_bound_token_refused_by_the_profiles_partner_api(bound: str, tokens: dict):
    # That API reads Bearer tokens only: it cannot check a proof (RFC 9449 §7.2).
    assert read_partner_token(bound) is None
    assert read_partner_token(tokens["access_token"]) is not None


# --- §6.2 introspection, and the resource-server helper ----------------------------------------


@pytest.fixture
def resource_server(make_client: Any) -> Any:
    return make_client(
        name="API Médiathèques", redirect_uris=[], grant_types=["client_credentials"], is_resource_server=True
    )


def introspect(caller: Any, token: str) -> dict:
    # The client the token was issued to, registered as a resource server too (RFC 7662 §4).
    caller.client.is_resource_server = True
    caller.client.save()
    response = BrowserClient().post("/introspect", {"token": token}, HTTP_AUTHORIZATION=caller.basic_auth())
    assert response.status_code == 200
    return response.json()


def test_introspection_carries_cnf_and_token_type(flow: OIDCFlow, bound: str, key: DPoPKey, tokens: dict):
    answer = introspect(flow.rp, bound)
    assert answer["active"] is True
    assert answer["token_type"] == "DPoP"
    assert answer["cnf"] == {"jkt": key.jkt}
    plain = introspect(flow.rp, tokens["access_token"])
    assert plain["token_type"] == "Bearer" and "cnf" not in plain


def test_resource_server_helper(flow: OIDCFlow, bound: str, key: DPoPKey, tokens: dict):
    api = "https://api.example.org/books?page=2"
    answer = introspect(flow.rp, bound)
    seen: set[str] = set()

    def seen_before(proof: Any) -> bool:
        if proof.replay_key in seen:
            return True
        seen.add(proof.replay_key)
        return False

    def check(authorization: str, proof: str | None, introspection: dict = answer) -> Any:
        return verify_request(
            method="GET",
            url=api,
            authorization=authorization,
            dpop=proof,
            introspection=introspection,
            seen_before=seen_before,
        )

    proof = key.proof("GET", "https://api.example.org/books", token=bound)
    assert check(f"DPoP {bound}", proof).jkt == key.jkt
    refusals = {
        "replayed": (f"DPoP {bound}", proof, answer, "invalid_dpop_proof"),
        "as Bearer": (f"Bearer {bound}", key.proof("GET", api, token=bound), answer, "invalid_token"),
        "another key": (
            f"DPoP {bound}",
            DPoPKey().proof("GET", api, token=bound),
            answer,
            "invalid_dpop_proof",
        ),
        "wrong htu": (
            f"DPoP {bound}",
            key.proof("GET", url("/x"), token=bound),
            answer,
            "invalid_dpop_proof",
        ),
        "inactive": (f"DPoP {bound}", key.proof("GET", api, token=bound), {"active": False}, "invalid_token"),
        "unbound": (
            f"DPoP {tokens['access_token']}",
            key.proof("GET", api, token=tokens["access_token"]),
            introspect(flow.rp, tokens["access_token"]),
            "invalid_token",
        ),
    }
    for case, (authorization, value, introspection, error) in refusals.items():
        with pytest.raises(DPoPError) as raised:
            check(authorization, value, introspection)
        assert raised.value.error == error, case


# --- §5.1 discovery, registration ----------------------------------------------------------------


def test_discovery_lists_the_proof_algorithms():
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "ES384", "PS256", "RS256", "EdDSA"]


def test_register_client_require_dpop(signing_keys: Any):
    out = StringIO()
    call_command(
        "register_client",
        "--name",
        "Appli DPoP",
        "--grant",
        "client_credentials",
        "--scope",
        "profile",
        "--require-dpop",
        "--json",
        stdout=out,
    )
    assert json.loads(out.getvalue())["dpop_bound_access_tokens"] is True


def test_basic_auth_helper_still_used(machine: Any):
    # A sanity anchor: an unknown client with a proof gets the client error, not a DPoP one.
    key = DPoPKey()
    response = post_token(
        {"grant_type": "client_credentials"},
        key.proof("POST", url(TOKEN), nonce=server_nonce(key)),
        basic(machine.client_id, "wrong"),
    )
    assert error_of(response) == (401, "invalid_client")


def test_resource_helper_is_standalone(tmp_path: Any):
    # Partners copy identity/oidc/dpop_resource.py as it is: no Django, no project import.
    copy = tmp_path / "dpop_resource.py"
    copy.write_text(Path(dpop_resource.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    script = "import dpop_resource, sys; sys.stdout.write(' '.join(dpop_resource.ALGORITHMS))"
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {script}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ES256 ES384 PS256 RS256 EdDSA"
