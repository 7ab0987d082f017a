"""The DPO's console and REST API: access, search, exports, statistics, register, verification, audit."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test import Client as BrowserClient
from django.utils import timezone

from consent import merkle
from consent.dpo import selectors as dpo_selectors
from consent.dpo.selectors import _csv_safe
from consent.models import LedgerEvent
from consent.receipts import receipt_verify
from consent.services import browser_subject_register, consent_record, subject_link_browser, tree_head_sign
from identity.models import AuditEvent, User
from identity.oidc.sharing import purpose_for_client_scopes
from tests.consent_api.conftest import audit_reads

PROBLEM = "application/problem+json"
BROWSING = "personalisation-browsing"
DECLARED = "personalisation-declared"
NEWS = "service-news-email"


@pytest.fixture
def ledger(make_resident: Any, partner: Any, signing_keys: Any) -> dict[str, Any]:
    """Two residents' decisions and one anonymous browser's."""
    alice, bob = make_resident("alice@example.org"), make_resident("bob@example.org")
    events = {
        "alice_given": consent_record(
            user=alice, purpose_code=BROWSING, event_type="given", collection_method="web_form"
        ),
        "alice_news": consent_record(
            user=alice, purpose_code=NEWS, event_type="refused", collection_method="web_form"
        ),
        "bob_given": consent_record(
            user=bob, purpose_code=BROWSING, event_type="given", collection_method="web_form"
        ),
        "bob_withdrawn": consent_record(
            user=bob, purpose_code=BROWSING, event_type="withdrawn", collection_method="web_form"
        ),
        "browser_refused": consent_record(
            browser_id=str(uuid.uuid4()),
            purpose_code=BROWSING,
            event_type="refused",
            collection_method="cookie_widget",
            details={"collection_point": {"client_id": partner.client_id}},
        ),
        "alice_declared": consent_record(
            user=alice,
            purpose_code=DECLARED,
            event_type="given",
            collection_method="web_form",
            details={"note": "formulaire papier n° 42"},
        ),
    }
    return {"alice": alice, "bob": bob, "events": events}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:400]
    assert response["Content-Type"].startswith(PROBLEM)
    return response.json()


# --- access --------------------------------------------------------------------------------------

CONSOLE = ["/dpo/", "/dpo/statistiques/", "/dpo/registre/", "/dpo/verification/"]
API = ["/dpo/api/v1/events", "/dpo/api/v1/stats", "/dpo/api/v1/register", "/dpo/api/v1/tree-head"]


def test_visitors_are_sent_to_sign_in_and_residents_refused(make_resident: Any, db: Any) -> None:
    anonymous = BrowserClient()
    for path in CONSOLE:
        response = anonymous.get(path)
        assert response.status_code == 302 and "/connexion/" in response["Location"], path
    for path in API:
        assert_problem(anonymous.get(path), 403)
    assert_problem(anonymous.post("/dpo/api/v1/verify"), 403)

    resident = BrowserClient()
    resident.force_login(make_resident())
    staff_user = make_resident("agent@nantesmetropole.fr")
    staff_user.is_staff = True
    staff_user.save(update_fields=["is_staff"])
    staff = BrowserClient()
    staff.force_login(staff_user)
    for http in (resident, staff):
        for path in CONSOLE:
            assert http.get(path).status_code == 403, path
        for path in API:
            assert_problem(http.get(path), 403)
        assert_problem(http.post("/dpo/api/v1/tree-head"), 403)


def test_the_dpo_gets_every_page(dpo_http: BrowserClient, ledger: Any) -> None:
    for path in CONSOLE:
        response = dpo_http.get(path)
        assert response.status_code == 200, path
        assert "Content-Security-Policy" in response
    for path in ["/dpo/api/v1/events", "/dpo/api/v1/stats", "/dpo/api/v1/register"]:
        assert dpo_http.get(path).status_code == 200, path


def test_a_dpo_who_lost_staff_status_is_refused(dpo: Any, dpo_http: BrowserClient) -> None:
    dpo.is_staff = False
    dpo.save(update_fields=["is_staff"])
    assert dpo_http.get("/dpo/").status_code == 403


def test_create_dpo_command(db: Any, make_resident: Any) -> None:
    out = io.StringIO()
    call_command("create_dpo", "--email", "New.DPO@NantesMetropole.fr", stdout=out)
    user = User.objects.get(email="new.dpo@nantesmetropole.fr")
    assert user.is_staff and user.groups.filter(name="dpo").exists()
    assert not user.has_usable_password()
    assert AuditEvent.objects.filter(event="dpo.role_granted", subject_user_id=user.pk).exists()

    existing = make_resident("existing@nantesmetropole.fr")
    call_command("create_dpo", "--email", existing.email, stdout=io.StringIO())
    existing.refresh_from_db()
    assert existing.is_staff and existing.has_usable_password()
    call_command("create_dpo", "--email", existing.email, "--remove", stdout=io.StringIO())
    assert not existing.groups.filter(name="dpo").exists()
    assert Group.objects.filter(name="dpo").count() == 1


# --- search ----------------------------------------------------------------------------------------


def test_search_by_resident_returns_their_events_and_is_audited(
    dpo: Any, dpo_http: BrowserClient, ledger: Any
) -> None:
    response = dpo_http.get("/dpo/api/v1/events", {"user_email": "ALICE@example.org"})
    assert response.status_code == 200
    body = response.json()
    ids = {row["id"] for row in body["results"]}
    events = ledger["events"]
    assert ids == {str(events[k].id) for k in ("alice_given", "alice_news", "alice_declared")}
    assert body["resident_found"] is True
    row = body["results"][0]
    assert {"id", "seq", "event_type", "subject", "purpose", "occurred_at", "links"} <= set(row)
    assert "alice@example.org" not in response.content.decode()

    reads = audit_reads(acting_user_id=dpo.pk)
    assert len(reads) == 1
    assert reads[0].subject_user_id == ledger["alice"].pk
    assert reads[0].data["view"] == "api_events_search"
    assert "alice" not in json.dumps(reads[0].data).lower()


def test_console_search_by_resident_is_audited(dpo: Any, dpo_http: BrowserClient, ledger: Any) -> None:
    response = dpo_http.get("/dpo/", {"user_email": "bob@example.org"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "2 événements" in page
    assert str(ledger["events"]["bob_given"].seq) in page
    assert audit_reads(acting_user_id=dpo.pk, subject_user_id=ledger["bob"].pk)


def test_the_console_keeps_email_addresses_out_of_urls(
    dpo: Any, dpo_http: BrowserClient, ledger: Any
) -> None:
    response = dpo_http.post("/dpo/", {"user_email": "alice@example.org", "purpose": BROWSING})
    assert response.status_code == 303
    location = response["Location"]
    assert "alice" not in location and f"resident={ledger['alice'].pk}" in location
    page = dpo_http.get(location)
    html = page.content.decode()
    assert "1 événement" in html
    assert f"export.csv?resident={ledger['alice'].pk}" in html.replace("&amp;", "&")
    reads = audit_reads(acting_user_id=dpo.pk)
    assert len(reads) == 1 and reads[0].subject_user_id == ledger["alice"].pk  # logged once, on the read
    # An unknown address is answered directly: no redirect carrying it.
    unknown = dpo_http.post("/dpo/", {"user_email": "nobody@example.org"})
    assert unknown.status_code == 200
    assert "Aucun compte ne correspond" in unknown.content.decode()


def test_search_for_an_unknown_address_finds_nothing(dpo_http: BrowserClient, ledger: Any) -> None:
    body = dpo_http.get("/dpo/api/v1/events", {"user_email": "nobody@example.org"}).json()
    assert body["count"] == 0 and body["resident_found"] is False


def test_filters_by_purpose_partner_type_and_period(
    dpo_http: BrowserClient, ledger: Any, partner: Any
) -> None:
    events = ledger["events"]

    def ids(**params: str) -> set[str]:
        response = dpo_http.get("/dpo/api/v1/events", params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(purpose=NEWS) == {str(events["alice_news"].id)}
    assert ids(purpose=BROWSING, type="withdrawn") == {str(events["bob_withdrawn"].id)}
    today = timezone.localdate()
    assert len(ids(**{"from": today.isoformat(), "to": today.isoformat()})) == len(events)
    assert ids(to=(today - timedelta(days=1)).isoformat()) == set()
    assert ids(**{"from": (today + timedelta(days=1)).isoformat()}) == set()
    # Partner filter: the sharing purpose of a partner carries its client id.
    sharing = purpose_for_client_scopes(client=partner, scopes="openid email")
    shared = consent_record(
        user=ledger["alice"], purpose_code=sharing.code, event_type="given", collection_method="oidc_consent"
    )
    assert ids(partner=partner.client_id) == {str(shared.id)}


@pytest.mark.parametrize(
    "params",
    [
        {"user_email": "not-an-email"},
        {"purpose": "no-such-purpose"},
        {"partner": "no-such-partner"},
        {"type": "deleted"},
        {"from": "2025-13-01"},
        {"from": "yesterday"},
        {"from": "2025-02-01", "to": "2025-01-01"},
        {"page": "zero"},
        {"page": "0"},
        {"resident": "not-a-uuid"},
        {"resident": "00000000-0000-4000-8000-000000000000"},
        {"resident": "00000000-0000-4000-8000-000000000000", "user_email": "a@example.org"},
    ],
)
def test_bad_search_parameters_are_problems(
    dpo_http: BrowserClient, ledger: Any, params: dict[str, str]
) -> None:
    body = assert_problem(dpo_http.get("/dpo/api/v1/events", params), 400)
    assert body["code"] == "invalid_parameters"
    assert set(body["errors"]) <= {
        "user_email",
        "resident",
        "purpose",
        "partner",
        "type",
        "from",
        "to",
        "page",
    }
    console = dpo_http.get("/dpo/", params)
    assert console.status_code == 400
    assert 'role="alert"' in console.content.decode()


def test_pagination(
    dpo_http: BrowserClient, ledger: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dpo_selectors, "PAGE_SIZE", 4)
    first = dpo_http.get("/dpo/api/v1/events").json()
    assert first["count"] == 6 and first["pages"] == 2 and len(first["results"]) == 4
    assert first["next"].endswith("page=2")
    second = dpo_http.get(first["next"]).json()
    assert len(second["results"]) == 2 and second["next"] is None
    assert_problem(dpo_http.get("/dpo/api/v1/events", {"page": "3"}), 404)


# --- exports -----------------------------------------------------------------------------------------


def test_csv_export_of_a_search(dpo: Any, dpo_http: BrowserClient, ledger: Any) -> None:
    response = dpo_http.get("/dpo/export.csv", {"user_email": "alice@example.org"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    events = ledger["events"]
    assert [row["id"] for row in rows] == [
        str(events[k].id) for k in ("alice_given", "alice_news", "alice_declared")
    ]
    assert rows[1]["event_type"] == "refused" and rows[1]["purpose"] == NEWS
    assert rows[2]["has_details"] == "True"
    assert "formulaire papier" not in text  # encrypted details are not exported
    read = audit_reads(acting_user_id=dpo.pk)[-1]
    assert read.data["view"] == "export_csv" and read.subject_user_id == ledger["alice"].pk
    assert read.data["count"] == 3


def test_json_export_of_a_search(dpo: Any, dpo_http: BrowserClient, ledger: Any) -> None:
    response = dpo_http.get("/dpo/export.json", {"purpose": BROWSING})
    assert response.status_code == 200
    document = response.json()
    assert document["count"] == 4
    assert document["filters"] == {"purpose": BROWSING}
    assert {row["event_type"] for row in document["events"]} == {"given", "withdrawn", "refused"}
    assert all(row["purpose"] == BROWSING for row in document["events"])
    read = audit_reads(acting_user_id=dpo.pk)[-1]
    assert read.data["view"] == "export_json" and read.subject_user_id is None


def test_csv_cells_cannot_carry_formulas() -> None:
    assert _csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _csv_safe("abc") == "abc"


# --- event detail, receipt, proof --------------------------------------------------------------------


def test_event_detail_shows_decrypted_details_and_is_audited(
    dpo: Any, dpo_http: BrowserClient, ledger: Any
) -> None:
    event = ledger["events"]["alice_declared"]
    page = dpo_http.get(f"/dpo/evenements/{event.id}/")
    assert page.status_code == 200
    assert "formulaire papier n° 42" in page.content.decode()
    api = dpo_http.get(f"/dpo/api/v1/events/{event.id}").json()
    assert api["details"] == {"note": "formulaire papier n° 42"}
    reads = audit_reads(acting_user_id=dpo.pk, subject_user_id=ledger["alice"].pk)
    assert [read.data["view"] for read in reads] == ["event_detail", "api_event_detail"]
    assert all(read.data["event"] == str(event.id) for read in reads)
    assert "formulaire" not in json.dumps([read.data for read in reads])
    assert dpo_http.get(f"/dpo/evenements/{uuid.uuid4()}/").status_code == 404
    assert_problem(dpo_http.get(f"/dpo/api/v1/events/{uuid.uuid4()}"), 404)


def test_receipt_and_inclusion_proof(dpo: Any, dpo_http: BrowserClient, ledger: Any) -> None:
    event = ledger["events"]["bob_given"]
    body = assert_problem(dpo_http.get(f"/dpo/api/v1/events/{event.id}/proof"), 409)
    assert body["code"] == "no_tree_head"

    receipt = dpo_http.get(f"/dpo/evenements/{event.id}/recu.jws")
    assert receipt.status_code == 200
    assert receipt_verify(receipt.content.decode())["jti"] == str(event.id)

    signed = dpo_http.post("/dpo/api/v1/tree-head")
    assert signed.status_code == 201
    head = signed.json()
    assert head["tree_size"] == LedgerEvent.objects.count()
    assert dpo_http.get("/dpo/api/v1/tree-head").json()["id"] == head["id"]

    proof = dpo_http.get(f"/dpo/api/v1/events/{event.id}/proof").json()
    leaf = merkle.leaf_hash(proof["entry"].encode())
    assert leaf.hex() == proof["leaf_hash"]
    path = [bytes.fromhex(digest) for digest in proof["inclusion_path"]]
    root = bytes.fromhex(proof["root_hash"])
    assert merkle.verify_inclusion(leaf, proof["leaf_index"], proof["tree_size"], path, root)
    assert proof["root_hash"] == head["root_hash"]
    download = dpo_http.get(f"/dpo/evenements/{event.id}/preuve.json")
    assert download.status_code == 200 and download.json()["leaf_index"] == event.seq
    views = [
        read.data["view"] for read in audit_reads(acting_user_id=dpo.pk, subject_user_id=ledger["bob"].pk)
    ]
    assert views == ["receipt", "api_proof", "proof"]


# --- statistics --------------------------------------------------------------------------------------


def test_statistics_count_grants_refusals_and_withdrawals(dpo_http: BrowserClient, ledger: Any) -> None:
    today = timezone.localdate().isoformat()
    response = dpo_http.get(
        "/dpo/api/v1/stats", {"purpose": BROWSING, "from": today, "to": today, "bucket": "day"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["bucket"] == "day"
    [stats] = body["purposes"]
    assert stats["code"] == BROWSING
    assert stats["totals"] == {"grants": 2, "refusals": 1, "withdrawals": 1, "expiries": 0}
    assert stats["buckets"] == [{"start": today, "grants": 2, "refusals": 1, "withdrawals": 1, "expiries": 0}]

    weekly = dpo_http.get("/dpo/api/v1/stats", {"bucket": "week"}).json()
    assert len(weekly["purposes"][0]["buckets"]) == 12
    codes = {item["code"] for item in weekly["purposes"]}
    assert codes == {BROWSING, NEWS, DECLARED}
    news = next(item for item in weekly["purposes"] if item["code"] == NEWS)
    assert news["totals"]["refusals"] == 1 and news["totals"]["grants"] == 0


def test_statistics_leave_out_copies_made_at_sign_in(dpo_http: BrowserClient, ledger: Any) -> None:
    browser_id = str(uuid.uuid4())
    secret = browser_subject_register(browser_id=browser_id)
    consent_record(
        browser_id=browser_id, purpose_code=BROWSING, event_type="given", collection_method="cookie_widget"
    )
    assert subject_link_browser(browser_id=browser_id, browser_secret=secret, user=ledger["bob"])
    today = timezone.localdate().isoformat()
    stats = dpo_http.get("/dpo/api/v1/stats", {"purpose": BROWSING, "from": today, "to": today}).json()
    assert stats["purposes"][0]["totals"]["grants"] == 3  # 2 + the browser's, not its copy


def test_statistics_page_draws_charts_with_a_data_table(dpo_http: BrowserClient, ledger: Any) -> None:
    today = timezone.localdate().isoformat()
    page = dpo_http.get(
        "/dpo/statistiques/", {"purpose": BROWSING, "bucket": "day", "from": today, "to": today}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert '<svg viewBox="0 0 720 260" role="img"' in html
    assert html.count("<rect ") >= 3
    assert "<table" in html and '<th scope="row">' in html
    assert "style=" not in html  # strict CSP: no inline style


@pytest.mark.parametrize(
    "params",
    [
        {"bucket": "year"},
        {"purpose": "nope"},
        {"from": "2025-02-30"},
        {"from": "2025-03-01", "to": "2025-01-01"},
        {"bucket": "day", "from": "2020-01-01", "to": "2025-01-01"},
    ],
)
def test_bad_statistics_parameters_are_problems(
    dpo_http: BrowserClient, db: Any, params: dict[str, str]
) -> None:
    assert assert_problem(dpo_http.get("/dpo/api/v1/stats", params), 400)["code"] == "invalid_parameters"
    assert dpo_http.get("/dpo/statistiques/", params).status_code == 400


# --- register ----------------------------------------------------------------------------------------


def test_register_of_processing(dpo_http: BrowserClient, db: Any) -> None:
    body = dpo_http.get("/dpo/api/v1/register").json()
    assert body["controller"]["name"] == "Nantes Métropole"
    assert body["dpo"]["email"]
    assert body["security_measures"]
    codes = {row["code"] for row in body["processing"]}
    assert {BROWSING, DECLARED, NEWS, "audience-measurement"} <= codes
    for row in body["processing"]:
        for key in (
            "title",
            "description",
            "lawful_basis",
            "data_categories",
            "recipients",
            "retention_days",
            "data_subjects",
            "third_country_transfers",
            "requires_consent",
        ):
            assert key in row, key
    audience = next(row for row in body["processing"] if row["code"] == "audience-measurement")
    assert audience["lawful_basis"]["gdpr"] == "Art. 6(1)(e)" and audience["requires_consent"] is False
    english = dpo_http.get("/dpo/api/v1/register", {"lang": "en"}).json()
    assert (
        next(r for r in english["processing"] if r["code"] == NEWS)["title"]
        == "Receive service news by email"
    )
    assert_problem(dpo_http.get("/dpo/api/v1/register", {"lang": "de"}), 400)
    page = dpo_http.get("/dpo/registre/").content.decode()
    assert "Registre des activités de traitement" in page and "consent/dpo.css" in page


# --- verification ------------------------------------------------------------------------------------


def _tamper(event: LedgerEvent) -> None:
    """Alter one row behind the application's back (only the table owner can)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE consent_ledgerevent DISABLE TRIGGER consent_ledgerevent_append_only")
        else:
            cursor.execute("DROP TRIGGER consent_ledgerevent_no_update")
        cursor.execute("UPDATE consent_ledgerevent SET event_type = 'given' WHERE seq = %s", [event.seq])


