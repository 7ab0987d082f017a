"""Pieces of a token response written out instead of taken from oauthlib or
django-oauth-toolkit (identity/oidc/access_tokens.random_token, the Validator's
get_id_token_dictionary): each compared with the implementation it replaces."""

from __future__ import annotations

import base64
import json
import string
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from oauth2_provider.models import get_id_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import UNICODE_ASCII_CHARACTER_SET, Request

from identity.oidc import access_tokens
from identity.oidc.access_tokens import random_token
from identity.oidc.request_validator import Validator
from tests.oidc.conftest import complete_flow, post_token

IDToken = get_id_token_model()

# --- refresh tokens: oauthlib's format ---------------------------------------------------------


def test_random_token_has_oauthlibs_format() -> None:
    tokens = [random_token() for _ in range(2000)]
    assert len(set(tokens)) == len(tokens)
    assert access_tokens._TOKEN_ALPHABET == UNICODE_ASCII_CHARACTER_SET
    assert all(len(token) == 30 and set(token) <= set(UNICODE_ASCII_CHARACTER_SET) for token in tokens)
    # Every letter drawn, none favoured grossly (60,000 draws, 968 expected per letter: a
    # letter 5 standard deviations off would be a bias in the mapping, not chance).
    counts = Counter("".join(tokens))
    assert set(counts) == set(string.ascii_letters + string.digits)
    assert all(abs(count - 60000 / 62) < 5 * (60000 / 62) ** 0.5 for count in counts.values())


def test_random_token_drops_the_bytes_above_the_last_full_alphabet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes 248..255 would favour the first 8 letters (256 = 4 × 62 + 8): they are dropped,
    and more bytes are read when too few remain."""
    reads = iter([bytes([255, 248, 0, 61, 62, 247]) + bytes([250] * 32), bytes(range(38))])
    monkeypatch.setattr(access_tokens.secrets, "token_bytes", lambda n: next(reads))
    alphabet = UNICODE_ASCII_CHARACTER_SET
    expected = alphabet[0] + alphabet[61] + alphabet[0] + alphabet[247 % 62] + alphabet[:26]
    assert random_token() == expected


def test_issued_refresh_tokens_are_random_tokens(flow: Any) -> None:
    assert oauth2_settings.REFRESH_TOKEN_GENERATOR is random_token  # resolved by django-oauth-toolkit
    tokens = complete_flow(flow)
    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=flow.rp.basic_auth(),
    ).json()
    for value in (tokens["refresh_token"], refreshed["refresh_token"]):
        assert len(value) == 30 and set(value) <= set(UNICODE_ASCII_CHARACTER_SET)


# --- the ID token's claims: django-oauth-toolkit's, then ours -------------------------------------


def _request(client: Any, user: Any, **attributes: Any) -> Request:
    request = Request("https://example.org/token")
    request.client, request.user, request.scopes = client, user, ["openid", "profile", "email"]
    for name, value in attributes.items():
        setattr(request, name, value)
    return request


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("last_login", "auth_time"),
    [
        (datetime(2026, 3, 1, 8, 30, tzinfo=UTC), None),  # from the resident's last sign-in
        (datetime(2026, 3, 1, 8, 30, tzinfo=UTC), datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),  # the code's
        (datetime(2026, 3, 1, 8, 30), datetime(2026, 3, 2, 9, 0)),  # naive: read as UTC
        (None, None),  # never signed in: now
    ],
)
def test_id_token_dictionary_is_django_oauth_toolkits_then_ours(
    rp: Any, resident: Any, last_login: datetime | None, auth_time: datetime | None, monkeypatch: Any
) -> None:
    """The reference: django-oauth-toolkit's get_id_token_dictionary (which this one used to
    call) with `auth_time` then replaced as ours does. Same claims, same order, same values
    but the `jti` (random, a UUID either way); `exp` from the same clock."""
    resident.last_login = last_login
    fixed = timezone.now().replace(microsecond=250000)
    monkeypatch.setattr(timezone, "now", lambda: fixed)
    validator = Validator()
    attributes = {"auth_time": auth_time} if auth_time is not None else {}
    ours, our_expiry = validator.get_id_token_dictionary(
        None, None, _request(rp.client, resident, **attributes)
    )
    theirs, their_expiry = OAuth2Validator.get_id_token_dictionary(
        validator, None, None, _request(rp.client, resident, **attributes)
    )
    authenticated = auth_time or last_login or fixed
    if authenticated.tzinfo is None:
        authenticated = authenticated.replace(tzinfo=UTC)
    theirs["auth_time"] = int(authenticated.timestamp())  # ours: the code's, else the last sign-in
    assert our_expiry == their_expiry == fixed + timedelta(seconds=oauth2_settings.ID_TOKEN_EXPIRE_SECONDS)
    assert list(ours) == list(theirs)
    assert len(ours["jti"]) == len(theirs["jti"]) == 36 and ours["jti"] != theirs["jti"]
    ours.pop("jti"), theirs.pop("jti")
    assert ours == theirs
    assert ours["exp"] == int(our_expiry.timestamp())


@pytest.mark.parametrize("endpoint", ["native", "oauthlib"])
def test_id_token_lifetime_is_exactly_the_setting_across_a_second_boundary(
    flow: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """`iat` is read when the ID token is started and `exp` once its claims are gathered: a
    clock that passes a second in between must not make the token live a second longer."""
    settings.TOKEN_ENDPOINT = endpoint
    code = flow.get_code()
    second = int(time.time())
    monkeypatch.setattr(time, "time", lambda: second + 0.999)  # iat: the end of one second
    monkeypatch.setattr(timezone, "now", lambda: datetime.fromtimestamp(second + 1.2, tz=UTC))  # the next
    response = flow.token(code)
    assert response.status_code == 200, response.content
    payload = response.json()["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iat"] == second
    assert claims["exp"] - claims["iat"] == oauth2_settings.ID_TOKEN_EXPIRE_SECONDS
    row = IDToken.objects.get(jti=claims["jti"])
    assert int(row.expires.timestamp()) == claims["exp"]
