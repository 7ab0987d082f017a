"""RFC 9068 (JWT profile for OAuth 2.0 access tokens), as issued here and checked at userinfo
and introspection (identity/oidc/access_tokens.py)."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from jwcrypto import jwk, jws, jwt
from oauthlib.common import Request as OAuthRequest

from identity.models import User
from identity.oidc import access_tokens
from identity.oidc import claims as claims_registry
from identity.oidc.models import AccessToken, RevokedAccessToken
from identity.oidc.request_validator import Validator
from identity.oidc.sharing import released_claims
from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import basic, complete_flow, post_token, userinfo


@pytest.fixture
def machine(make_client):
    return make_client(
        name="Passerelle transport", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )


# RFC 7662 §4: introspection describes a token to its client and to the resource servers
# named in its aud, so the tokens below are asked (RFC 8707) for this resource server.
API = "https://api.mediatheques.example.org"


@pytest.fixture
def resource_server(make_client):
    return make_client(
        name="API médiathèques",
        redirect_uris=[],
        grant_types=["client_credentials"],
        is_resource_server=True,
        resource_identifier=API,
    )


@pytest.fixture
def tokens(flow, resource_server):
    """A resident's tokens, meant for userinfo and for the resource server."""
    return complete_flow(flow, resource=[settings.ISSUER, API])


def client_token(machine, resource: str | None = API) -> str:
    data = {"grant_type": "client_credentials", **({"resource": resource} if resource else {})}
    response = post_token(data, auth=machine.basic_auth())
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def introspect(token: str, resource_server) -> dict:
    response = BrowserClient().post(
        "/introspect", {"token": token}, HTTP_AUTHORIZATION=resource_server.basic_auth()
    )
    assert response.status_code == 200, response.content
    return response.json()


