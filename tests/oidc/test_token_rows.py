"""identity/oidc/token_rows.py: the one-statement reads of a refresh token and of an
authorization code, with their resident and browser session, give the same instances as
the ORM (every column read equal, JSON and dates converted alike, on SQLite and
PostgreSQL), and what the token endpoint builds on them (the ID token's sid, acr and amr;
a code or refresh token whose session ended or is gone) behaves as before."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
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
    claimed_code_row,
    code_row,
    refresh_token_row,
)
from tests.conftest import REDIRECT_URI
from tests.oidc.conftest import complete_flow, post_token, userinfo


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


# --- the code claimed and read at once (claimed_code_row) --------------------------------------

# The claim and the read: one statement on PostgreSQL (an UPDATE ... RETURNING in a CTE),
# the UPDATE then code_row's SELECT elsewhere.
CLAIM_STATEMENTS = 1 if connection.vendor == "postgresql" else 2


def _data_statements(queries: CaptureQueriesContext) -> list[str]:
    control = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")
    return [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith(control)]


def test_a_claimed_code_is_read_as_the_orm_reads_it_after_the_claim(flow: Any) -> None:
    code = flow.get_code()
    client_pk = AuthorizationCode.objects.get(code=code).application_id
    family = uuid.uuid4()
    with CaptureQueriesContext(connection) as queries:
        found = claimed_code_row(code, client_pk, family)
    assert len(_data_statements(queries)) == CLAIM_STATEMENTS, _data_statements(queries)
    assert found is not None
    orm = AuthorizationCode.objects.select_related("user").get(code=code)
    assert orm.redeemed_at is not None and orm.token_family == family  # the claim was written
    grant_fields = tuple(field.name for field in AuthorizationCode._meta.concrete_fields)
    _same(found.row, orm, grant_fields)  # redeemed_at and token_family included
    user_fields = tuple(field.name for field in type(orm.user)._meta.concrete_fields)
    _same(found.row.user, orm.user, user_fields)
    session = BrowserSession.objects.get(sid=orm.sid)
    assert found.session is not None
    _same(found.session, session, SESSION_FIELDS)


def test_a_code_is_claimed_once(flow: Any) -> None:
    code = flow.get_code()
    client_pk = AuthorizationCode.objects.get(code=code).application_id
    first = uuid.uuid4()
    assert claimed_code_row(code, client_pk, first) is not None
    assert claimed_code_row(code, client_pk, uuid.uuid4()) is None
    assert AuthorizationCode.objects.get(code=code).token_family == first  # the first claim's


def test_an_unknown_or_another_clients_code_is_not_claimed(flow: Any, other_rp: Any) -> None:
    code = flow.get_code()
    assert claimed_code_row("no-such-code", other_rp.client.pk, uuid.uuid4()) is None
    assert claimed_code_row(code, other_rp.client.pk, uuid.uuid4()) is None
    untouched = AuthorizationCode.objects.get(code=code)
    assert untouched.redeemed_at is None and untouched.token_family is None


def test_a_claimed_code_without_a_session_reads_none(flow: Any) -> None:
    code = flow.get_code()
    AuthorizationCode.objects.filter(code=code).update(sid="")
    client_pk = AuthorizationCode.objects.get(code=code).application_id
    found = claimed_code_row(code, client_pk, uuid.uuid4())
    assert found is not None and found.row.sid == "" and found.session is None


# The failure paths of a redemption at the token endpoint, which claims first and reads the
# code on its own only when the claim fails.


def test_an_unknown_code_is_refused_and_writes_nothing(flow: Any) -> None:
    issued = flow.get_code()
    response = flow.token("no-such-code")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert AuthorizationCode.objects.get(code=issued).redeemed_at is None
    assert not RefreshToken.objects.exists()


def _redeem_as(rp: Any, flow: Any, code: str) -> Any:
    """`code` presented at the token endpoint by `rp` (another client than the one it was issued to)."""
    return post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        },
        auth=rp.basic_auth(),
    )


def test_another_clients_code_is_refused_and_left_untouched(flow: Any, other_rp: Any) -> None:
    code = flow.get_code()
    first = complete_flow(flow)  # a family of the right client, which must survive
    response = _redeem_as(other_rp, flow, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    untouched = AuthorizationCode.objects.get(code=code)
    assert untouched.redeemed_at is None and untouched.token_family is None
    assert userinfo(first["access_token"]).status_code == 200
    assert flow.token(code).status_code == 200  # the right client still redeems it


def test_a_replayed_code_is_refused_and_revokes_what_it_issued(flow: Any) -> None:
    code = flow.get_code()
    issued = flow.token(code)
    assert issued.status_code == 200, issued.content
    family = AuthorizationCode.objects.get(code=code).token_family
    replay = flow.token(code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert AuthorizationCode.objects.get(code=code).token_family == family  # not claimed again
    assert not RefreshToken.objects.filter(token_family=family, revoked__isnull=True).exists()
    assert userinfo(issued.json()["access_token"]).status_code == 401
    assert _refresh(flow.rp, issued.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_code_replayed_by_another_client_revokes_nothing(flow: Any, other_rp: Any) -> None:
    code = flow.get_code()
    issued = flow.token(code)
    assert issued.status_code == 200, issued.content
    response = _redeem_as(other_rp, flow, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert userinfo(issued.json()["access_token"]).status_code == 200


def test_an_expired_code_is_refused_and_used_up(flow: Any) -> None:
    code = flow.get_code()
    AuthorizationCode.objects.filter(code=code).update(expires=timezone.now() - timedelta(seconds=1))
    response = flow.token(code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    claimed = AuthorizationCode.objects.get(code=code)
    assert claimed.redeemed_at is not None and claimed.token_family is not None
    assert not RefreshToken.objects.exists()
    AuthorizationCode.objects.filter(code=code).update(expires=timezone.now() + timedelta(minutes=1))
    assert flow.token(code).json()["error"] == "invalid_grant"  # claimed: no second chance


def test_a_code_of_a_deactivated_resident_is_refused(flow: Any) -> None:
    code = flow.get_code()
    user = AuthorizationCode.objects.get(code=code).user
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    response = flow.token(code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert not RefreshToken.objects.exists()
