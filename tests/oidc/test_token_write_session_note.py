"""The tokens' write statement notes the browser session (identity/oidc/token_writes.py with
identity.sessions.session_client_steps / session_client_settle, on PostgreSQL): the same
outcome as identity.sessions.session_client_record, which it replaces on the code and
refresh grants (OpenID Back-Channel Logout §2.7: a sign-out either sees the client or has
ended the session, and then what was just issued is revoked):

- a live session: its link to the client updated, or created on the first issuance;
- an ended session: False (the caller revokes), no link written;
- no such session: True, nothing written;
- a claim that fails (a replay, a concurrent rotation): nothing written, no lock taken;
- an error inside the statement: nothing of it stays (claim, rows, note);
- a link committed by another transaction while the statement waited for the session's
  lock (invisible to the statement's snapshot): noted again, not created twice.

On SQLite the statement does not exist: the same cases go through session_client_record."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from identity.models import BrowserSession, SessionClient
from identity.oidc import token_writes
from identity.oidc.models import AccessToken, IDToken, RefreshToken
from identity.oidc.token_writes import write_tokens
from identity.sessions import session_client_record, session_client_settle
from tests.oidc.test_token_writes import NOW, _rows, _two_live_refresh_tokens

POSTGRESQL = "connection.vendor == 'postgresql'"


def _note_with_the_write(previous: Any, sid: str, tag: str) -> tuple[bool, bool | None]:
    """A rotation of `previous` noting session `sid`: (claimed, the session still live)."""
    rows = _rows(previous.user, previous.application, previous, with_id_token=True, tag=tag)
    rows.session_sid, rows.session_client = sid, previous.application
    with transaction.atomic():
        if not write_tokens(rows):
            return False, None
        if rows.session_found is None:  # not PostgreSQL: the caller's own statements
            assert connection.vendor != "postgresql"
            return True, session_client_record(sid=sid, client=previous.application)
        return True, session_client_settle(
            found=rows.session_found, client=previous.application, using="default"
        )


def _note_alone(previous: Any, sid: str, tag: str) -> tuple[bool, bool | None]:
    """The reference: session_client_record in the transaction, as before."""
    with transaction.atomic():
        return True, session_client_record(sid=sid, client=previous.application)


def _links() -> list[tuple[Any, Any, Any, Any]]:
    return list(
        SessionClient.objects.order_by("pk").values_list(
            "session_id", "client_id", "first_issued_at", "last_issued_at"
        )
    )


@pytest.mark.parametrize("note", [_note_with_the_write, _note_alone], ids=["with-the-write", "alone"])
@pytest.mark.parametrize("case", ["linked", "first-issuance", "ended", "unknown-sid"])
def test_the_session_is_noted_as_session_client_record_notes_it(
    flow: Any, monkeypatch: pytest.MonkeyPatch, note: Any, case: str
) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    session = BrowserSession.objects.get()
    earlier = NOW - timedelta(hours=1)
    SessionClient.objects.all().update(first_issued_at=earlier, last_issued_at=earlier)
    if case == "first-issuance":
        SessionClient.objects.all().delete()
    elif case == "ended":
        BrowserSession.objects.filter(pk=session.pk).update(ended_at=NOW)
    before = _links()
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    sid = "no-such-sid" if case == "unknown-sid" else session.sid
    claimed, live = note(previous, sid, tag=case)
    assert claimed
    links = _links()
    if case == "linked":
        assert live is True
        assert links == [(session.pk, previous.application_id, earlier, NOW)]
    elif case == "first-issuance":
        assert live is True
        assert links == [(session.pk, previous.application_id, NOW, NOW)]
    elif case == "ended":
        assert live is False
        assert links == before
    else:
        assert live is True
        assert links == before


@pytest.mark.skipif(f"not ({POSTGRESQL})")
def test_one_statement_writes_the_tokens_and_the_note(flow: Any) -> None:
    from django.test.utils import CaptureQueriesContext  # noqa: PLC0415

    previous, _ = _two_live_refresh_tokens(flow)
    session = BrowserSession.objects.get()
    rows = _rows(previous.user, previous.application, previous, with_id_token=True, tag="one")
    rows.session_sid, rows.session_client = session.sid, previous.application
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert write_tokens(rows)
    assert len(queries.captured_queries) == 1, queries.captured_queries
    assert "FOR UPDATE" in queries.captured_queries[0]["sql"]
    assert rows.session_found == (session.pk, None, True)


@pytest.mark.skipif(f"not ({POSTGRESQL})")
def test_an_error_in_the_statement_leaves_nothing(flow: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    session = BrowserSession.objects.get()
    before_links = _links()
    counts = (IDToken.objects.count(), AccessToken.objects.count(), RefreshToken.objects.count())
    # The note's timestamp is not one: PostgreSQL refuses the whole statement.
    monkeypatch.setattr(
        token_writes, "session_client_params", lambda *, sid, client, using: [sid, "not a time", client.pk]
    )
    with pytest.raises(DatabaseError):
        _note_with_the_write(previous, session.sid, tag="broken")
    assert (IDToken.objects.count(), AccessToken.objects.count(), RefreshToken.objects.count()) == counts
    previous.refresh_from_db()
    assert previous.revoked is None and previous.access_token_id is not None  # not claimed
    assert _links() == before_links


def _in_thread(target: Any) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s",
            ["WITH claimed AS%"],  # the write statement (its text is cut at track_activity_query_size)
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.skipif(f"not ({POSTGRESQL})")
@pytest.mark.django_db(transaction=True)
def test_a_failed_claim_neither_locks_nor_notes(flow: Any) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    session = BrowserSession.objects.get()
    RefreshToken.objects.filter(pk=previous.pk).update(revoked=timezone.now())  # rotated meanwhile
    before_links = _links()
    rows = _rows(previous.user, previous.application, previous, with_id_token=True, tag="late")
    rows.session_sid, rows.session_client = session.sid, previous.application
    locked_elsewhere: list[bool] = []

    def lock_the_session() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            table = connection.ops.quote_name(BrowserSession._meta.db_table)
            cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [session.pk])
            locked_elsewhere.append(cursor.fetchone() is not None)

    with transaction.atomic():
        assert not write_tokens(rows)
        assert rows.session_found is None
        _in_thread(lock_the_session).join(20)  # while this transaction is still open
    assert locked_elsewhere == [True]
    assert _links() == before_links


@pytest.mark.skipif(f"not ({POSTGRESQL})")
@pytest.mark.django_db(transaction=True)
def test_a_link_committed_while_the_statement_waits_is_noted_not_created_twice(flow: Any) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    session = BrowserSession.objects.get()
    client = previous.application
    SessionClient.objects.all().delete()  # the next issuance is the first of the session
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def other_issuance() -> None:  # locks the session and creates the link, then waits
        with transaction.atomic():
            outcome["other"] = session_client_record(sid=session.sid, client=client)
            holding.set()
            assert release.wait(20)

    def this_issuance() -> None:
        rows = _rows(previous.user, client, previous, with_id_token=True, tag="waits")
        rows.session_sid, rows.session_client = session.sid, client
        with transaction.atomic():
            outcome["claimed"] = write_tokens(rows)
            outcome["found"] = rows.session_found
            outcome["live"] = session_client_settle(found=rows.session_found, client=client, using="default")

    other = _in_thread(other_issuance)
    assert holding.wait(20)
    this = _in_thread(this_issuance)
    deadline = time.monotonic() + 20
    while not _waiting_for_a_lock():
        assert time.monotonic() < deadline, "the statement never waited for the session's lock"
        time.sleep(0.05)
    release.set()
    other.join(30)
    this.join(30)
    assert outcome["other"] is True
    assert outcome["claimed"] is True and outcome["live"] is True
    # The statement saw the session (it waited for it) but not the new link: noted again.
    assert outcome["found"][0] == session.pk and outcome["found"][2] is False
    links = SessionClient.objects.filter(session=session, client=client)
    assert links.count() == 1
    link = links.get()
    assert link.last_issued_at > link.first_issued_at  # this issuance noted, after the other's
