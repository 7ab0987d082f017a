# ruff: noqa: F811  (fixtures imported from tests/consent_api are parameters here)
"""Issue 9, finding 10, same class: the DPO console, its API and the receipt endpoints read ledger
rows through the ORM, whose conversion of a malformed stored value raised (HTTP 500).

Rows and stored Merkle nodes are altered as in tests/security/test_ledger_tampering.py (raw SQL,
append-only triggers disabled or dropped). Every read must then answer without an error: an
RFC 7807 problem `urn:cum:problem:ledger_tampered` naming the position(s) for the API, a page
naming them and pointing to the verification page in the console, an export that refuses
rather than skipping rows, and never a proof or receipt built from altered storage.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client as BrowserClient

from consent import ledger as ledger_module
from consent import merkle
from consent.models import LedgerEvent, MerkleNode, Subject, TreeHead
from consent.receipts import receipt_verify
from consent.selectors import ledger_verify
from consent.services import consent_record
from identity.models import User
from tests.consent_api.conftest import PARTNER_ORIGIN, dpo, dpo_http, make_dpo, partner, post_choices  # noqa: F401
from tests.security.test_ledger_tampering import EVENTS, TARGET, execute, ledger, unlock  # noqa: F401

pytestmark = pytest.mark.django_db

PROBLEM = "urn:cum:problem:ledger_tampered"
VERIFY_PAGE = "/dpo/verification/"


def _vendor() -> str:
    return connection.vendor


# Values the ORM cannot convert (SQLite stores anything; PostgreSQL accepts infinity).
UNREADABLE_ROW = {
    "sqlite": [
        pytest.param("id = %s", "not-a-uuid", id="id-not-a-uuid"),
        pytest.param("occurred_at = %s", "hier soir", id="occurred-at-text"),
        pytest.param("valid_until = %s", "jamais", id="valid-until-text"),
        pytest.param("linked_from = %s", "rien", id="linked-from-not-a-uuid"),
        pytest.param("actor_id = CAST(X'FFFE41' AS TEXT)", None, id="actor-id-not-utf8"),
        pytest.param("seq = %s", "cinq", id="seq-text"),
        pytest.param("leaf_hash = %s", "deadbeef", id="leaf-hash-text"),
        pytest.param("details_ciphertext = %s", "pas chiffré", id="details-text"),
    ],
    "postgresql": [
        pytest.param("occurred_at = 'infinity'", None, id="occurred-at-infinity"),
        pytest.param("valid_until = '4000-01-01 BC'", None, id="valid-until-far-past"),
    ],
}
# The subset after which the event can still be found by its id.
FINDABLE_BY_ID = {
    "sqlite": [p for p in UNREADABLE_ROW["sqlite"] if p.id not in ("id-not-a-uuid",)],
    "postgresql": UNREADABLE_ROW["postgresql"],
}


def alter(set_clause: str, value: Any, seq: int = TARGET) -> None:
    params = [value] if "%s" in set_clause else []
    execute(f"UPDATE consent_ledgerevent SET {set_clause} WHERE seq = %s", [*params, seq])


def assert_tampered_problem(response: Any, position: int = TARGET) -> dict[str, Any]:
    assert response.status_code == 409, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEM and body["code"] == "ledger_tampered"
    assert position in body["positions"]
    assert f"#{position}" in body["detail"]
    assert body["verify"] == "/dpo/api/v1/verify"
    return body


def assert_tampered_page(response: Any, position: int = TARGET) -> str:
    assert response.status_code == 409, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("text/html")
    text = response.content.decode()
    assert "Registre altéré" in text
    assert f"#{position}" in text
    assert f'href="{VERIFY_PAGE}"' in text
    return text


# --- lists and exports -----------------------------------------------------------------------


@pytest.mark.parametrize(("set_clause", "value"), UNREADABLE_ROW[_vendor()])
def test_exports_refuse_a_ledger_with_an_unreadable_row(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, set_clause: str, value: Any
) -> None:
    alter(set_clause, value)
    assert_tampered_page(dpo_http.get("/dpo/export.json"))
    assert_tampered_page(dpo_http.get("/dpo/export.csv"))
    # A selection without the altered row still exports.
    other = ledger[TARGET - 1]
    response = dpo_http.get("/dpo/export.json", {"purpose": other.purpose_code, "type": other.event_type})
    if response.status_code == 200:
        assert TARGET not in [row["seq"] for row in json.loads(response.content)["events"]]
    else:
        assert_tampered_page(response)


@pytest.mark.parametrize(("set_clause", "value"), UNREADABLE_ROW[_vendor()])
def test_the_event_list_answers_a_problem_naming_the_position(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, set_clause: str, value: Any
) -> None:
    alter(set_clause, value)
    body = assert_tampered_problem(dpo_http.get("/dpo/api/v1/events"))
    assert "vérification" in body["detail"]
    assert_tampered_page(dpo_http.get("/dpo/", {"page": "1"}))


def test_an_intact_ledger_lists_and_exports(ledger: list[LedgerEvent], dpo_http: BrowserClient) -> None:
    assert dpo_http.get("/dpo/api/v1/events").json()["count"] == EVENTS
    exported = json.loads(dpo_http.get("/dpo/export.json").content)
    assert [row["seq"] for row in exported["events"]] == list(range(EVENTS))
    csv_text = b"".join(dpo_http.get("/dpo/export.csv").streaming_content).decode()
    assert len(csv_text.strip().splitlines()) == EVENTS + 1
    assert dpo_http.get("/dpo/", {"page": "1"}).status_code == 200


@pytest.mark.skipif(_vendor() != "sqlite", reason="SQLite keeps any type")
@pytest.mark.parametrize("value", [b"\xff", b"partenaire"])
def test_the_search_form_survives_a_malformed_partner_id(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, value: bytes
) -> None:
    alter("partner_client_id = %s", value)
    assert dpo_http.get("/dpo/").status_code == 200


# --- one event: detail, receipt, proof ---------------------------------------------------------


@pytest.mark.parametrize(("set_clause", "value"), FINDABLE_BY_ID[_vendor()])
def test_event_pages_of_an_unreadable_row_answer_a_clear_refusal(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, set_clause: str, value: Any
) -> None:
    event_id = ledger[TARGET].id
    alter(set_clause, value)
    for suffix in ("", "/proof", "/receipt"):
        assert_tampered_problem(dpo_http.get(f"/dpo/api/v1/events/{event_id}{suffix}"))
    for suffix in ("", "recu.jws", "preuve.json"):
        assert_tampered_page(dpo_http.get(f"/dpo/evenements/{event_id}/{suffix}"))


def test_no_receipt_or_proof_is_signed_for_an_altered_but_readable_row(
    ledger: list[LedgerEvent], dpo_http: BrowserClient
) -> None:
    """The columns no longer hash to the stored leaf: a receipt signed now would certify the
    altered decision; a proof would not verify. Both are refused."""
    target = ledger[TARGET]
    other_type = "given" if target.event_type != "given" else "refused"
    alter("event_type = %s", other_type)
    for suffix in ("/proof", "/receipt"):
        assert_tampered_problem(dpo_http.get(f"/dpo/api/v1/events/{target.id}{suffix}"))
    for suffix in ("recu.jws", "preuve.json"):
        assert_tampered_page(dpo_http.get(f"/dpo/evenements/{target.id}/{suffix}"))


def test_an_intact_event_still_has_its_pages(ledger: list[LedgerEvent], dpo_http: BrowserClient) -> None:
    event = ledger[TARGET]
    assert dpo_http.get(f"/dpo/api/v1/events/{event.id}").status_code == 200
    assert dpo_http.get(f"/dpo/evenements/{event.id}/").status_code == 200
    receipt = dpo_http.get(f"/dpo/api/v1/events/{event.id}/receipt")
    assert receipt_verify(receipt.content.decode())["jti"] == str(event.id)
    proof = dpo_http.get(f"/dpo/api/v1/events/{event.id}/proof").json()
    assert merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        bytes.fromhex(proof["root_hash"]),
    )
    assert dpo_http.get(f"/dpo/evenements/{event.id}/preuve.json").status_code == 200


# --- stored Merkle nodes -------------------------------------------------------------------------

NODE_CASES = [
    pytest.param(b"\x00", id="short"),
    pytest.param(bytes(32), id="other-hash"),
    pytest.param(b"\x01" * 40, id="long"),
    *([pytest.param("deadbeef" * 8, id="text")] if _vendor() == "sqlite" else []),
]


def _node_on_the_path(event: LedgerEvent, tree_size: int) -> tuple[int, int]:
    """A stored interior node (level >= 1) that the event's inclusion proof reads."""
    for lo, hi in merkle.inclusion_proof_ranges(event.seq, tree_size):
        for level, index in merkle.perfect_subtrees(lo, hi):
            if level >= 1:
                return level, index
    raise AssertionError("no interior node on the path")


