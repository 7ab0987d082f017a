"""Signed receipts (Kantara v1.1 + ISO/IEC TS 27560) and crypto-shredding erasure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client as BrowserClient
from jwcrypto import jwk, jws

from consent import crypto, merkle, rights
from consent.models import LedgerEvent, Subject
from consent.receipts import ReceiptInvalid, receipt_for_event, receipt_verify
from consent.selectors import consent_is_granted, event_details, event_proof, ledger_verify, verify_tree_head
from consent.services import (
    browser_subject_register,
    consent_record,
    subject_erase,
    subject_link_browser,
    tree_head_sign,
)

KANTARA_REQUIRED = {
    "version",
    "jurisdiction",
    "consentTimestamp",
    "collectionMethod",
    "consentReceiptID",
    "piiPrincipalId",
    "piiControllers",
    "policyUrl",
    "services",
    "sensitive",
    "spiCat",
}
KANTARA_PURPOSE_REQUIRED = {
    "purposeCategory",
    "piiCategory",
    "termination",
    "thirdPartyDisclosure",
    "thirdPartyName",
}


def published_keys() -> jwk.JWKSet:
    response = BrowserClient().get("/jwks.json")
    assert response.status_code == 200
    return jwk.JWKSet.from_json(response.content.decode())


def verify_with_jwks(token: str) -> dict[str, Any]:
    """Independent check: only jwcrypto and the published JWKS document."""
    parsed = jws.JWS()
    parsed.deserialize(token)
    key = published_keys().get_key(parsed.jose_header["kid"])
    assert key is not None
    parsed.verify(key, alg="ES256")
    return json.loads(parsed.payload)


def test_a_receipt_verifies_against_the_published_keys_and_an_inclusion_proof(
    make_resident: Any, make_client: Any, ledger_ready: Any
) -> None:
    resident = make_resident()
    for purpose in ("personalisation-declared", "service-news-email"):
        consent_record(user=resident, purpose_code=purpose, event_type="given", collection_method="web_form")
    event = consent_record(
        user=resident,
        purpose_code="personalisation-browsing",
        event_type="given",
        collection_method="cookie_widget",
    )
    consent_record(
        user=resident, purpose_code="service-news-email", event_type="withdrawn", collection_method="web_form"
    )
    token = receipt_for_event(event)

    payload = verify_with_jwks(token)
    assert receipt_verify(token) == payload
    kantara = payload["kantara"]
    assert kantara.keys() >= KANTARA_REQUIRED
    assert kantara["version"] == "KI-CR-v1.1.0" and kantara["jurisdiction"] == "FR"
    assert kantara["consentReceiptID"] == str(event.id)
    assert kantara["piiPrincipalId"] == str(event.subject_id)
    assert kantara["collectionMethod"] == "cookie_widget"
    assert kantara["piiControllers"][0]["piiController"] == "Nantes Métropole"
    assert {"contact", "address", "email", "phone"} <= kantara["piiControllers"][0].keys()
    purpose = kantara["services"][0]["purposes"][0]
    assert purpose.keys() >= KANTARA_PURPOSE_REQUIRED
    assert purpose["purposeCategory"] == ["dpv:ServicePersonalisation"]
    signed = jws.JWS()
    signed.deserialize(token)
    assert kantara["publicKey"]["kid"] == signed.jose_header["kid"]
    assert signed.jose_header["alg"] == "ES256"
    iso = payload["iso27560"]
    assert iso["header"]["record_id"] == str(event.id) and iso["header"]["schema_version"]
    assert {
        "purposes",
        "privacy_notice",
        "retention_period",
        "recipient_third_parties",
        "withdrawal_method",
        "lawful_basis",
    } <= iso["processing"].keys()
    assert iso["processing"]["privacy_notice"]["version"] == 1
    assert iso["parties"][0]["role"] == "controller"
    assert {"event_time", "validity_duration", "entity_id", "event_type", "event_state"} <= iso["event"][
        0
    ].keys()
    assert iso["event"][0]["event_state"] == "dpv:ConsentGiven"
    assert iso["event"][0]["validity_duration"] == "P183D"
    # No personal data in the receipt: the email of the resident does not appear.
    assert resident.email not in json.dumps(payload) and str(resident.pk) not in json.dumps(payload)

    # The leaf: recompute it from the entry, then check it against a signed tree head.
    entry = payload["ledger"]["entry"].encode()
    leaf = merkle.leaf_hash(entry)
    assert leaf.hex() == payload["ledger"]["leaf_hash"]
    head = tree_head_sign()
    head_payload = verify_with_jwks(head.signature)
    proof = event_proof(event=event, tree_head=head)
    assert proof["signed_tree_head"] == head.signature
    assert merkle.verify_inclusion(
        leaf,
        payload["ledger"]["leaf_index"],
        head_payload["tree_size"],
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        bytes.fromhex(head_payload["root_hash"]),
    )


def test_a_tampered_receipt_is_refused(make_resident: Any, ledger_ready: Any) -> None:
    event = consent_record(
        user=make_resident(),
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
    )
    token = receipt_for_event(event)
    header, payload, signature = token.split(".")
    forged_payload = jws.base64url_encode(jws.base64url_decode(payload).replace(b'"given"', b'"refused"'))
    with pytest.raises(ReceiptInvalid):
        receipt_verify(f"{header}.{forged_payload}.{signature}")
    with pytest.raises(ReceiptInvalid):
        receipt_verify("not-a-jws")
    with pytest.raises(ReceiptInvalid):
        receipt_verify(tree_head_sign().signature)  # a valid JWS, but not a receipt


def test_erasure_shreds_the_details_while_proofs_still_verify(make_resident: Any, ledger_ready: Any) -> None:
    resident, neighbour = make_resident(), make_resident()
    secret = {"evidence": "appel téléphonique du 3 mars, Mme Martin, 06 12 34 56 78"}
    event = consent_record(
        user=resident,
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
        details=secret,
    )
    kept = consent_record(
        user=neighbour,
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
        details={"evidence": "voisin"},
    )
    browser_secret = browser_subject_register(browser_id="browser-of-the-resident-000000")
    consent_record(
        browser_id="browser-of-the-resident-000000",
        purpose_code="personalisation-browsing",
        event_type="given",
        collection_method="cookie_widget",
    )
    subject_link_browser(
        browser_id="browser-of-the-resident-000000", browser_secret=browser_secret, user=resident
    )
    token_before = receipt_for_event(event)
    head_before = tree_head_sign()
    ciphertext = bytes(event.details_ciphertext)
    assert event_details(event) == secret

    report = subject_erase(user=resident)
    assert report.details["subjects"] == 2  # the account and the attached browser
    assert rights.ErasureReport is type(report)

    stored = LedgerEvent.objects.get(pk=event.pk)
    assert bytes(stored.details_ciphertext) == ciphertext  # the ledger row did not change
    with pytest.raises(crypto.KeyDestroyed):
        event_details(stored)
    subject = Subject.objects.get(pk=event.subject_id)
    assert subject.wrapped_key is None and subject.user_id is None and subject.key_destroyed_at
    assert not Subject.objects.filter(user=resident).exists()
    assert not consent_is_granted(user=resident, purpose_code="service-news-email")
    assert event_details(LedgerEvent.objects.get(pk=kept.pk)) == {"evidence": "voisin"}
    assert rights.export_all(resident)["consent"]["ledger_events"] == []

    # Everything stays verifiable.
    assert receipt_verify(token_before)["kantara"]["consentReceiptID"] == str(event.id)
    receipt_verify(receipt_for_event(stored))
    head_after = tree_head_sign()
    for head in (head_before, head_after):
        assert verify_tree_head(head)
        proof = event_proof(event=stored, tree_head=head)
        assert merkle.verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            stored.seq,
            head.tree_size,
            [bytes.fromhex(h) for h in proof["inclusion_path"]],
            bytes(head.root_hash),
        )
    result = ledger_verify()
    assert result.ok, result.problems
    assert subject_erase(user=resident).details["subjects"] == 0  # idempotent


def test_a_key_wrapped_under_another_master_key_does_not_unwrap(make_resident: Any, settings: Any) -> None:
    event = consent_record(
        user=make_resident(),
        purpose_code="service-news-email",
        event_type="given",
        collection_method="web_form",
        details={"note": "x"},
    )
    settings.CONSENT_MASTER_KEY = "A" * 43
    with pytest.raises(crypto.DecryptionFailed):
        event_details(event)
