"""Operators watching partners (docs/operators.md, "Watching partners"): the per-partner numbers
counted in aggregate over messages written and relayed by the real outbox, the health check
bounded against a partner that never answers, replay from the admin and the command, and the
staff gates (MFA session for the page, sudo mode for replay and health check)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Q
from django.test import Client as BrowserClient
from django.utils import timezone

from connectors import monitoring
from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from connectors.services import outbox_enqueue, partner_connector_configure
from identity.models import AuditEvent, User
from tests.conftest import clear_test_caches, open_session
from tests.connectors.conftest import library_config
from tests.connectors.form_handler import HTTP_FORM_POST

pytestmark = pytest.mark.django_db

PAGE = "/admin/connectors/outboxmessage/partenaires/"


def _enqueue(url: str, key: str, partner: str, **kwargs: Any) -> OutboxMessage:
    with transaction.atomic():
        return outbox_enqueue(
            kind=HTTP_FORM_POST,
            destination=url,
            payload={"fields": {"n": key}},
            idempotency_key=key,
            partner=partner,
            **kwargs,
        )


@pytest.fixture
def traffic(partner: Any) -> dict[str, Any]:
    """client-1: 2 delivered, 1 dead letter (refused, 400), 2 failing (503), 1 not yet due;
    client-2: 1 failing (unreachable). All through outbox_enqueue and relay_once."""
    url = partner.url
    partner.status = 200
    for key in ("a1", "a2"):
        _enqueue(url, key, "client-1")
    relay_once()
    partner.status = 400
    dead = _enqueue(url, "b1", "client-1")
    relay_once()
    partner.status = 503
    failing = [_enqueue(url, key, "client-1") for key in ("b2", "b3")]
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    _enqueue(unreachable, "c1", "client-2")
    relay_once()
    later = _enqueue(url, "b4", "client-1", not_before=timezone.now() + timedelta(hours=1))
    _enqueue(url, "internal", "")  # no partner: not on the operators' table
    return {"dead": dead, "failing": failing, "later": later}


def test_the_numbers_per_partner_are_exact(traffic, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        rows = {row.partner: row for row in monitoring.partner_rows()}
    assert set(rows) == {"client-1", "client-2"}
    first = rows["client-1"]
    assert (first.pending, first.failing, first.dead, first.delivered) == (3, 2, 1, 2)
    assert first.error_types == {"HTTP 503": 2}
    oldest = min(message.created_at for message in [*traffic["failing"], traffic["later"]])
    assert first.oldest_pending_at == oldest
    second = rows["client-2"]
    assert (second.pending, second.failing, second.dead, second.delivered) == (1, 1, 0, 0)
    assert second.error_types == {"unreachable": 1}
    assert first.connectors == [] and second.connectors == []


def test_the_query_count_does_not_grow_with_the_messages(traffic, partner, django_assert_max_num_queries):
    for index in range(30):
        _enqueue(partner.url, f"more-{index}", f"client-{index % 3}")
    with django_assert_max_num_queries(4):
        rows = {row.partner: row for row in monitoring.partner_rows()}
    assert rows["client-1"].pending == 3 + 10


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser("ops@example.org", "a long operator passphrase")


def test_the_admin_page_shows_each_partner(staff, traffic):
    browser = open_session(BrowserClient(), staff)
    response = browser.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "client-1" in page and "client-2" in page and "HTTP 503" in page and "unreachable" in page


def test_replaying_from_the_admin_puts_dead_letters_back(staff, traffic):
    browser = open_session(BrowserClient(), staff)
    response = browser.post(PAGE, {"do": "replay", "partner": "client-1", "dead_only": "1"})
    assert response.status_code == 302
    dead = OutboxMessage.objects.get(pk=traffic["dead"].pk)
    assert (dead.status, dead.attempts, dead.last_error) == ("pending", 0, "")
    assert dead.next_attempt_at <= timezone.now()
    # --dead-only: the failing messages keep their backoff.
    assert all(m.next_attempt_at > timezone.now() for m in OutboxMessage.objects.filter(key_in(traffic)))
    assert AuditEvent.objects.filter(event="outbox.replayed", client_id="client-1").exists()


def key_in(traffic: dict[str, Any]) -> Q:
    return Q(pk__in=[m.pk for m in traffic["failing"]])


def test_the_outbox_changelist_replay_action_needs_sudo_mode(staff, traffic):
    stale = open_session(BrowserClient(), staff, age=3600)
    data = {"action": "replay", "_selected_action": [str(traffic["dead"].pk)]}
    response = stale.post("/admin/connectors/outboxmessage/", data)
    assert response.status_code == 302 and "/admin/" not in response["Location"]
    assert OutboxMessage.objects.get(pk=traffic["dead"].pk).status == "dead"
    fresh = open_session(BrowserClient(), staff)
    fresh.post("/admin/connectors/outboxmessage/", data)
    replayed = OutboxMessage.objects.get(pk=traffic["dead"].pk)
    assert (replayed.status, replayed.attempts) == ("pending", 0)


def test_replay_and_health_need_sudo_mode(staff, traffic):
    stale = open_session(BrowserClient(), staff, age=3600)
    assert stale.get(PAGE).status_code == 200  # reading is fine
    response = stale.post(PAGE, {"do": "replay", "partner": "client-1"})
    assert response.status_code == 302 and "/admin/" not in response["Location"]
    assert OutboxMessage.objects.get(pk=traffic["dead"].pk).status == "dead"


def test_the_page_is_refused_to_residents_and_to_staff_without_a_second_factor(staff, resident, traffic):
    resident_browser = open_session(BrowserClient(), resident)
    assert resident_browser.get(PAGE).status_code in (302, 403)
    assert resident_browser.post(PAGE, {"do": "replay", "partner": "client-1"}).status_code in (302, 403)
    password_only = open_session(BrowserClient(), staff, amr=["pwd"])
    response = password_only.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    password_only.post(PAGE, {"do": "replay", "partner": "client-1"})
    assert OutboxMessage.objects.get(pk=traffic["dead"].pk).status == "dead"
    assert BrowserClient().get(PAGE).status_code == 302


def test_the_replay_command(traffic):
    out = StringIO()
    call_command("outbox_replay", "--partner", "client-1", stdout=out)
    assert "3 message(s)" in out.getvalue()  # the dead letter and the two failing ones
    dead = OutboxMessage.objects.get(pk=traffic["dead"].pk)
    assert (dead.status, dead.attempts) == ("pending", 0)
    for message in traffic["failing"]:
        message.refresh_from_db()
        assert message.next_attempt_at <= timezone.now() and message.attempts == 1
    later = OutboxMessage.objects.get(pk=traffic["later"].pk)
    assert later.next_attempt_at > timezone.now()  # never failed: left alone


def test_the_replay_command_by_kind_and_dead_only(traffic):
    call_command("outbox_replay", "--partner", "client-1", "--kind", "other.kind", stdout=StringIO())
    assert OutboxMessage.objects.get(pk=traffic["dead"].pk).status == "dead"
    call_command("outbox_replay", "--partner", "client-1", "--dead-only", stdout=StringIO())
    assert OutboxMessage.objects.get(pk=traffic["dead"].pk).status == "pending"
    assert all(m.next_attempt_at > timezone.now() for m in OutboxMessage.objects.filter(key_in(traffic)))


def test_the_replay_command_refuses_an_unknown_partner(traffic):
    with pytest.raises(CommandError):
        call_command("outbox_replay", "--partner", "nobody", stdout=StringIO())


def test_the_status_command_prints_the_table(traffic):
    out = StringIO()
    call_command("connectors_status", stdout=out)
    lines = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[1:]}
    assert lines["client-1"][1] == "3"
    assert lines["client-1"][3:6] == ["2", "1", "2"]
    assert lines["client-2"][1] == "1"


# --- health ------------------------------------------------------------------------------------


@pytest.fixture
def silent_partner() -> Iterator[int]:
    """A real socket that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def silent_library(library_client: Any, library_sim: Any, silent_partner: int) -> Any:
    clear_test_caches()
    return partner_connector_configure(
        client=library_client.client,
        kind="library",
        label="Bibliothèques muettes",
        config=library_config(library_sim, port=silent_partner, connect_timeout=3.0, read_timeout=4.0),
        secrets={"login_password": library_sim.login_password},
    )