@pytest.mark.parametrize("value", NODE_CASES)
def test_a_proof_from_an_altered_merkle_node_is_refused(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, value: Any
) -> None:
    event = ledger[0]
    level, index = _node_on_the_path(event, EVENTS)
    assert MerkleNode.objects.filter(level=level, index=index).exists()
    execute(
        'UPDATE consent_merklenode SET hash = %s WHERE level = %s AND "index" = %s', [value, level, index]
    )
    body = assert_tampered_problem(dpo_http.get(f"/dpo/api/v1/events/{event.id}/proof"), position=0)
    assert any("Merkle node" in problem for problem in body["problems"])
    text = dpo_http.get(f"/dpo/evenements/{event.id}/preuve.json")
    assert_tampered_page(text, position=0)
    # The row itself is intact: its detail and receipt are still served.
    assert dpo_http.get(f"/dpo/api/v1/events/{event.id}").status_code == 200
    assert dpo_http.get(f"/dpo/api/v1/events/{event.id}/receipt").status_code == 200


# --- the resident's and the visitor's receipts -----------------------------------------------------


@pytest.mark.parametrize(("set_clause", "value"), FINDABLE_BY_ID[_vendor()])
def test_the_residents_receipt_of_an_unreadable_row_is_not_an_error(
    ledger: list[LedgerEvent], set_clause: str, value: Any
) -> None:
    event = ledger[TARGET]
    owner = User.objects.get(pk=Subject.objects.get(pk=event.subject_id).user_id)
    http = BrowserClient()
    http.force_login(owner)
    alter(set_clause, value)
    assert http.get(f"/consent/recus/{event.id}.jws").status_code == 404


