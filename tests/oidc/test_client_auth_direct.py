"""Client authentication read from the request directly (identity/oidc/client_auth
.authenticate_presented: introspection, the client-credentials grant) against the Validator's
(oauthlib's request, django-oauth-toolkit's Basic and body parsing: the reference).

Every case builds one Django request and asks both which client it authenticates (or none);
each case also states the answer expected, so that two equally wrong implementations do not
pass. A private_key_jwt assertion is single-use: each implementation gets its own.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from django.conf import settings
from django.test import Client as BrowserClient
from django.test import RequestFactory
from jwcrypto import jwk, jwt

from identity.client_cache import _copy, client_by_client_id, client_cache_clear
from identity.oidc.client_auth import authenticate_presented
from identity.oidc.oauthlib_core import OAuthLibCore
from identity.oidc.request_validator import Validator
from tests.conftest import RegisteredClient
from tests.oidc.conftest import basic

pytestmark = pytest.mark.django_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Clients:
    def __init__(self, make_client: Any) -> None:
        self.key = jwk.JWK.generate(kty="EC", crv="P-256")
        public = json.loads(self.key.export_public())
        public.update({"kid": self.key.thumbprint(), "alg": "ES256", "use": "sig"})
        machine = {"redirect_uris": [], "grant_types": ["client_credentials"], "scopes": ["profile"]}
        self.basic: RegisteredClient = make_client(
            name="Passerelle Basic", is_resource_server=True, **machine
        )
        self.post: RegisteredClient = make_client(
            name="Passerelle POST", token_endpoint_auth_method="client_secret_post", **machine
        )
        self.jwt: RegisteredClient = make_client(
            name="Passerelle signée",
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [public]},
            **machine,
        )
        self.public: RegisteredClient = make_client(name="Appli mobile", public=True)

    def assertion(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.jwt.client_id,
            "sub": self.jwt.client_id,
            "aud": settings.ISSUER,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        token = jwt.JWT(header={"alg": "ES256", "kid": self.key.thumbprint()}, claims=claims)
        token.make_signed_token(self.key)
        return token.serialize()


@pytest.fixture
def clients(make_client: Any) -> Clients:
    return Clients(make_client)


def _b64(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


# Each case: (authorization header or None, form body as pairs) built per implementation, and
# the client expected ("basic", "post", "jwt") or None.
Case = Callable[[Clients], tuple[str | None, list[tuple[str, str]]]]
CASES: dict[str, tuple[Case, str | None]] = {
    "basic": (lambda c: (c.basic.basic_auth(), []), "basic"),
    "basic, wrong secret": (lambda c: (basic(c.basic.client_id, "wrong"), []), None),
    "basic, unknown client": (lambda c: (basic("unknown", "x"), []), None),
    "basic, empty secret": (lambda c: (basic(c.basic.client_id, ""), []), None),
    "basic + body secret": (
        lambda c: (c.basic.basic_auth(), [("client_secret", c.basic.secret or "")]),
        None,
    ),
    "basic + same body client_id": (
        lambda c: (c.basic.basic_auth(), [("client_id", c.basic.client_id)]),
        "basic",
    ),
    "basic + other body client_id": (
        lambda c: (c.basic.basic_auth(), [("client_id", c.post.client_id)]),
        None,
    ),
    "basic by a client_secret_post client": (lambda c: (c.post.basic_auth(), []), None),
    "basic, lower-case scheme": (lambda c: ("basic " + c.basic.basic_auth()[6:], []), None),
    "basic, empty credentials": (lambda c: ("Basic ", []), None),
    "basic, no space": (lambda c: ("Basic", []), None),
    "basic, no colon": (lambda c: (_b64(c.basic.client_id.encode()), []), None),
    "basic, not base64": (lambda c: ("Basic %%%not-base64", []), None),
    "basic, not UTF-8": (lambda c: (_b64(b"\xff\xfe:\xff"), []), None),
    "basic, form-encoded halves": (
        lambda c: (_b64(f"{quote_plus(c.basic.client_id)}:{quote_plus(c.basic.secret or '')}".encode()), []),
        "basic",
    ),
    "basic, NUL in client_id": (lambda c: (basic("a\x00b", "x"), []), None),
    "bearer scheme": (lambda c: ("Bearer " + (c.basic.secret or ""), []), None),
    "post": (
        lambda c: (None, [("client_id", c.post.client_id), ("client_secret", c.post.secret or "")]),
        "post",
    ),
    "post, repeated secret (last wins)": (
        lambda c: (
            None,
            [
                ("client_id", c.post.client_id),
                ("client_secret", "wrong"),
                ("client_secret", c.post.secret or ""),
            ],
        ),
        "post",
    ),
    "post, wrong secret": (
        lambda c: (None, [("client_id", c.post.client_id), ("client_secret", "wrong")]),
        None,
    ),
    "post, no client_id": (lambda c: (None, [("client_secret", c.post.secret or "")]), None),
    "post by a client_secret_basic client": (
        lambda c: (None, [("client_id", c.basic.client_id), ("client_secret", c.basic.secret or "")]),
        None,
    ),
    "nothing": (lambda c: (None, []), None),
    "client_id only (public client)": (lambda c: (None, [("client_id", c.public.client_id)]), None),
    "empty secret and assertion": (
        lambda c: (None, [("client_id", c.post.client_id), ("client_secret", ""), ("client_assertion", "")]),
        None,
    ),
    "private_key_jwt": (
        lambda c: (None, [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", c.assertion())]),
        "jwt",
    ),
    "private_key_jwt + same body client_id": (
        lambda c: (
            None,
            [
                ("client_id", c.jwt.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", c.assertion()),
            ],
        ),
        "jwt",
    ),
    "private_key_jwt + other body client_id": (
        lambda c: (
            None,
            [
                ("client_id", c.post.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", c.assertion()),
            ],
        ),
        None,
    ),
    "private_key_jwt + Basic": (
        lambda c: (
            c.basic.basic_auth(),
            [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", c.assertion())],
        ),
        None,
    ),
    "private_key_jwt + secret": (
        lambda c: (
            None,
            [
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", c.assertion()),
                ("client_secret", "x"),
            ],
        ),
        None,
    ),
    "assertion type only": (lambda c: (None, [("client_assertion_type", ASSERTION_TYPE)]), None),
    "assertion, other type": (
        lambda c: (None, [("client_assertion_type", "urn:other"), ("client_assertion", c.assertion())]),
        None,
    ),
    "assertion, endpoint audience": (
        lambda c: (
            None,
            [
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", c.assertion(aud=settings.ISSUER + "/token")),
            ],
        ),
        None,
    ),
    "assertion, expired": (
        lambda c: (
            None,
            [
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", c.assertion(exp=int(time.time()) - 120)),
            ],
        ),
        None,
    ),
    "assertion naming a client_secret_basic client": (
        lambda c: (
            None,
            [
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", c.assertion(iss=c.basic.client_id, sub=c.basic.client_id)),
            ],
        ),
        None,
    ),
    "assertion, not a JWT": (
        lambda c: (None, [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", "not.a.jwt")]),
        None,
    ),
}


def _request(authorization: str | None, form: list[tuple[str, str]]) -> Any:
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return RequestFactory().post(
        "/introspect", urlencode(form), content_type="application/x-www-form-urlencoded", **extra
    )


def _reference(authorization: str | None, form: list[tuple[str, str]]) -> str | None:
    request = _request(authorization, form)
    oauth = OAuthLibCore(server=None).oauth_request(request)
    if not Validator().authenticate_client(oauth):
        return None
    return str(oauth.client.client_id)


def _direct(authorization: str | None, form: list[tuple[str, str]]) -> str | None:
    request = _request(authorization, form)
    client = authenticate_presented(request.META.get("HTTP_AUTHORIZATION"), request.POST)
    return None if client is None else str(client.client_id)


@pytest.mark.parametrize("name", list(CASES))
def test_direct_authentication_answers_as_the_validator(name: str, clients: Clients) -> None:
    case, expected = CASES[name]
    wanted = None if expected is None else getattr(clients, expected).client_id
    # Cold (the client read from the database) and warm (from the in-process cache).
    for warm in (False, True):
        if not warm:
            client_cache_clear()
        reference = _reference(*case(clients))
        if not warm:
            client_cache_clear()
        direct = _direct(*case(clients))
        assert (direct, reference) == (wanted, wanted)


def test_a_single_use_assertion_is_refused_the_second_time(clients: Clients) -> None:
    form = [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", clients.assertion())]
    assert _direct(None, form) == clients.jwt.client_id
    assert _direct(None, form) is None


def test_non_ascii_basic_credentials_are_a_refusal_not_an_error(clients: Clients) -> None:
    # django-oauth-toolkit's base64 decoding raises ValueError on a non-ASCII header (a 500
    # on the oauthlib paths); the direct reading refuses it like any malformed header.
    assert _direct("Basic é", []) is None


def test_the_cached_client_copy_is_what_copy_copy_gives(clients: Clients) -> None:
    client_cache_clear()
    loaded = client_by_client_id(clients.basic.client_id)
    assert loaded is not None
    loaded._state.fields_cache["marker"] = object()
    clone, reference = _copy(loaded), copy.copy(loaded)
    assert type(clone) is type(reference)
    # copy.copy also leaves pickling's version marker in the copy: not an attribute of the model.
    left_out = {"_state", "_django_version"}
    assert {k: v for k, v in vars(clone).items() if k not in left_out} == {
        k: v for k, v in vars(reference).items() if k not in left_out
    }
    assert vars(clone._state) == vars(reference._state)
    # Its own attributes and its own cache of related objects, not the original's.
    clone.name = "changed"
    clone._state.fields_cache.clear()
    assert loaded.name != "changed" and "marker" in loaded._state.fields_cache
    # Callers never get the cached instance itself.
    first, second = client_by_client_id(clients.basic.client_id), client_by_client_id(clients.basic.client_id)
    assert first is not second and first == second


def test_a_nul_in_a_basic_client_id_is_invalid_client_at_the_token_endpoint(clients: Clients) -> None:
    # The Validator's path (refresh and code grants, PAR, revocation): refused, never a 500
    # (PostgreSQL refuses a NUL in a text parameter with an error of its own).
    for form in ({"grant_type": "refresh_token", "refresh_token": "x"}, {"grant_type": "client_credentials"}):
        response = BrowserClient().post("/token", form, HTTP_AUTHORIZATION=basic("a\x00b", "x"))
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