def test_verification_passes_then_names_a_tampered_event(
    dpo: Any, dpo_http: BrowserClient, ledger: Any
) -> None:
    tree_head_sign()
    ok = dpo_http.post("/dpo/api/v1/verify").json()
    assert ok["ok"] is True and ok["size"] == 6 and ok["problems"] == []
    page = dpo_http.post("/dpo/verification/").content.decode()
    assert "Registre intègre" in page

    target = ledger["events"]["bob_withdrawn"]
    _tamper(target)
    failed = dpo_http.post("/dpo/api/v1/verify").json()
    assert failed["ok"] is False
    assert failed["problems"][0]["seq"] == target.seq
    assert failed["problems"][0]["kind"] == "altered"
    page = dpo_http.post("/dpo/verification/").content.decode()
    assert "Registre altéré" in page and f"event #{target.seq}" in page
    assert AuditEvent.objects.filter(event="dpo.ledger_verified", acting_user_id=dpo.pk).count() == 4


def test_signing_a_tree_head_from_the_console(dpo_http: BrowserClient, ledger: Any) -> None:
    response = dpo_http.post("/dpo/verification/signer/", follow=True)
    assert response.status_code == 200
    assert "signée pour 6 événements" in response.content.decode()
    assert dpo_http.get("/dpo/verification/signer/").status_code == 405