def test_the_residents_receipt_of_an_altered_row_is_not_signed(ledger: list[LedgerEvent]) -> None:
    event = ledger[TARGET]
    owner = User.objects.get(pk=Subject.objects.get(pk=event.subject_id).user_id)
    http = BrowserClient()
    http.force_login(owner)
    assert http.get(f"/consent/recus/{event.id}.jws").status_code == 200
    alter("actor_id = %s", "quelqu-un")
    assert http.get(f"/consent/recus/{event.id}.jws").status_code == 404


@pytest.fixture
def visitor(partner: Any, signing_keys: Any) -> tuple[Any, dict[str, Any]]:
    api = BrowserClient()
    body = post_choices(
        api, {"client_id": partner.client_id, "choices": {"personalisation-browsing": True}}
    ).json()
    return api, body


@pytest.mark.parametrize(
    ("set_clause", "value"),
    [p for p in FINDABLE_BY_ID[_vendor()] if p.id != "seq-text"]
    + [pytest.param("actor_type = %s", "partner", id="actor-type-altered")],
)
def test_the_visitors_receipt_of_an_unreadable_row_is_not_an_error(
    visitor: tuple[Any, dict[str, Any]], partner: Any, set_clause: str, value: Any
) -> None:
    api, body = visitor
    receipt_id = body["receipt_ids"][0]
    event = LedgerEvent.objects.get(pk=uuid.UUID(receipt_id))
    unlock()
    alter(set_clause, value, seq=event.seq)
    url = f"/consent/api/v1/cookie/receipts/{receipt_id}"
    response = api.get(
        url, {"client_id": partner.client_id, "browser_id": body["browser_id"]}, HTTP_ORIGIN=PARTNER_ORIGIN
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


# --- statistics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_clause", "value"),
    [
        *(
            [
                pytest.param("occurred_at = replace(occurred_at, ' ', 'T')", None, id="time-other-format"),
                pytest.param("occurred_at = occurred_at || 'Z'", None, id="time-suffix"),
                pytest.param(
                    "occurred_at = substr(occurred_at, 1, 10) || ' 12:61:00'", None, id="time-impossible"
                ),
                pytest.param("event_type = %s", b"given", id="type-blob"),
                pytest.param("purpose_code = %s", b"\xff", id="purpose-blob"),
            ]
            if _vendor() == "sqlite"
            else []
        ),
        pytest.param("event_type = %s", "hacked", id="type-unknown"),
    ],
)
def test_statistics_of_a_tampered_period_answer_without_an_error(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, make_resident: Any, set_clause: str, value: Any
) -> None:
    """An event not yet integrated by the sequencer is counted from its row: a value the
    application never writes there is named, not counted nor left out; a time still readable in
    another format (the verification reports it) may be counted."""
    pending = consent_record(
        user=make_resident("pending-stats@example.org"),
        purpose_code="personalisation-browsing",
        event_type="given",
        collection_method="web_form",
    )
    assert pending.seq == EVENTS
    alter(set_clause, value, seq=pending.seq)
    api = dpo_http.get("/dpo/api/v1/stats", {"bucket": "day"})
    page = dpo_http.get("/dpo/statistiques/", {"bucket": "day"})
    if set_clause.startswith("occurred_at") and "12:61" not in set_clause and api.status_code == 200:
        assert page.status_code == 200
        return
    assert_tampered_problem(api, position=pending.seq)
    assert_tampered_page(page, position=pending.seq)


