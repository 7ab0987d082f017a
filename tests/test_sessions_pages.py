"""Account pages for browser sessions, and ended sessions enforced on every request
(identity.middleware.BrowserSessionMiddleware)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.db import connection
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext

from identity.models import AuditEvent, BrowserSession
from identity.sessions import SESSION_SID, browser_session_with_user, session_end
from tests.conftest import PASSWORD, OIDCFlow

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANDROID = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"


def browser(user_agent: str = FIREFOX, **extra: Any) -> BrowserClient:
    return BrowserClient(HTTP_USER_AGENT=user_agent, **extra)


def sign_in(client: BrowserClient, email: str) -> BrowserClient:
    response = client.post("/connexion/", {"username": email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return client


def record_of(client: BrowserClient) -> BrowserSession:
    return BrowserSession.objects.get(sid=client.session[SESSION_SID])


def is_signed_in(client: BrowserClient) -> bool:
    response = client.get("/compte/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    return False


def tokens_for(client: BrowserClient, rp: Any) -> dict[str, Any]:
    flow = OIDCFlow(client, rp)
    response = flow.token(flow.get_code())
    assert response.status_code == 200, response.content
    return response.json()


def refresh(rp: Any, refresh_token: str) -> Any:
    return BrowserClient().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        HTTP_AUTHORIZATION=rp.basic_auth(),
    )


# --- the middleware -------------------------------------------------------------------------


def test_a_browser_whose_session_ended_elsewhere_is_signed_out_on_its_next_request(resident: Any) -> None:
    laptop = sign_in(browser(FIREFOX), resident.email)
    phone = sign_in(browser(IPHONE), resident.email)
    # Ended without deleting the Django session behind it (as when the stored binding is
    # stale): only the middleware can notice.
    session_end(session=record_of(laptop), reason="revoked", delete_django_session=False)
    assert laptop.session.get(SESSION_KEY)  # the Django session itself is still there
    assert not is_signed_in(laptop)
    assert SESSION_KEY not in laptop.session
    assert is_signed_in(phone)


def test_the_middleware_protects_every_page_not_only_the_account(resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    session_end(session=record_of(laptop), reason="revoked", delete_django_session=False)
    response = laptop.get("/compte/securite/")
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")


def test_protocol_endpoints_and_anonymous_requests_are_not_checked(resident: Any, signing_keys: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    session_end(session=record_of(laptop), reason="revoked", delete_django_session=False)
    with CaptureQueriesContext(connection) as queries:
        assert laptop.get("/jwks.json").status_code == 200
        assert laptop.get("/.well-known/openid-configuration").status_code == 200
    assert not [q for q in queries.captured_queries if "identity_browsersession" in q["sql"]]
    with CaptureQueriesContext(connection) as queries:
        assert browser().get("/").status_code == 200
    assert not [q for q in queries.captured_queries if "identity_browsersession" in q["sql"]]


def test_a_live_session_costs_one_indexed_lookup(resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    with CaptureQueriesContext(connection) as queries:
        assert laptop.get("/").status_code == 200
    lookups = [q for q in queries.captured_queries if "identity_browsersession" in q["sql"]]
    assert len(lookups) == 1 and '"sid" =' in lookups[0]["sql"]


def test_the_session_record_and_the_resident_are_read_in_one_statement(resident: Any) -> None:
    """identity.sessions.browser_session_check: the record joined with the resident, whom
    Django's auth.get_user then does not select again."""
    laptop = sign_in(browser(), resident.email)
    with CaptureQueriesContext(connection) as queries:
        assert laptop.get("/").status_code == 200
    users = [q["sql"] for q in queries.captured_queries if "identity_user" in q["sql"]]
    assert len(users) == 1 and "identity_browsersession" in users[0], users