def verified_claims(token: str) -> tuple[dict, dict]:
    """Verify as a resource server would: with the published JWKS only (RFC 9068 §4)."""
    keyset = jwk.JWKSet.from_json(BrowserClient().get("/jwks.json").content)
    parsed = jwt.JWT(jwt=token, key=keyset, algs=["ES256", "RS256"], expected_type="JWS")
    return json.loads(parsed.token.objects["protected"]), json.loads(parsed.claims)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def with_claims(token: str, **changes) -> str:
    """The same token with changed claims and the original signature (a forgery)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64(claims)}.{signature}"


# --- §2: what is issued ------------------------------------------------------------------------


def test_resident_access_token_is_a_jwt_with_the_required_claims(flow, tokens):
    header, claims = verified_claims(tokens["access_token"])
    assert header["typ"] == "at+jwt"  # §2.1
    assert header["alg"] == settings.ACCESS_TOKEN_SIGNING_ALG == "ES256"
    for name in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"):  # §2.2
        assert name in claims, name
    assert claims["iss"] == settings.ISSUER
    assert claims["client_id"] == flow.rp.client_id
    assert claims["exp"] - claims["iat"] == settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"]
    assert set(claims["scope"].split()) == {"openid", "profile", "email"}
    id_claims = verify_id_token(tokens["id_token"], flow.rp.client_id)
    # The subject as this client knows the resident (pairwise), and when they signed in.
    assert claims["sub"] == id_claims["sub"]
    assert claims["auth_time"] == id_claims["auth_time"]


def test_refresh_tokens_stay_opaque(tokens):
    assert tokens["refresh_token"].count(".") == 0


def test_every_access_token_has_its_own_jti(flow, tokens):
    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=flow.rp.basic_auth()
    ).json()
    first = verified_claims(tokens["access_token"])[1]
    second = verified_claims(refreshed["access_token"])[1]
    assert first["jti"] != second["jti"]
    assert first["sub"] == second["sub"]


def test_client_credentials_token_names_the_client_and_writes_nothing(machine):
    before = AccessToken.objects.count()
    header, claims = verified_claims(client_token(machine, resource=None))
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == claims["client_id"] == machine.client_id  # §2.2: no resource owner
    assert "auth_time" not in claims
    assert claims["aud"] == settings.ISSUER
    assert AccessToken.objects.count() == before


def test_rs256_can_be_chosen_for_access_tokens(machine, settings):
    settings.ACCESS_TOKEN_SIGNING_ALG = "RS256"
    header, _claims = verified_claims(client_token(machine, resource=None))
    assert header["alg"] == "RS256"


# --- §4: validation at our own resource endpoints ------------------------------------------------


def test_userinfo_accepts_the_token(tokens):
    assert userinfo(tokens["access_token"]).status_code == 200


def test_the_resident_read_with_the_token_holds_what_the_orm_reads(tokens):
    # access_tokens._read_resident builds the resident from its own statement: every column
    # it selects (the checks' and every claim provider's) must equal the ORM's, read without
    # a query; any other column (e.g. last_login, not read at userinfo) loads on access.
    token = tokens["access_token"]
    row = AccessToken.objects.select_related("application").get(token_checksum=access_tokens.checksum(token))
    User.objects.filter(pk=row.user_id).update(
        given_name="Camille",
        family_name="Lebrun",
        phone_number="+33240000000",
        phone_number_verified=True,
        street_address="2 cours du Champ de Mars",
        locality="Nantes",
        postal_code="44000",
        region="Pays de la Loire",
        country="France",
    )
    claims = access_tokens.decode(token)
    assert claims is not None
    lean = access_tokens.resident_of(token, claims)
    orm = User.objects.get(pk=row.user_id)
    names = {"id", "is_active", *claims_registry.resident_user_fields()}
    with CaptureQueriesContext(connection) as queries:
        for name in names:
            attname = User._meta.get_field(name).attname
            assert getattr(lean, attname) == getattr(orm, attname), name
        scopes = ["openid", "profile", "email", "address", "phone"]
        released = released_claims(row.application, lean, scopes, granted=True)
    assert len(queries) == 0
    assert released == released_claims(row.application, orm, scopes, granted=True)
    assert {"name", "email", "address", "phone_number", "updated_at"} <= set(released)
    assert "last_login" in lean.get_deferred_fields()
    assert lean.last_login == orm.last_login


@pytest.mark.parametrize(
    "change",
    [
        {"scope": "openid profile email address phone"},  # widened scope
        {"sub": "someone-else"},
        {"exp": int(time.time()) + 86400},  # lifetime extended
        {"client_id": "another-client"},
    ],
)
def test_a_modified_token_is_refused_everywhere(tokens, resource_server, change):
    forged = with_claims(tokens["access_token"], **change)
    response = userinfo(forged)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert introspect(forged, resource_server) == {"active": False}


def test_an_id_token_is_not_an_access_token(tokens, resource_server):
    """Same key, but typ JWT, not at+jwt (RFC 9068 §4: explicit typing)."""
    response = userinfo(tokens["id_token"])
    assert response.status_code == 401
    assert introspect(tokens["id_token"], resource_server) == {"active": False}


def test_alg_none_is_refused(tokens, resource_server):
    _header, payload, _signature = tokens["access_token"].split(".")
    unsigned = f"{b64({'typ': 'at+jwt', 'alg': 'none'})}.{payload}."
    assert userinfo(unsigned).status_code == 401
    assert introspect(unsigned, resource_server) == {"active": False}


def test_a_token_signed_by_another_key_under_our_kid_is_refused(tokens, resource_server):
    header, claims = verified_claims(tokens["access_token"])
    foreign = jwk.JWK.generate(kty="EC", crv="P-256")
    forged = jwt.JWT(header=header, claims=claims)
    forged.make_signed_token(foreign)
    token = forged.serialize()
    assert userinfo(token).status_code == 401
    assert introspect(token, resource_server) == {"active": False}


def test_a_token_for_another_issuer_is_refused(machine, resource_server, settings):
    token = client_token(machine)
    settings.ISSUER = "https://autre-fournisseur.example"
    assert access_tokens.decode(token) is None
    assert introspect(token, resource_server) == {"active": False}


def test_an_expired_token_is_refused(machine, resource_server):
    token = client_token(machine)
    claims = verified_claims(token)[1]
    assert access_tokens.decode(token, now=claims["exp"] - 1) is not None
    assert access_tokens.decode(token, now=claims["exp"]) is None


def test_expired_signature_is_checked_before_anything_else(resource_server):
    token = access_tokens.sign(
        {
            "iss": settings.ISSUER,
            "exp": int(time.time()) - 1,
            "aud": API,
            "sub": "x",
            "client_id": "x",
            "iat": int(time.time()) - 600,
            "jti": "j",
            "scope": "openid",
        }
    )
    assert introspect(token, resource_server) == {"active": False}


def test_a_token_for_another_resource_is_refused_at_userinfo(flow, tokens):
    """aud must name us for userinfo (RFC 9068 §4, RFC 8707 audience restriction)."""
    assert userinfo(tokens["access_token"]).status_code == 200
    claims = verified_claims(tokens["access_token"])[1]
    claims["aud"] = "https://api.partenaire.example"
    token = access_tokens.sign(claims)
    # As if it had been issued so: its row is this token's.
    AccessToken.objects.update(token_checksum=access_tokens.checksum(token))
    response = userinfo(token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_malformed_tokens_are_refused_without_error(resource_server, db):
    for token in ["", "a.b", "a.b.c", "....", "é.é.é", "x" * 9000, "e30.e30.e30"]:
        assert access_tokens.decode(token) is None
        if token:
            assert introspect(token, resource_server) == {"active": False}


# --- state: revocation of stateless tokens -------------------------------------------------------


def test_client_token_introspects_active_with_its_claims(machine, resource_server):
    token = client_token(machine)
    body = introspect(token, resource_server)
    assert body["active"] is True
    assert body["client_id"] == machine.client_id
    assert body["scope"] == "profile"
    assert body["iss"] == settings.ISSUER
    assert "sub" not in body


def test_revoking_a_client_token_deactivates_it(machine, resource_server):
    token = client_token(machine)
    response = BrowserClient().post("/revoke", {"token": token}, HTTP_AUTHORIZATION=machine.basic_auth())
    assert response.status_code == 200
    assert RevokedAccessToken.objects.count() == 1
    assert introspect(token, resource_server) == {"active": False}
    # Revoking again is harmless (RFC 7009 §2.2).
    response = BrowserClient().post("/revoke", {"token": token}, HTTP_AUTHORIZATION=machine.basic_auth())
    assert response.status_code == 200
    assert RevokedAccessToken.objects.count() == 1


def test_another_client_cannot_revoke_a_client_token(machine, make_client, resource_server):
    other = make_client(
        name="Autre", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )
    token = client_token(machine)
    response = BrowserClient().post("/revoke", {"token": token}, HTTP_AUTHORIZATION=other.basic_auth())
    assert response.status_code == 200  # RFC 7009 §2.2: nothing disclosed
    assert introspect(token, resource_server)["active"] is True


def test_revocation_list_drops_expired_entries(machine, resource_server):
    RevokedAccessToken.objects.create(
        jti="old", client_id="x", expires_at=timezone.now() - timedelta(seconds=1)
    )
    token = client_token(machine)
    BrowserClient().post("/revoke", {"token": token}, HTTP_AUTHORIZATION=machine.basic_auth())
    assert list(RevokedAccessToken.objects.values_list("jti", flat=True)) == [
        verified_claims(token)[1]["jti"]
    ]


def test_revoked_resident_token_is_refused_although_its_signature_is_valid(flow, tokens, resource_server):
    response = BrowserClient().post(
        "/revoke",
        {"token": tokens["access_token"]},
        HTTP_AUTHORIZATION=basic(flow.rp.client_id, flow.rp.secret),
    )
    assert response.status_code == 200
    assert access_tokens.decode(tokens["access_token"]) is not None  # still well signed
    assert userinfo(tokens["access_token"]).status_code == 401
    assert introspect(tokens["access_token"], resource_server) == {"active": False}


def test_userinfo_refuses_a_client_token(machine):
    response = userinfo(client_token(machine, resource=None))  # aud is us, but no resident
    assert response.status_code == 401


# --- RFC 6750 transport at userinfo ---------------------------------------------------------------


def test_token_in_header_and_body_at_once_is_invalid_request(tokens):
    response = BrowserClient().post(
        "/userinfo",
        f"access_token={tokens['access_token']}",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_other_authorization_scheme_gets_bare_bearer_and_dpop_challenges(tokens):
    response = BrowserClient().get("/userinfo", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 401
    # RFC 6750 §3.1 and RFC 9449 §7.1: no error code, the DPoP algorithms we accept.
    challenges = 'Bearer realm="userinfo", DPoP algs="ES256 ES384 PS256 RS256 EdDSA"'
    assert response["WWW-Authenticate"] == challenges


def test_bearer_scheme_is_case_insensitive(tokens):
    response = BrowserClient().get("/userinfo", HTTP_AUTHORIZATION=f"bearer {tokens['access_token']}")
    assert response.status_code == 200


def test_token_without_openid_scope_is_insufficient_scope(make_client, signed_in, resident):
    partner = make_client(scopes=["openid", "profile"])
    flow = OIDCFlow(signed_in, partner)
    # A resident token whose scope lacks openid cannot be obtained through the flow (our
    # authorization endpoint requires openid), so forge the row as the grant would have.
    code = flow.get_code(scope="openid profile")
    body = flow.token(code).json()
    claims = verified_claims(body["access_token"])[1]
    claims["scope"] = "profile"
    token = access_tokens.sign(claims)
    row = AccessToken.objects.get()
    row.token_checksum = access_tokens.checksum(token)
    row.scope = "profile"
    row.save()
    response = userinfo(token)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


def test_jws_library_agrees_on_our_signatures(tokens):
    """Our raw-cryptography signatures are standard JWS (checked by jwcrypto)."""
    keyset = jwk.JWKSet.from_json(BrowserClient().get("/jwks.json").content)
    parsed = jws.JWS()
    parsed.deserialize(tokens["access_token"])
    kid = parsed.jose_header["kid"]
    parsed.verify(keyset.get_key(kid))


def test_oauthlibs_bearer_check_fails_closed(tokens):
    """No resource endpoint may rely on django-oauth-toolkit's token check, which knows
    neither machine tokens without rows nor our other rules: it refuses even a live token."""
    assert userinfo(tokens["access_token"]).status_code == 200  # the token is live
    request = OAuthRequest("https://example.org/api")
    assert Validator().validate_bearer_token(tokens["access_token"], ["openid"], request) is False
    assert request.oauth2_error["error"] == "invalid_token"


def test_the_checked_headers_memo_keeps_only_accepted_headers_and_stays_bounded(machine, resource_server):
    token = post_token({"grant_type": "client_credentials"}, auth=machine.basic_auth()).json()["access_token"]
    assert access_tokens.decode(token) is not None
    _header, claims, signature = token.split(".")

    def encoded(header: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()

    refused = encoded({"typ": "JWT", "alg": "ES256", "kid": "x"})
    assert access_tokens.decode(f"{refused}.{claims}.{signature}", verify=False) is None
    assert refused not in access_tokens._checked_headers
    for n in range(3 * access_tokens._CHECKED_HEADERS_MAX):
        other = encoded({"typ": "at+jwt", "alg": "ES256", "kid": f"k{n}"})
        # Accepted in form (verify=False), unknown key (verified): refused.
        assert access_tokens.decode(f"{other}.{claims}.{signature}", verify=False) is not None
        assert access_tokens.decode(f"{other}.{claims}.{signature}") is None
    assert len(access_tokens._checked_headers) <= access_tokens._CHECKED_HEADERS_MAX
    assert access_tokens.decode(token) is not None