def test_statistics_count_an_integrated_event_as_it_was_checked(
    ledger: list[LedgerEvent], dpo_http: BrowserClient
) -> None:
    """The integrated events are counted once, by the sequencer, after it checked each row
    (consent.models.DailyCount, issue 14): a row altered afterwards does not change the
    statistics (nor break them); the verification names it."""
    before = dpo_http.get("/dpo/api/v1/stats", {"bucket": "day"})
    assert before.status_code == 200
    alter("event_type = %s", "hacked")
    after = dpo_http.get("/dpo/api/v1/stats", {"bucket": "day"})
    assert after.status_code == 200 and after.json() == before.json()
    assert dpo_http.get("/dpo/statistiques/", {"bucket": "day"}).status_code == 200
    result = ledger_verify()
    assert not result.ok and result.first_problem is not None and result.first_problem.seq == TARGET


@pytest.mark.parametrize("value", NODE_CASES)
def test_the_verification_reports_an_altered_merkle_node(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, value: Any
) -> None:
    """Proofs are built from the stored interior nodes: the verification checks them too, so
    that the DPO sent there by a refused proof learns which node was altered."""
    level, index = _node_on_the_path(ledger[0], EVENTS)
    assert ledger_verify().ok
    execute(
        'UPDATE consent_merklenode SET hash = %s WHERE level = %s AND "index" = %s', [value, level, index]
    )
    result = ledger_verify()
    assert not result.ok
    nodes = [p for p in result.problems if p.kind == "node"]
    assert len(nodes) == 1, [p.detail for p in result.problems]
    assert f"level {level}, index {index}" in nodes[0].detail
    assert nodes[0].seq == index << level
    page = dpo_http.post("/dpo/verification/")
    assert "Registre altéré" in page.content.decode() and "Merkle node" in page.content.decode()


