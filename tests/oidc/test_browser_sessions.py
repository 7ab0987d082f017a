"""Browser sessions as records (OpenID Connect `sid`; sign out everywhere; revoking one session)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connectors.models import OutboxMessage
from identity.models import AuditEvent, BrowserSession, SessionClient
from identity.oidc.backchannel import KIND
from identity.oidc.models import AccessToken, AuthorizationCode, RefreshToken
from identity.sessions import (
    SESSION_SID,
    device_label,
    session_client_record,
    session_end,
    session_revoke,
    sessions_active,
    sessions_end_all,
)
from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import complete_flow, location_query, post_token, sign_in, userinfo

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def browser_with(user_agent: str) -> BrowserClient:
    return BrowserClient(HTTP_USER_AGENT=user_agent)


def signed_out_here(browser: BrowserClient, rp: Any) -> bool:
    return location_query(OIDCFlow(browser, rp).authorize(prompt="none")).get("error") == ["login_required"]


def refresh(rp: Any, refresh_token: str) -> Any:
    return post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=rp.basic_auth())


# --- the record ------------------------------------------------------------------------------------


def test_sign_in_creates_a_session_record_bound_to_the_browser(resident: Any) -> None:
    browser = browser_with(FIREFOX + " " + "x" * 500)
    sign_in(browser, resident.email)
    session = BrowserSession.objects.get()
    assert session.user == resident
    assert len(session.sid) >= 32 and session.sid not in str(resident.pk)
    assert browser.session[SESSION_SID] == session.sid
    assert session.amr == ["pwd"] and session.acr == "eidas1"
    assert session.device == "Firefox · Windows"
    assert len(session.user_agent) == 200  # truncated
    assert session.ended_at is None
    assert abs((session.auth_time - timezone.now()).total_seconds()) < 5
    assert session.session_key_encrypted and browser.session.session_key.encode() not in bytes(
        session.session_key_encrypted
    )


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (FIREFOX, "Firefox · Windows"),
        (IPHONE, "Safari · iPhone"),
        (
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
            "Chrome · Android",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36 Edg/126.0",
            "Edge · Windows",
        ),
        ("", "?"),
    ],
)
def test_device_label_is_coarse(user_agent: str, label: str) -> None:
    assert device_label(user_agent) == label


def test_sid_is_in_the_id_token_and_on_every_token_of_the_session(flow: OIDCFlow, resident: Any) -> None:
    tokens = complete_flow(flow)
    session = BrowserSession.objects.get()
    claims = verify_id_token(tokens["id_token"], flow.rp.client_id)
    assert claims["sid"] == session.sid
    assert claims["acr"] == "eidas1" and claims["amr"] == ["pwd"]
    assert AuthorizationCode.objects.get().sid == session.sid
    assert AccessToken.objects.get().sid == session.sid
    assert RefreshToken.objects.get().sid == session.sid
    link = SessionClient.objects.get()
    assert (link.session, link.client) == (session, flow.rp.client)
    assert link.first_issued_at <= link.last_issued_at


def test_refresh_keeps_the_sid_and_records_the_issue(flow: OIDCFlow) -> None:
    tokens = complete_flow(flow)
    first = SessionClient.objects.get().last_issued_at
    body = refresh(flow.rp, tokens["refresh_token"]).json()
    original = verify_id_token(tokens["id_token"], flow.rp.client_id)
    refreshed = verify_id_token(body["id_token"], flow.rp.client_id)
    assert refreshed["sid"] == original["sid"]
    assert refreshed["auth_time"] == original["auth_time"]
    assert set(RefreshToken.objects.values_list("sid", flat=True)) == {original["sid"]}
    link = SessionClient.objects.get()
    assert link.last_issued_at > first


def test_recording_a_client_locks_the_session_and_refuses_an_ended_one(
    signed_in: BrowserClient, rp: Any
) -> None:
    """identity.sessions.session_client_record, the token endpoint's last step: a new link,
    then the same link touched; nothing for an unknown sid; False once the session ended."""
    session = BrowserSession.objects.get()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert session_client_record(sid=session.sid, client=rp.client)
    lock = queries.captured_queries[0]["sql"]
    if connection.features.has_select_for_update:
        assert lock.rstrip().endswith("FOR UPDATE")
    link = SessionClient.objects.get()
    assert (link.session, link.client, link.first_issued_at) == (session, rp.client, link.last_issued_at)
    assert session_client_record(sid=session.sid, client=rp.client)
    touched = SessionClient.objects.get()
    assert touched.pk == link.pk and touched.last_issued_at > link.last_issued_at
    assert session_client_record(sid="no-such-sid", client=rp.client)
    assert SessionClient.objects.count() == 1
    session_end(session=session, reason="logout")
    assert not session_client_record(sid=session.sid, client=rp.client)
    assert SessionClient.objects.get().last_issued_at == touched.last_issued_at


def test_last_seen_is_updated_at_most_once_a_minute(flow: OIDCFlow) -> None:
    complete_flow(flow)
    session = BrowserSession.objects.get()
    seen = session.last_seen_at
    OIDCFlow(flow.browser, flow.rp).authorize(prompt="none")
    session.refresh_from_db()
    assert session.last_seen_at == seen  # throttled
    BrowserSession.objects.filter(pk=session.pk).update(last_seen_at=seen - timedelta(minutes=2))
    OIDCFlow(flow.browser, flow.rp).authorize(prompt="none")
    session.refresh_from_db()
    assert session.last_seen_at > seen - timedelta(minutes=1)


def test_signing_in_again_keeps_the_session_and_updates_auth_time(flow: OIDCFlow, resident: Any) -> None:
    complete_flow(flow)
    session = BrowserSession.objects.get()
    BrowserSession.objects.filter(pk=session.pk).update(auth_time=session.auth_time - timedelta(hours=1))
    sign_in(flow.browser, resident.email)  # prompt=login, max_age: re-authentication
    again = BrowserSession.objects.get()
    assert again.sid == session.sid and again.ended_at is None
    assert again.auth_time > session.auth_time - timedelta(minutes=1)


def test_another_resident_signing_in_ends_the_previous_session(flow: OIDCFlow, make_resident: Any) -> None:
    tokens = complete_flow(flow)
    other = make_resident("dominique@example.org")
    sign_in(flow.browser, other.email)
    ended = BrowserSession.objects.exclude(user=other).get()
    assert ended.end_reason == "replaced"
    assert userinfo(tokens["access_token"]).status_code == 401
    assert BrowserSession.objects.get(user=other).ended_at is None


def test_account_sign_out_ends_the_record_and_revokes_its_tokens(flow: OIDCFlow, resident: Any) -> None:
    tokens = complete_flow(flow)
    assert flow.browser.post("/deconnexion/").status_code == 302
    session = BrowserSession.objects.get()
    assert session.ended_at is not None and session.end_reason == "logout"
    assert userinfo(tokens["access_token"]).status_code == 401
    assert refresh(flow.rp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    event = AuditEvent.objects.get(event="session.ended")
    assert event.subject_user_id == resident.pk and event.acting_user_id == resident.pk
    assert event.data == {"session": session.pk, "reason": "logout", "clients": [flow.rp.client_id]}
    assert session.sid not in str(event.data)  # audit carries ids, not the session secret


def test_code_issued_before_sign_out_cannot_be_redeemed_after(flow: OIDCFlow) -> None:
    code = flow.get_code()
    flow.browser.post("/deconnexion/")
    response = flow.token(code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_ending_one_session_leaves_the_residents_other_sessions_alone(rp: Any, resident: Any) -> None:
    laptop, phone = browser_with(FIREFOX), browser_with(IPHONE)
    sign_in(laptop, resident.email)
    sign_in(phone, resident.email)
    laptop_tokens = complete_flow(OIDCFlow(laptop, rp))
    phone_tokens = complete_flow(OIDCFlow(phone, rp))
    laptop.post("/deconnexion/")
    assert userinfo(laptop_tokens["access_token"]).status_code == 401
    assert userinfo(phone_tokens["access_token"]).status_code == 200
    assert refresh(rp, phone_tokens["refresh_token"]).status_code == 200
    assert not signed_out_here(phone, rp)


# --- sign out everywhere, revoke one session ---------------------------------------------------------


def test_sign_out_everywhere_keeps_only_the_current_session(rp: Any, resident: Any, make_client: Any) -> None:
    partner = make_client(name="Transports", backchannel_logout_uri="https://transports.example.net/bcl")
    laptop, phone, tablet = browser_with(FIREFOX), browser_with(IPHONE), BrowserClient()
    for browser in (laptop, phone, tablet):
        sign_in(browser, resident.email)
    tokens = {name: complete_flow(OIDCFlow(b, partner)) for name, b in [("laptop", laptop), ("phone", phone)]}
    current = BrowserSession.objects.get(sid=laptop.session[SESSION_SID])
    phone_sid = phone.session[SESSION_SID]

    assert sessions_end_all(user=resident, except_current=current) == 2
    assert [s.sid for s in sessions_active(user=resident)] == [current.sid]
    assert not signed_out_here(laptop, rp)
    assert signed_out_here(phone, rp) and signed_out_here(tablet, rp)
    assert userinfo(tokens["phone"]["access_token"]).status_code == 401
    assert userinfo(tokens["laptop"]["access_token"]).status_code == 200
    # One back-channel notification: the phone's session, the only other one with a partner.
    (message,) = OutboxMessage.objects.filter(kind=KIND)
    assert message.payload["sid"] == phone_sid
    assert AuditEvent.objects.filter(event="session.ended", data__reason="sign_out_everywhere").count() == 2
    assert AuditEvent.objects.get(event="session.ended_all").data == {"count": 2, "kept_current": True}

    assert sessions_end_all(user=resident) == 1
    assert signed_out_here(laptop, rp)


def test_revoking_one_session_from_the_account_pages(rp: Any, resident: Any, make_resident: Any) -> None:
    laptop, phone = browser_with(FIREFOX), browser_with(IPHONE)
    sign_in(laptop, resident.email)
    sign_in(phone, resident.email)
    phone_sid = phone.session[SESSION_SID]
    stranger = make_resident("dominique@example.org")

    assert session_revoke(user=stranger, sid=phone_sid) is False  # not theirs
    assert session_revoke(user=resident, sid="no-such-session") is False
    assert not signed_out_here(phone, rp)

    assert session_revoke(user=resident, sid=phone_sid) is True
    assert signed_out_here(phone, rp)
    assert not signed_out_here(laptop, rp)
    assert BrowserSession.objects.get(sid=phone_sid).end_reason == "revoked"
    assert session_revoke(user=resident, sid=phone_sid) is False  # already ended


def test_session_end_is_idempotent(signed_in: BrowserClient) -> None:
    session = BrowserSession.objects.get()
    assert session_end(session=session, reason="revoked").already_ended is False
    assert session_end(session=session, reason="revoked").already_ended is True
    assert AuditEvent.objects.filter(event="session.ended").count() == 1


def test_signed_in_session_without_record_is_adopted(client: BrowserClient, resident: Any, rp: Any) -> None:
    client.force_login(resident)  # e.g. signed in before session records existed
    tokens = complete_flow(OIDCFlow(client, rp))
    session = BrowserSession.objects.get()
    assert verify_id_token(tokens["id_token"], rp.client_id)["sid"] == session.sid
    client.post("/deconnexion/")
    assert userinfo(tokens["access_token"]).status_code == 401
