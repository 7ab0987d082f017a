"""identity/oidc/token_rows.py: the one-statement reads of a refresh token and of an
authorization code, with their resident and browser session, give the same instances as
the ORM (every column read equal, JSON and dates converted alike, on SQLite and
PostgreSQL), and what the token endpoint builds on them (the ID token's sid, acr and amr;
a code or refresh token whose session ended or is gone) behaves as before."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from jwcrypto import jwt

from identity.models import BrowserSession
from identity.oidc.models import AuthorizationCode, RefreshToken
from identity.oidc.token_rows import (
    ACCESS_TOKEN_FIELDS,
    REFRESH_TOKEN_FIELDS,
    SESSION_FIELDS,
    code_row,
    refresh_token_row,
)
from tests.oidc.conftest import complete_flow, post_token


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _payload(id_token: str) -> dict[str, Any]:
    return json.loads(jwt.JWT(jwt=id_token).token.objects["payload"])


def _same(read: Any, orm: Any, names: tuple[str, ...]) -> None:
    for name in names:
        attname = type(orm)._meta.get_field(name).attname
        got, expected = getattr(read, attname), getattr(orm, attname)
        assert got == expected and type(got) is type(expected), (name, got, expected)


def _refresh(rp: Any, refresh_token: str) -> Any:
    return post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=rp.basic_auth())


def test_a_refresh_token_is_read_as_the_orm_reads_it(flow: Any, tokens: dict[str, Any]) -> None:
    orm = RefreshToken.objects.select_related("user", "access_token").get(
        token_checksum=_checksum(tokens["refresh_token"])
    )
    with CaptureQueriesContext(connection) as queries:
        found = refresh_token_row(tokens["refresh_token"])
        assert found is not None
        read = found.row
        _same(read, orm, REFRESH_TOKEN_FIELDS)
        _same(read.access_token, orm.access_token, ACCESS_TOKEN_FIELDS)
        user_fields = tuple(field.name for field in type(orm.user)._meta.concrete_fields)
        _same(read.user, orm.user, user_fields)
        session = BrowserSession.objects.get(sid=orm.sid)
        assert found.session is not None
        _same(found.session, session, SESSION_FIELDS)
    assert len(queries.captured_queries) == 2  # the read, and the session above for comparison
    assert read.created.tzinfo is not None and isinstance(read.amr, list) and read.sid
    # Columns not read are deferred, as with .only(): read on access, not wrong.
    assert "token_checksum" in read.get_deferred_fields()
    assert read.token_checksum == orm.token_checksum


def test_the_live_row_wins_over_revoked_rows_of_that_checksum(flow: Any, tokens: dict[str, Any]) -> None:
    live = RefreshToken.objects.get(token_checksum=_checksum(tokens["refresh_token"]))
    # Another row with the same checksum, revoked (uniqueness is (token_checksum, revoked)).
    RefreshToken.objects.create(
        user=live.user,
        application=live.application,
        token=live.token,
        token_checksum=live.token_checksum,
        token_family=live.token_family,
        revoked=timezone.now(),
    )
    found = refresh_token_row(tokens["refresh_token"])
    assert found is not None and found.row.pk == live.pk and found.row.revoked is None
    live.revoke()
    found = refresh_token_row(tokens["refresh_token"])
    assert found is not None and found.row.revoked is not None
    assert found.row.pk == RefreshToken.objects.filter(revoked__isnull=False).order_by("-revoked")[0].pk
    assert found.row.access_token is None  # deleted with the rotation


def test_unknown_tokens_and_codes_read_nothing(db: Any) -> None:
    assert refresh_token_row("no-such-token") is None
    assert code_row("no-such-code") is None


def test_a_code_is_read_as_the_orm_reads_it_and_only_by_the_code_itself(flow: Any) -> None:
    code = flow.get_code()
    orm = AuthorizationCode.objects.select_related("user").get(code=code)
    found = code_row(code)
    assert found is not None
    grant_fields = tuple(field.name for field in AuthorizationCode._meta.concrete_fields)
    _same(found.row, orm, grant_fields)
    user_fields = tuple(field.name for field in type(orm.user)._meta.concrete_fields)
    _same(found.row.user, orm.user, user_fields)
    assert found.session is not None and found.session.sid == orm.sid
    # The stored digest presented as a code is hashed again: it matches nothing.
    assert code_row(str(orm.code)) is None


def test_a_row_without_a_session_reads_none(flow: Any) -> None:
    code = flow.get_code()
    AuthorizationCode.objects.filter(code=code).update(sid="")
    found = code_row(code)
    assert found is not None and found.row.sid == "" and found.session is None


def test_a_refresh_carries_the_sessions_sid_acr_and_amr(flow: Any, tokens: dict[str, Any]) -> None:
    first = _payload(tokens["id_token"])
    body = _refresh(flow.rp, tokens["refresh_token"]).json()
    again = _payload(body["id_token"])
    assert again["sid"] == first["sid"]
    assert again.get("acr") == first.get("acr") and again.get("amr") == first.get("amr")
    assert again["sid"] and again.get("amr")


def test_a_refresh_whose_session_row_is_gone_has_no_sid(flow: Any, tokens: dict[str, Any]) -> None:
    # A token whose session record no longer exists (not something sign-out does: it ends
    # the session and revokes the tokens): the ID token then names no session, as before.
    RefreshToken.objects.filter(token_checksum=_checksum(tokens["refresh_token"])).update(sid="gone")
    response = _refresh(flow.rp, tokens["refresh_token"])
    assert response.status_code == 200, response.content
    assert "sid" not in _payload(response.json()["id_token"])


def test_a_code_whose_session_ended_is_refused(flow: Any) -> None:
    code = flow.get_code()
    sid = AuthorizationCode.objects.get(code=code).sid
    BrowserSession.objects.filter(sid=sid).update(ended_at=timezone.now())
    response = flow.token(code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert AuthorizationCode.objects.get(code=code).redeemed_at is not None  # claimed, used up


def test_tokens_issued_after_a_refresh_keep_working(flow: Any) -> None:
    tokens = complete_flow(flow)
    for _ in range(3):
        response = _refresh(flow.rp, tokens["refresh_token"])
        assert response.status_code == 200, response.content
        tokens = response.json()
    assert _refresh(flow.rp, tokens["refresh_token"]).status_code == 200
