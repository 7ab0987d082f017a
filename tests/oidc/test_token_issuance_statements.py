"""The token endpoint's two hot paths, code redemption and refresh with rotation: how many
SQL statements they run (a regression guard, not a timing), and the security behaviour
of the lean paths behind those numbers (RFC 6749 §4.1.2 and §6, RFC 9700 §4.14.2, OpenID
Back-Channel Logout §2.7): one claim per refresh token or code, a replay or a concurrent
second use revokes the token family, tokens issued as the session ends die with it, and
the ID-token row is written with the tokens, never on its own."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from jwcrypto import jwt
from oauth2_provider.settings import oauth2_settings

from identity.models import BrowserSession
from identity.oidc.models import AccessToken, AuthorizationCode, IDToken, RefreshToken
from identity.oidc.request_validator import Validator
from identity.sessions import session_end
from tests.oidc.conftest import complete_flow, post_token, userinfo

# Data statements only: transaction control (BEGIN, SAVEPOINT, RELEASE, COMMIT) depends on
# whether the test wraps the request in a transaction of its own, and is left out.
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")

# What each path needs, in the order it runs (a change that adds one should say why here):
# refresh: the refresh token with its access token, resident and browser session (the ID
# token's sid, acr, amr) in one statement (1, identity/oidc/token_rows.py); the consent
# ledger for the claims (1); claim the presented refresh token (UPDATE), delete its access
# token and INSERT the ID token, the access token and the refresh token
# (identity/oidc/token_writes.py: one statement on PostgreSQL, 2 + 3 elsewhere); lock the
# browser session and note the client (in that same statement on PostgreSQL, 2 elsewhere).
MAX_REFRESH_STATEMENTS = 3 if connection.vendor == "postgresql" else 9
# code redemption: claim the code, recording the token family, and read it with its
# resident and browser session (identity/oidc/token_rows.py claimed_code_row: one statement
# on PostgreSQL, the UPDATE then the SELECT elsewhere); the consent ledger (1); the three
# INSERTs (one statement on PostgreSQL, 3 elsewhere); lock the browser session and note the
# client (in that same statement on PostgreSQL, 2 elsewhere).
MAX_CODE_STATEMENTS = 3 if connection.vendor == "postgresql" else 8


def data_statements(queries: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"]
        for query in queries.captured_queries
        if not query["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL)
    ]


def refresh(rp: Any, refresh_token: str) -> Any:
    return post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=rp.basic_auth())


def checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def jti_of(id_token: str) -> str:
    return json.loads(jwt.JWT(jwt=id_token).token.objects["payload"])["jti"]


def test_refresh_runs_in_a_handful_of_statements(flow: Any, tokens: dict[str, Any]) -> None:
    second = refresh(flow.rp, tokens["refresh_token"]).json()  # warms the client and key caches
    presented = RefreshToken.objects.get(token_checksum=checksum(second["refresh_token"]))
    with CaptureQueriesContext(connection) as queries:
        response = refresh(flow.rp, second["refresh_token"])
    assert response.status_code == 200, response.content
    statements = data_statements(queries)
    assert len(statements) <= MAX_REFRESH_STATEMENTS, "\n".join(statements)
    # Rotation: the presented token revoked and its access token deleted; one live
    # successor in the same family, whose access token points at the ID token issued.
    body = response.json()
    old = RefreshToken.objects.get(pk=presented.pk)
    new = RefreshToken.objects.get(token_checksum=checksum(body["refresh_token"]))
    assert old.revoked is not None and old.access_token_id is None
    assert not AccessToken.objects.filter(pk=presented.access_token_id).exists()
    assert new.revoked is None and new.token_family == old.token_family
    assert new.access_token.source_refresh_token_id == old.pk
    assert str(new.access_token.id_token.jti) == jti_of(body["id_token"])
    assert RefreshToken.objects.filter(revoked__isnull=True).count() == 1


def test_code_redemption_runs_in_a_handful_of_statements(flow: Any) -> None:
    complete_flow(flow)  # warms the client and key caches
    code = flow.get_code()
    with CaptureQueriesContext(connection) as queries:
        response = flow.token(code)
    assert response.status_code == 200, response.content
    statements = data_statements(queries)
    assert len(statements) <= MAX_CODE_STATEMENTS, "\n".join(statements)
    # The code is marked redeemed with the family of the refresh token it produced (so a
    # replay revokes it), and the access token points at the ID token issued.
    body = response.json()
    redeemed = AuthorizationCode.objects.get(code=code)
    new = RefreshToken.objects.get(token_checksum=checksum(body["refresh_token"]))
    assert redeemed.redeemed_at is not None and redeemed.token_family == new.token_family
    assert str(new.access_token.id_token.jti) == jti_of(body["id_token"])


def test_a_refresh_token_rotated_concurrently_is_a_replay(
    flow: Any, tokens: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests present the same refresh token at once: both pass validation, only one
    claims it; the other is answered invalid_grant and revokes the family, including the
    tokens the first one just obtained (as a later replay would)."""
    original = Validator._validate_rotating_refresh_token
    winner: dict[str, Any] = {}

    def validate_then_lose_the_race(self: Any, refresh_token: str, client: Any, request: Any) -> bool:
        valid = original(self, refresh_token, client, request)
        if valid and not winner:
            winner["response"] = None  # the other request, which gets there first:
            winner["response"] = refresh(flow.rp, refresh_token)
        return valid

    monkeypatch.setattr(Validator, "_validate_rotating_refresh_token", validate_then_lose_the_race)
    loser = refresh(flow.rp, tokens["refresh_token"])
    monkeypatch.setattr(Validator, "_validate_rotating_refresh_token", original)
    assert winner["response"].status_code == 200, winner["response"].content
    assert loser.status_code == 400 and loser.json()["error"] == "invalid_grant"
    won = winner["response"].json()
    assert refresh(flow.rp, won["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(won["access_token"]).status_code == 401
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()
    assert not AccessToken.objects.exists()
    # Nothing of the losing request was written: no ID token row beyond the two issued.
    assert IDToken.objects.count() == 2


def test_tokens_issued_as_the_session_ends_are_revoked(
    flow: Any, tokens: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session ends after the refresh was validated, before its tokens are saved."""
    original = Validator.finalize_id_token

    def sign_out_meanwhile(self: Any, *args: Any, **kwargs: Any) -> str:
        session_end(session=BrowserSession.objects.get(), reason="logout")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Validator, "finalize_id_token", sign_out_meanwhile)
    response = refresh(flow.rp, tokens["refresh_token"])
    monkeypatch.setattr(Validator, "finalize_id_token", original)
    if response.status_code == 200:
        issued = response.json()
        assert userinfo(issued["access_token"]).status_code == 401
        assert refresh(flow.rp, issued["refresh_token"]).json()["error"] == "invalid_grant"
    else:
        assert response.json()["error"] == "invalid_grant"
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()
    assert not AccessToken.objects.exists()


def test_a_code_redeemed_as_the_session_ends_gives_dead_tokens(
    flow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = flow.get_code()
    original = Validator.finalize_id_token

    def sign_out_meanwhile(self: Any, *args: Any, **kwargs: Any) -> str:
        session_end(session=BrowserSession.objects.get(), reason="logout")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Validator, "finalize_id_token", sign_out_meanwhile)
    response = flow.token(code)
    monkeypatch.setattr(Validator, "finalize_id_token", original)
    assert response.status_code == 200, response.content
    issued = response.json()
    assert userinfo(issued["access_token"]).status_code == 401
    assert refresh(flow.rp, issued["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_failed_issuance_writes_no_id_token_row(flow: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ID-token row is written with the tokens, in their transaction: never alone. The
    last write of that transaction (the session record, after the three INSERTs) fails:
    none of the rows stays."""
    code = flow.get_code()

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(Validator, "_record_session_issue", fail)
    with pytest.raises(RuntimeError):
        flow.token(code)
    assert not IDToken.objects.exists()
    assert not AccessToken.objects.exists()
    assert not RefreshToken.objects.exists()


def test_a_revoked_refresh_token_from_another_client_still_revokes_its_family(
    flow: Any, tokens: dict[str, Any], other_rp: Any
) -> None:
    second = refresh(flow.rp, tokens["refresh_token"]).json()
    # The first refresh token, rotated, presented by another client: a replay all the same.
    assert refresh(other_rp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(flow.rp, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(second["access_token"]).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_two_refreshes_of_one_token_at_once_on_postgresql(
    flow: Any, tokens: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections, both past validation before either saves: the row lock taken by
    the claim (a conditional UPDATE) lets exactly one rotate; the other waits for it to
    commit, finds the token consumed, and revokes the family."""
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent transactions (PostgreSQL)")
    original = Validator._validate_rotating_refresh_token
    both_validated = threading.Barrier(2, timeout=20)

    def validate_together(self: Any, refresh_token: str, client: Any, request: Any) -> bool:
        valid = original(self, refresh_token, client, request)
        both_validated.wait()
        return valid

    monkeypatch.setattr(Validator, "_validate_rotating_refresh_token", validate_together)
    responses: list[Any] = []

    def present() -> None:
        try:
            responses.append(refresh(flow.rp, tokens["refresh_token"]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=present) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.setattr(Validator, "_validate_rotating_refresh_token", original)
    assert sorted(response.status_code for response in responses) == [200, 400]
    won = next(response for response in responses if response.status_code == 200).json()
    lost = next(response for response in responses if response.status_code == 400)
    assert lost.json()["error"] == "invalid_grant"
    assert refresh(flow.rp, won["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(won["access_token"]).status_code == 401
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()
    assert not AccessToken.objects.exists()


def test_other_rotation_settings_use_django_oauth_toolkits_path(
    flow: Any, tokens: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean rotation is for our posture (rotation, no grace period); with a grace
    period django-oauth-toolkit's own validation and saving still issue working tokens."""
    monkeypatch.setattr(oauth2_settings, "REFRESH_TOKEN_GRACE_PERIOD_SECONDS", 60)
    response = refresh(flow.rp, tokens["refresh_token"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert userinfo(body["access_token"]).status_code == 200
    old = RefreshToken.objects.get(token_checksum=checksum(tokens["refresh_token"]))
    new = RefreshToken.objects.get(token_checksum=checksum(body["refresh_token"]))
    assert old.revoked is not None and new.revoked is None and new.token_family == old.token_family
    assert str(new.access_token.id_token.jti) == jti_of(body["id_token"])