def test_the_verification_reports_a_missing_merkle_node(ledger: list[LedgerEvent]) -> None:
    execute('DELETE FROM consent_merklenode WHERE level = 1 AND "index" = 0')
    result = ledger_verify()
    assert [p.detail for p in result.problems if p.kind == "node"] == [
        "stored Merkle node (level 1, index 0) over events #0..#1 is missing: "
        "proofs through it would not verify"
    ]


@pytest.mark.parametrize("chunk_level", [1, 2])
@pytest.mark.parametrize(("level", "index"), [(1, 3), (2, 1), (3, 0)])
def test_every_level_of_nodes_is_checked_across_chunks(
    ledger: list[LedgerEvent], monkeypatch: pytest.MonkeyPatch, chunk_level: int, level: int, index: int
) -> None:
    """The verifier checks nodes 2**11 leaves at a time, then the levels above from the chunks'
    tops; a smaller chunk makes an 8-event ledger cross that boundary."""
    monkeypatch.setattr(ledger_module, "_NODE_CHUNK_LEVEL", chunk_level)
    assert ledger_verify().ok
    execute(
        'UPDATE consent_merklenode SET hash = %s WHERE level = %s AND "index" = %s', [bytes(32), level, index]
    )
    nodes = [p for p in ledger_verify().problems if p.kind == "node"]
    assert [(p.seq, f"level {level}, index {index}" in p.detail) for p in nodes] == [(index << level, True)]


def test_details_that_do_not_authenticate_are_named_not_an_error(
    ledger: list[LedgerEvent], dpo_http: BrowserClient
) -> None:
    """Event #4's encrypted details copied onto event #0 of the same resident, its leaf hash
    recomputed so that the row hashes consistently: decryption fails (the details are bound
    to their event), which is tampering, not a server error."""
    source, target = ledger[4], ledger[0]
    assert source.details_ciphertext and target.details_ciphertext  # fill(): every fourth event
    row = ledger_module.event_row(target)
    row["details_ciphertext"] = bytes(source.details_ciphertext)
    forged = merkle.leaf_hash(ledger_module.entry_bytes(row))
    execute(
        "UPDATE consent_ledgerevent SET details_ciphertext = %s, leaf_hash = %s WHERE seq = 0",
        [bytes(source.details_ciphertext), forged],
    )
    assert_tampered_problem(dpo_http.get(f"/dpo/api/v1/events/{target.id}"), position=0)
    assert_tampered_page(dpo_http.get(f"/dpo/evenements/{target.id}/"), position=0)


@pytest.mark.parametrize(
    ("set_clause", "value"), [p for p in FINDABLE_BY_ID[_vendor()] if p.id != "seq-text"]
)
def test_the_widgets_state_survives_an_unreadable_decision(
    visitor: tuple[Any, dict[str, Any]], partner: Any, set_clause: str, value: Any
) -> None:
    """GET …/cookie/choices reads the time of each current decision from its ledger row. A
    decision whose time cannot be read proves no choice: the widget asks again."""
    api, body = visitor
    event = LedgerEvent.objects.get(pk=uuid.UUID(body["receipt_ids"][0]))
    unlock()
    alter(set_clause, value, seq=event.seq)
    query = {"client_id": partner.client_id, "browser_id": body["browser_id"]}
    response = api.get("/consent/api/v1/cookie/choices", query, HTTP_ORIGIN=PARTNER_ORIGIN)
    assert response.status_code == 200, response.content[:300]
    state = response.json()
    if set_clause.startswith("occurred_at"):  # the decision's time cannot be read
        assert state["choices"][event.purpose_code] is False
        assert state["decisions"][event.purpose_code] is None
        assert state["decided"] is False
    else:  # the state table and the decision's time are intact
        assert state["decisions"][event.purpose_code]["receipt_id"] == str(event.id)