def test_the_health_check_is_bounded_against_a_silent_partner(silent_library):
    started = time.monotonic()
    result = monitoring.health_check(silent_library, timeout=0.5)
    assert time.monotonic() - started < 2
    assert (result.ok, result.detail) == (False, "timeout")
    assert monitoring.cached_health(silent_library) == result


def test_the_page_never_asks_the_partner_and_the_check_needs_sudo(staff, silent_library):
    browser = open_session(BrowserClient(), staff)
    started = time.monotonic()
    page = browser.get(PAGE).content.decode()
    assert time.monotonic() - started < 2
    assert "non vérifié récemment" in page
    stale = open_session(BrowserClient(), staff, age=3600)
    stale.post(PAGE, {"do": "health", "connector": str(silent_library.pk)})
    assert monitoring.cached_health(silent_library) is None
    started = time.monotonic()
    response = browser.post(PAGE, {"do": "health", "connector": str(silent_library.pk)}, follow=True)
    assert time.monotonic() - started < monitoring.HEALTH_CHECK_TIMEOUT_SECONDS + 2
    assert "ne répond pas" in response.content.decode()
    assert monitoring.cached_health(silent_library) is not None


def test_the_health_check_of_a_partner_that_answers(library):
    clear_test_caches()
    result = monitoring.health_check(library)
    assert result.ok and result.detail == "online"
    rows = {row.partner: row for row in monitoring.partner_rows()}
    (entry,) = rows[library.client.client_id].connectors
    assert entry.health == result


def test_the_outbox_list_links_to_the_partners_page(staff, traffic):
    browser = open_session(BrowserClient(), staff)
    assert PAGE in browser.get("/admin/connectors/outboxmessage/").content.decode()
    english = browser.get(PAGE, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Partners: queues and connector health" in english
