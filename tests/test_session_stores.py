"""Issue 14: the session stores (identity/session_stores) open a signed-in session with one write.

Both stores (`db`, and `cached_db` with whatever cache the suite runs with) behave as
Django's for everything else: the key rotation at sign-in still gives a new key and deletes
the old session (session fixation), a key already in use is never taken over, and a
collision answers the session-interrupted page, not a 500.
"""

from __future__ import annotations

import re
from importlib import import_module
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from identity.models import BrowserSession
from identity.session_stores import cached_db, db
from identity.signin import session_login
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

STORES = [db.SessionStore, cached_db.SessionStore]


def _session_statements(queries: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in queries if '"django_session"' in q["sql"]]


def test_the_configured_engine_is_ours() -> None:
    assert settings.SESSION_ENGINE in {"identity.session_stores.db", "identity.session_stores.cached_db"}


@pytest.mark.parametrize("store_class", STORES)
def test_a_new_key_is_drawn_without_reading_the_table(store_class: Any) -> None:
    store = store_class()
    with CaptureQueriesContext(connection) as queries:
        key = store._get_new_session_key()
    assert len(key) == 32 and re.fullmatch(r"[a-z0-9]{32}", key)
    assert _session_statements(queries.captured_queries) == []


@pytest.mark.parametrize("store_class", STORES)
def test_cycle_key_writes_nothing_until_the_save_then_one_insert(store_class: Any) -> None:
    store = store_class()
    store["greeting"] = "bonjour"
    store.save()  # an anonymous session with a row, as a browser may have one
    old_key = store.session_key
    assert Session.objects.filter(session_key=old_key).exists()

    with CaptureQueriesContext(connection) as queries:
        store.cycle_key()
    new_key = store.session_key
    assert new_key and new_key != old_key
    assert not Session.objects.filter(session_key=old_key).exists()  # the old session is gone
    assert not Session.objects.filter(session_key=new_key).exists()  # not written yet
    assert not [sql for sql in _session_statements(queries.captured_queries) if "INSERT" in sql]

    store["_auth_user_id"] = "someone"
    with CaptureQueriesContext(connection) as queries:
        store.save()
    writes = [
        sql for sql in _session_statements(queries.captured_queries) if "INSERT" in sql or "UPDATE" in sql
    ]
    assert len(writes) == 1 and writes[0].startswith("INSERT")

    reread = store_class(new_key)
    assert reread["greeting"] == "bonjour"  # the data kept across the rotation
    assert reread["_auth_user_id"] == "someone"

    store["more"] = 1
    with CaptureQueriesContext(connection) as queries:
        store.save()  # later saves update the row, as Django's
    writes = [
        sql for sql in _session_statements(queries.captured_queries) if "INSERT" in sql or "UPDATE" in sql
    ]
    assert len(writes) == 1 and writes[0].startswith("UPDATE")
    assert store_class(new_key)["more"] == 1


@pytest.mark.parametrize("store_class", STORES)
def test_a_key_already_in_use_is_never_taken_over(store_class: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = store_class()
    victim["_auth_user_id"] = "victim"
    victim.save()
    taken = victim.session_key

    store = store_class()
    monkeypatch.setattr(store, "_get_new_session_key", lambda: taken)
    store.cycle_key()
    store["_auth_user_id"] = "attacker"
    with pytest.raises(UpdateError):  # the middleware answers SessionInterrupted (400)
        store.save()

    assert store_class(taken)["_auth_user_id"] == "victim"
    assert Session.objects.get(session_key=taken).get_decoded()["_auth_user_id"] == "victim"


@pytest.mark.parametrize("store_class", STORES)
def test_flush_after_cycle_key_leaves_no_session(store_class: Any) -> None:
    store = store_class()
    store.cycle_key()
    pending = store.session_key
    store.flush()

    assert store.session_key is None
    assert not Session.objects.filter(session_key=pending).exists()
    store["after"] = "flush"
    store.save()  # a fresh session, created as Django creates one
    assert store.session_key not in (None, pending)
    assert store_class(store.session_key)["after"] == "flush"


def test_a_sign_in_writes_its_session_row_once(client: Client, resident: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    assert response.status_code == 302
    statements = _session_statements(queries.captured_queries)
    assert [sql.split()[0] for sql in statements] == ["INSERT"]
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    assert session["_auth_user_id"] == str(resident.pk)


def test_the_session_key_changes_at_sign_in(client: Client, resident: Any) -> None:
    """Session fixation: a session the browser held before signing in is not the one signed in."""
    client.get("/connexion/")
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["planted"] = True
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key

    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    assert response.status_code == 302
    new_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != store.session_key
    assert not Session.objects.filter(session_key=store.session_key).exists()
    assert Session.objects.filter(session_key=new_key).exists()


def test_a_collision_at_sign_in_is_a_400_not_a_500(
    client: Client, resident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = import_module(settings.SESSION_ENGINE).SessionStore()
    other["_auth_user_id"] = "someone else"
    other.save()
    monkeypatch.setattr(
        "identity.session_stores.OneWriteSignInMixin._get_new_session_key", lambda self: other.session_key
    )
    client.raise_request_exception = False

    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    assert response.status_code == 400
    assert import_module(settings.SESSION_ENGINE).SessionStore(other.session_key)["_auth_user_id"] == (
        "someone else"
    )


def test_the_browser_session_record_takes_no_savepoint_of_its_own(client: Client, resident: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    assert response.status_code == 302
    statements = [q["sql"] for q in queries.captured_queries]
    insert = next(
        i for i, sql in enumerate(statements) if sql.startswith('INSERT INTO "identity_browsersession"')
    )
    assert not statements[insert - 1].startswith("SAVEPOINT")


def test_a_failing_browser_session_record_undoes_the_sign_in(
    rf: Any, resident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its own savepoint, an error while recording the browser session still rolls back
    the whole sign-in (session_login's transaction): no last_login, no record."""

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("database gone")

    request = rf.post("/connexion/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    monkeypatch.setattr(BrowserSession.objects, "create", broken)

    with pytest.raises(RuntimeError):
        session_login(request=request, user=resident, amr=["pwd"])

    resident.refresh_from_db()
    assert resident.last_login is None
    assert not BrowserSession.objects.filter(user=resident).exists()
