# ruff: noqa: F811  (fixtures imported from tests/consent_api are parameters here)
"""Issue 9, finding 10, same class, on the write side: recording a consent, attaching a browser,
the lapsed-consent job, the resident's export and erasure read the ledger head row and events
through the ORM; a malformed head row or event made them fail with a 500, or worse, extend the
ledger over a corrupted frontier (whose garbage a later tree head would sign).

Rows are altered as in tests/security/test_ledger_tampering.py (raw SQL, append-only triggers
disabled or dropped). A write over a malformed head (or an attach over a malformed event) must
write nothing, be audited with the position only, and answer: the consent screen a readable
page (nothing shared), the cookie API an RFC 7807 problem `urn:cum:problem:ledger_tampered`
(503). The export keeps working and names the unreadable positions; erasure is all or nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client as BrowserClient
from oauth2_provider.models import get_grant_model

from consent import ledger as merkle_log
from consent import merkle
from consent.api.cookie import cookie_link_ticket_issue
from consent.ledger import LedgerTampered
from consent.models import ConsentState, LedgerEvent, Subject
from consent.rights import rights_erase, rights_export
from consent.services import (
    browser_subject_register,
    consent_expire_lapsed,
    consent_record,
    ledger_integrate,
    subject_link_browser,
)
from identity.models import AuditEvent
from tests.consent.test_ledger_integrity import PURPOSES
from tests.consent_api.conftest import PARTNER_ORIGIN, catalogue, partner, post_choices  # noqa: F401
from tests.oidc.conftest import is_consent_page
from tests.security.test_ledger_tampering import EVENTS, TARGET, execute, ledger, unlock  # noqa: F401

pytestmark = pytest.mark.django_db

PROBLEM = "urn:cum:problem:ledger_tampered"
BROWSER = "b" * 22 + "rowser-under-test"


def _vendor() -> str:
    return connection.vendor


HEAD_CASES = [
    pytest.param("size = %s", 3, id="size-smaller"),
    pytest.param("size = %s", 12, id="size-larger"),
    # One perfect subtree like the real size 8: the frontier and root agree, the position does not.
    pytest.param("size = %s", 4, id="size-behind-the-events"),
    pytest.param("root_hash = %s", b"\x00" * 5, id="root-short"),
    pytest.param("root_hash = %s", b"\x00" * 32, id="root-altered"),
    pytest.param("frontier = %s", b"\x01" * 32, id="frontier-altered"),
    pytest.param("frontier = %s", b"\x01" * 40, id="frontier-torn"),
    *(
        [
            pytest.param("size = %s", "huit", id="size-text"),
            pytest.param("root_hash = %s", "racine", id="root-text"),
            pytest.param("frontier = %s", "frontière", id="frontier-text"),
        ]
        if _vendor() == "sqlite"
        else []
    ),
]

# Event values the ORM cannot convert or converts to something else than was written.
EVENT_CASES = {
    "sqlite": [
        pytest.param("occurred_at = %s", "hier soir", id="occurred-at-text"),
        pytest.param("valid_until = %s", "jamais", id="valid-until-text"),
        pytest.param("linked_from = %s", "rien", id="linked-from-not-a-uuid"),
        pytest.param("details_ciphertext = %s", "pas chiffré", id="details-text"),
    ],
    "postgresql": [
        pytest.param("occurred_at = 'infinity'", None, id="occurred-at-infinity"),
        pytest.param("valid_until = '4000-01-01 BC'", None, id="valid-until-far-past"),
    ],
}


def alter_head(set_clause: str, value: Any) -> None:
    execute(f"UPDATE consent_ledgerhead SET {set_clause} WHERE id = 1", [value])


def alter_event(set_clause: str, value: Any, seq: int) -> None:
    params = [value] if "%s" in set_clause else []
    execute(f"UPDATE consent_ledgerevent SET {set_clause} WHERE seq = %s", [*params, seq])


def raw_head() -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT size, root_hash, frontier FROM consent_ledgerhead WHERE id = 1")
        size, root, frontier = cursor.fetchone()

    def as_bytes(v):
        return bytes(v) if isinstance(v, bytes | memoryview) else v

    return size, as_bytes(root), as_bytes(frontier)


def counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM consent_ledgerevent")
        events = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM consent_merklenode")
        nodes = cursor.fetchone()[0]
    return {
        "events": events,
        "nodes": nodes,
        "states": ConsentState.objects.count(),
        "subjects": Subject.objects.count(),
        "head": raw_head(),
    }


def incident_audits() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event="consent.ledger_tampered"))


# --- recording a consent over a malformed head -------------------------------------------------


@pytest.mark.parametrize(("set_clause", "value"), HEAD_CASES)
def test_no_consent_is_appended_over_a_malformed_head(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    resident = ledger[0].subject.user
    alter_head(set_clause, value)
    before = counts()
    with pytest.raises(LedgerTampered) as raised:
        consent_record(
            user=resident, purpose_code=PURPOSES[0], event_type="given", collection_method="web_form"
        )
    assert "head" in str(raised.value)
    assert counts() == before  # nothing written, the head untouched


@pytest.mark.parametrize(("set_clause", "value"), HEAD_CASES[:4])
def test_the_lapsed_consent_job_appends_nothing_over_a_malformed_head(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    ConsentState.objects.update(valid_until="2000-01-01T00:00:00Z", status="given")
    alter_head(set_clause, value)
    before = counts()
    with pytest.raises(LedgerTampered):
        consent_expire_lapsed()
    assert counts() == before


def test_an_intact_head_still_appends(ledger: list[LedgerEvent]) -> None:
    event = consent_record(
        user=ledger[0].subject.user,
        purpose_code=PURPOSES[0],
        event_type="given",
        collection_method="web_form",
    )
    assert event.seq == EVENTS and raw_head()[0] == EVENTS  # pending until integrated
    assert ledger_integrate().size == EVENTS + 1 and raw_head()[0] == EVENTS + 1
    assert not incident_audits()


@pytest.mark.parametrize(("set_clause", "value"), HEAD_CASES)
def test_the_consent_screen_shows_a_readable_page_and_shares_nothing(
    ledger: list[LedgerEvent], flow: Any, resident: Any, set_clause: str, value: Any
) -> None:
    page = flow.authorize()
    assert is_consent_page(page)
    alter_head(set_clause, value)
    before = counts()
    response = flow.approve(page)
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    text = response.content.decode()
    assert "n'a pas pu être enregistré" in text and "Rien n'a été transmis" in text
    assert "Location" not in response
    assert not get_grant_model().objects.filter(user=resident).exists()  # no code issued
    assert counts() == before
    audits = incident_audits()
    assert len(audits) == 1
    assert audits[0].subject_user_id is None and audits[0].acting_user_id is None
    assert set(audits[0].data) == {"operation", "positions"}
    # A refusal that cannot be recorded is not passed off as recorded either.
    page = flow.authorize()
    response = flow.browser.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert response.status_code == 503 and "n'a pas pu être enregistré" in response.content.decode()


def test_the_consent_screen_page_is_translated(ledger: list[LedgerEvent], flow: Any) -> None:
    page = flow.authorize()
    alter_head("root_hash = %s", b"\x00" * 32)
    response = flow.browser.post(
        "/authorize/decision",
        {"pending": page.context["pending_id"], "decision": "allow"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 503
    assert "could not be recorded" in response.content.decode()


@pytest.mark.parametrize(("set_clause", "value"), HEAD_CASES)
def test_the_cookie_api_answers_a_problem_and_writes_nothing(
    ledger: list[LedgerEvent], partner: Any, set_clause: str, value: Any
) -> None:
    alter_head(set_clause, value)
    before = counts()
    response = post_choices(BrowserClient(), {"client_id": partner.client_id, "choices": {PURPOSES[1]: True}})
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"]
    body = response.json()
    assert body["type"] == PROBLEM and body["code"] == "ledger_tampered"
    assert "positions" not in body  # internal: for the DPO, not the partner
    assert before["events"] == counts()["events"] and before["head"] == counts()["head"]
    assert len(incident_audits()) == 1


# --- attaching a browser's choices over a malformed event ---------------------------------------


def _browser_with_a_choice(user_purpose: str = PURPOSES[1]) -> tuple[str, LedgerEvent]:
    secret = browser_subject_register(browser_id=BROWSER)
    assert secret
    event = consent_record(
        browser_id=BROWSER, purpose_code=user_purpose, event_type="given", collection_method="cookie_widget"
    )
    return secret, event


@pytest.mark.parametrize(("set_clause", "value"), EVENT_CASES[_vendor()])
def test_attaching_a_browser_with_a_malformed_event_writes_nothing(
    ledger: list[LedgerEvent], resident: Any, set_clause: str, value: Any
) -> None:
    secret, event = _browser_with_a_choice()
    alter_event(set_clause, value, event.seq)
    before = counts()
    with pytest.raises(LedgerTampered) as raised:
        subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=resident)
    assert event.seq in raised.value.positions
    assert counts() == before
    assert Subject.objects.get(browser_id_hash__isnull=False).user_id is None  # not linked either


@pytest.mark.parametrize(("set_clause", "value"), EVENT_CASES[_vendor()][:1])
def test_the_same_site_link_api_answers_a_problem(
    ledger: list[LedgerEvent], signed_in: BrowserClient, set_clause: str, value: Any
) -> None:
    secret, event = _browser_with_a_choice()
    alter_event(set_clause, value, event.seq)
    response = signed_in.post(
        "/consent/api/v1/cookie/link",
        data=json.dumps({"browser_id": BROWSER, "browser_secret": secret}),
        content_type="application/json",
    )
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response.json()["type"] == PROBLEM
    audits = incident_audits()
    assert len(audits) == 1 and audits[0].data["positions"] == [event.seq]


def test_attaching_a_sound_browser_still_works(ledger: list[LedgerEvent], resident: Any) -> None:
    secret, _event = _browser_with_a_choice()
    copied = subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=resident)
    assert len(copied) == 1


# --- the resident's export and erasure ------------------------------------------------------------


@pytest.mark.parametrize(("set_clause", "value"), EVENT_CASES[_vendor()])
def test_the_export_names_unreadable_positions_and_exports_the_rest(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    resident = ledger[TARGET].subject.user
    own = [event.seq for event in ledger if event.subject.user_id == resident.pk]
    alter_event(set_clause, value, TARGET)
    exported = rights_export(resident)
    json.dumps(exported)
    section = exported["sections"]["consent"]
    assert [row["leaf_index"] for row in section["ledger_events"]] == [s for s in own if s != TARGET]
    assert [row["leaf_index"] for row in section["unreadable_events"]] == [TARGET]
    assert section["unreadable_events"][0]["reason"]
    assert section["current_choices"] and section["pseudonyms"]
    assert "identity" in exported["sections"] or len(exported["sections"]) > 1


def test_the_export_reports_details_that_no_longer_decrypt(ledger: list[LedgerEvent]) -> None:
    # Event #4 carries encrypted details (every 4th); its ciphertext is swapped for event #0's,
    # with the leaf hash recomputed as a careful attacker would: the row parses, the details do not.
    target = ledger[4]
    donor = LedgerEvent.objects.get(seq=0)
    target.details_ciphertext = donor.details_ciphertext
    leaf = merkle.leaf_hash(merkle_log.event_entry_bytes(target))
    execute(
        "UPDATE consent_ledgerevent SET details_ciphertext = %s, leaf_hash = %s WHERE seq = 4",
        [bytes(donor.details_ciphertext), leaf],
    )
    section = rights_export(target.subject.user)["sections"]["consent"]
    assert 4 in [row["leaf_index"] for row in section["unreadable_events"]]


def test_an_intact_export_has_no_unreadable_events(ledger: list[LedgerEvent]) -> None:
    section = rights_export(ledger[0].subject.user)["sections"]["consent"]
    assert section["unreadable_events"] == []
    assert any(row["details"] for row in section["ledger_events"])


@pytest.mark.parametrize(("set_clause", "value"), EVENT_CASES[_vendor()])
def test_erasure_of_a_subject_with_malformed_rows_is_complete(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    resident = ledger[TARGET].subject.user
    alter_event(set_clause, value, TARGET)
    alter_head("root_hash = %s", b"\x00" * 32)  # erasure appends nothing: the head does not stop it
    report = rights_erase(resident)
    assert report.reports
    assert not Subject.objects.filter(user=resident).exists()
    erased = Subject.objects.get(pk=ledger[TARGET].subject_id)
    assert erased.wrapped_key is None and erased.key_destroyed_at is not None


@pytest.mark.parametrize(("set_clause", "value"), EVENT_CASES[_vendor()][:1])
def test_the_partner_attach_api_answers_a_problem(
    ledger: list[LedgerEvent], resident: Any, partner: Any, set_clause: str, value: Any
) -> None:
    secret = browser_subject_register(browser_id=BROWSER)
    event = consent_record(
        browser_id=BROWSER,
        purpose_code=PURPOSES[1],
        event_type="given",
        collection_method="cookie_widget",
        collected_for=partner,
    )
    ticket = cookie_link_ticket_issue(user=resident, client_id=partner.client_id, browser_id=BROWSER)
    assert ticket
    alter_event(set_clause, value, event.seq)
    before = counts()
    body = {
        "client_id": partner.client_id,
        "link_ticket": ticket,
        "browser_id": BROWSER,
        "browser_secret": secret,
    }
    response = BrowserClient().post(
        "/consent/api/v1/cookie/attach?client_id=" + partner.client_id,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_ORIGIN=PARTNER_ORIGIN,
    )
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response.json()["type"] == PROBLEM
    assert counts() == before
    assert incident_audits()[0].data == {"operation": "cookie_attach", "positions": [event.seq]}