def test_an_export_does_not_silently_drop_a_row_naming_no_subject(
    ledger: list[LedgerEvent], dpo_http: BrowserClient
) -> None:
    """The search joined each event to its subject: a row whose subject was replaced by an
    unknown id vanished from lists and exports without a word."""
    stored = uuid.uuid4().hex if _vendor() == "sqlite" else uuid.uuid4()
    alter("subject_id = %s", stored)
    response = assert_tampered_page(dpo_http.get("/dpo/export.json"))
    assert "names a subject that does not exist" in response
    assert_tampered_problem(dpo_http.get("/dpo/api/v1/events"))


# --- signing a tree head over a malformed ledger head ------------------------------------------

HEAD_CASES = [
    pytest.param("root_hash = %s", b"\x00" * 5, id="root-short"),
    pytest.param("root_hash = %s", bytes(32), id="root-other"),
    pytest.param("size = %s", 3, id="size-smaller"),
    *(
        [
            pytest.param("size = %s", "huit", id="size-text"),
            pytest.param("root_hash = %s", "racine", id="root-text"),
        ]
        if _vendor() == "sqlite"
        else []
    ),
]


@pytest.mark.parametrize(("set_clause", "value"), HEAD_CASES)
def test_no_tree_head_is_signed_over_a_malformed_ledger_head(
    ledger: list[LedgerEvent], dpo_http: BrowserClient, set_clause: str, value: Any
) -> None:
    execute(f"UPDATE consent_ledgerhead SET {set_clause} WHERE id = 1", [value])
    before = TreeHead.objects.count()
    api = dpo_http.post("/dpo/api/v1/tree-head")
    page = dpo_http.post("/dpo/verification/signer/")
    assert TreeHead.objects.count() == before, (api.status_code, page.status_code)
    assert api.status_code == 409 and api.json()["code"] == "ledger_tampered"
    assert page.status_code == 409 and "Registre altéré" in page.content.decode()


def test_no_tree_head_is_signed_over_a_rewritten_history(
    ledger: list[LedgerEvent], dpo_http: BrowserClient
) -> None:
    """Event #0's leaf hash rewritten with every stored node above it and the head's root, so
    that head, nodes and leaves agree: the new tree no longer extends the signed tree head of
    size 8 (the consistency proof from the stored nodes fails), so nothing is signed."""
    execute("UPDATE consent_ledgerevent SET leaf_hash = %s WHERE seq = 0", [bytes(32)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT leaf_hash FROM consent_ledgerevent ORDER BY seq")
        level = [bytes(row[0]) for row in cursor.fetchall()]
    for height in (1, 2, 3):
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        for index, digest in enumerate(level):
            execute(
                'UPDATE consent_merklenode SET hash = %s WHERE level = %s AND "index" = %s',
                [digest, height, index],
            )
    execute("UPDATE consent_ledgerhead SET root_hash = %s WHERE id = 1", [level[0]])
    before = TreeHead.objects.count()
    api = dpo_http.post("/dpo/api/v1/tree-head")
    assert api.status_code == 409
    assert any("no longer extends signed tree head" in problem for problem in api.json()["problems"])
    assert TreeHead.objects.count() == before


def test_a_sound_ledger_still_gets_its_tree_heads(ledger: list[LedgerEvent], dpo_http: BrowserClient) -> None:
    assert dpo_http.post("/dpo/api/v1/tree-head").status_code == 201  # same size as the last one
    consent_record(
        user=User.objects.exclude(groups__name="dpo").first(),
        purpose_code="personalisation-declared",
        event_type="given",
        collection_method="web_form",
    )
    signed = dpo_http.post("/dpo/api/v1/tree-head")
    assert signed.status_code == 201 and signed.json()["tree_size"] == EVENTS + 1
    assert dpo_http.post("/dpo/verification/signer/").status_code == 302


def test_the_sign_tree_head_command_refuses_without_a_traceback(ledger: list[LedgerEvent]) -> None:
    execute("UPDATE consent_ledgerhead SET root_hash = %s WHERE id = 1", [bytes(32)])
    with pytest.raises(CommandError, match=r"tree head NOT signed: .*differs from the root"):
        call_command("sign_tree_head")