def test_the_record_and_the_resident_are_read_as_the_orm_reads_them(resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    sid = laptop.session[SESSION_SID]
    found = browser_session_with_user(sid)
    assert found is not None
    record, user = found
    for read, orm in (
        (record, BrowserSession.objects.get(sid=sid)),
        (user, type(user).objects.get(pk=resident.pk)),
    ):
        for field in type(orm)._meta.concrete_fields:
            got, expected = getattr(read, field.attname), getattr(orm, field.attname)
            assert got == expected and type(got) is type(expected), (field.name, got, expected)
            assert getattr(got, "tzinfo", None) == getattr(expected, "tzinfo", None), field.name
        assert read._state.db == orm._state.db and not read._state.adding
    assert browser_session_with_user("no-such-sid") is None


@pytest.mark.parametrize(
    "instant",
    [
        "1970-01-01T00:00:00+00:00",
        "1969-12-31T23:59:59.999999+00:00",
        "1900-02-28T12:00:00.000001+00:00",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999999+00:00",
        "2026-12-07T04:50:00.123456+02:00",
        "2038-01-19T03:14:08.5+00:00",
    ],
)
def test_the_date_times_are_read_as_the_orm_reads_them(resident: Any, instant: str) -> None:
    """On PostgreSQL (connection in UTC) the date-time columns are selected as microseconds
    since 1970 and made back into datetimes: the same values, types and time zone as Django's
    loader gives, for instants before 1970, at the ends of the range, microsecond edges, a
    non-UTC offset written, and NULL (`ended_at`, `last_login`)."""
    from datetime import datetime  # noqa: PLC0415

    laptop = sign_in(browser(), resident.email)
    sid = laptop.session[SESSION_SID]
    when = datetime.fromisoformat(instant)
    BrowserSession.objects.filter(sid=sid).update(created_at=when, auth_time=when, last_seen_at=when)
    type(resident).objects.filter(pk=resident.pk).update(last_login=None, created_at=when, updated_at=when)
    found = browser_session_with_user(sid)
    assert found is not None
    for read, orm in zip(
        found, (BrowserSession.objects.get(sid=sid), type(resident).objects.get(pk=resident.pk)), strict=True
    ):
        for field in type(orm)._meta.concrete_fields:
            got, expected = getattr(read, field.attname), getattr(orm, field.attname)
            assert got == expected and type(got) is type(expected), (field.name, got, expected)
            assert getattr(got, "tzinfo", None) == getattr(expected, "tzinfo", None), field.name
    assert found[0].created_at == when and found[0].ended_at is None and found[1].last_login is None
    if connection.vendor == "postgresql":  # the epochs' form was the one read
        from identity.sessions import _session_with_user_sql  # noqa: PLC0415

        assert _session_with_user_sql("default")[0].count("extract(epoch from") == 7


def test_a_changed_password_still_signs_the_other_browsers_out(resident: Any) -> None:
    # Django's session hash (auth.get_user) is still checked on the resident read with the record.
    laptop = sign_in(browser(), resident.email)
    user = type(resident).objects.get(pk=resident.pk)
    user.set_password("another long passphrase 42")
    user.save(update_fields=["password"])
    assert not is_signed_in(laptop)
    assert SESSION_KEY not in laptop.session  # flushed, as auth.get_user does


def test_a_session_hashed_with_a_previous_secret_key_is_kept_and_rehashed(
    resident: Any, settings: Any
) -> None:
    laptop = sign_in(browser(), resident.email)
    old_hash = laptop.session[HASH_SESSION_KEY]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert is_signed_in(laptop)  # the fallback verifies it
    assert laptop.session[HASH_SESSION_KEY] != old_hash  # and the hash is renewed
    settings.SECRET_KEY_FALLBACKS = []
    assert is_signed_in(laptop)


def test_a_deactivated_resident_is_anonymous(resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    type(resident).objects.filter(pk=resident.pk).update(is_active=False)
    assert not is_signed_in(laptop)  # ModelBackend.user_can_authenticate, on the row read


def test_a_record_of_another_resident_signs_the_browser_out(resident: Any, make_resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    theirs = sign_in(browser(IPHONE), make_resident("dominique@example.org").email)
    session = laptop.session
    session[SESSION_SID] = theirs.session[SESSION_SID]  # a record that is not this resident's
    session.save()
    assert not is_signed_in(laptop)
    assert SESSION_KEY not in laptop.session
    # The other resident's record is theirs: this browser's sign-out does not end it.
    assert BrowserSession.objects.get(sid=theirs.session[SESSION_SID]).ended_at is None
    assert is_signed_in(theirs)


def test_an_unknown_record_is_not_adopted_by_the_middleware(resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    session = laptop.session
    session[SESSION_SID] = "no-such-sid"
    session.save()
    with CaptureQueriesContext(connection) as queries:
        assert laptop.get("/").status_code == 200
    # The joined read found nothing: the resident read on its own, the record not read again.
    assert len([q for q in queries.captured_queries if "identity_browsersession" in q["sql"]]) == 1
    assert BrowserSession.objects.filter(user=resident).count() == 1


# --- the sessions page ----------------------------------------------------------------------


def test_sessions_page_needs_sign_in(client: BrowserClient, db: Any) -> None:
    response = client.get("/compte/sessions/")
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")


def test_sessions_page_lists_active_sessions_with_devices_and_partners(resident: Any, rp: Any) -> None:
    laptop = sign_in(browser(FIREFOX), resident.email)
    phone = sign_in(browser(IPHONE), resident.email)
    tokens_for(phone, rp)
    ended = sign_in(browser(ANDROID), resident.email)
    session_end(session=record_of(ended), reason="revoked")
    response = laptop.get("/compte/sessions/")
    assert response.status_code == 200
    rows = response.context["sessions"]
    assert [(row["device"], row["current"]) for row in rows] == [
        ("Firefox · Windows", True),
        ("Safari · iPhone", False),
    ]
    assert rows[1]["services"] == ["Billetterie culturelle"]
    html = response.content.decode()
    assert "cet appareil" in html and "Billetterie culturelle" in html and "Chrome · Android" not in html
    assert html.count("Déconnecter cette session") == 2
    assert record_of(phone).sid not in html  # sids are never shown (they name the session to partners)


def test_ending_another_session_signs_that_browser_out_and_revokes_its_tokens(resident: Any, rp: Any) -> None:
    laptop = sign_in(browser(FIREFOX), resident.email)
    phone = sign_in(browser(IPHONE), resident.email)
    phone_tokens = tokens_for(phone, rp)
    laptop_tokens = tokens_for(laptop, rp)
    target = record_of(phone)
    response = laptop.post(f"/compte/sessions/{target.pk}/deconnecter/")
    assert response.status_code == 302 and response["Location"] == "/compte/sessions/"
    target.refresh_from_db()
    assert target.ended_at is not None and target.end_reason == "revoked"
    assert not is_signed_in(phone)
    assert is_signed_in(laptop)
    assert refresh(rp, phone_tokens["refresh_token"]).status_code == 400
    assert refresh(rp, laptop_tokens["refresh_token"]).status_code == 200
    event = AuditEvent.objects.get(event="session.ended", data__session=target.pk)
    assert event.acting_user_id == resident.pk and event.subject_user_id == resident.pk


def test_ending_a_session_needs_post_and_csrf(resident: Any) -> None:
    laptop = sign_in(browser(FIREFOX), resident.email)
    laptop.handler.enforce_csrf_checks = True  # from now on, as a real browser would be
    phone = sign_in(browser(IPHONE), resident.email)
    target = record_of(phone)
    assert laptop.get(f"/compte/sessions/{target.pk}/deconnecter/").status_code == 405
    assert laptop.post(f"/compte/sessions/{target.pk}/deconnecter/").status_code == 403
    assert laptop.post("/compte/sessions/deconnecter-partout/").status_code == 403
    target.refresh_from_db()
    assert target.ended_at is None and is_signed_in(phone)


def test_a_resident_cannot_end_someone_elses_session(resident: Any, make_resident: Any) -> None:
    stranger = make_resident()
    laptop = sign_in(browser(), resident.email)
    theirs = sign_in(browser(IPHONE), stranger.email)
    target = record_of(theirs)
    response = laptop.post(f"/compte/sessions/{target.pk}/deconnecter/", follow=True)
    assert "Cette session était déjà terminée." in response.content.decode()
    target.refresh_from_db()
    assert target.ended_at is None and is_signed_in(theirs)


def test_ending_the_current_session_from_the_list_signs_this_browser_out(resident: Any) -> None:
    laptop = sign_in(browser(), resident.email)
    current = record_of(laptop)
    response = laptop.post(f"/compte/sessions/{current.pk}/deconnecter/")
    assert response.status_code == 302 and response["Location"] == "/"
    current.refresh_from_db()
    assert current.ended_at is not None
    assert not is_signed_in(laptop)


def test_sign_out_everywhere_else_keeps_this_browser(resident: Any, rp: Any) -> None:
    laptop = sign_in(browser(FIREFOX), resident.email)
    phone = sign_in(browser(IPHONE), resident.email)
    tablet = sign_in(browser(ANDROID), resident.email)
    phone_tokens = tokens_for(phone, rp)
    response = laptop.post("/compte/sessions/deconnecter-partout/", {"keep_current": "1"}, follow=True)
    assert "2 autres sessions ont été déconnectées." in response.content.decode()
    assert is_signed_in(laptop)
    assert not is_signed_in(phone) and not is_signed_in(tablet)
    assert refresh(rp, phone_tokens["refresh_token"]).status_code == 400
    assert list(BrowserSession.objects.filter(ended_at__isnull=True)) == [record_of(laptop)]
    event = AuditEvent.objects.get(event="session.ended_all")
    assert event.data == {"count": 2, "kept_current": True} and event.acting_user_id == resident.pk


def test_sign_out_everywhere_includes_this_browser(resident: Any) -> None:
    laptop = sign_in(browser(FIREFOX), resident.email)
    phone = sign_in(browser(IPHONE), resident.email)
    response = laptop.post("/compte/sessions/deconnecter-partout/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert not is_signed_in(laptop) and not is_signed_in(phone)
    assert not BrowserSession.objects.filter(ended_at__isnull=True).exists()
    assert set(BrowserSession.objects.values_list("end_reason", flat=True)) == {"sign_out_everywhere"}
    assert AuditEvent.objects.get(event="session.ended_all").data == {"count": 2, "kept_current": False}


@pytest.mark.parametrize("language", ["fr", "en"])
def test_sessions_page_is_translated(resident: Any, language: str) -> None:
    laptop = sign_in(browser(HTTP_ACCEPT_LANGUAGE=language), resident.email)
    html = laptop.get("/compte/sessions/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    expected = "Se déconnecter partout" if language == "fr" else "Sign out everywhere"
    assert expected in html
