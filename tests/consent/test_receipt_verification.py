"""Public receipt verification: the page /recus/verifier/ and POST /consent/api/v1/receipts/verify."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client as BrowserClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consent.receipts import receipt_for_event
from consent.selectors import event_proof
from consent.services import consent_record, tree_head_sign

pytestmark = pytest.mark.django_db

API = "/consent/api/v1/receipts/verify"
PAGE = "/recus/verifier/"


@pytest.fixture
def recorded(resident: Any, ledger_ready: Any) -> Any:
    consent_record(
        purpose_code="personalisation-declared",
        event_type="given",
        collection_method="web_form",
        user=resident,
    )
    event = consent_record(
        purpose_code="service-news-email", event_type="given", collection_method="web_form", user=resident
    )
    consent_record(
        purpose_code="service-news-email", event_type="withdrawn", collection_method="web_form", user=resident
    )
    tree_head_sign()
    return event


def post(client: BrowserClient, body: Any) -> Any:
    return client.post(API, json.dumps(body), content_type="application/json")


def flip(text: str, index: int) -> str:
    """One character changed for another base64url character."""
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_a_real_receipt_verifies(client: BrowserClient, recorded: Any) -> None:
    response = post(client, {"receipt": receipt_for_event(recorded)})
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True and body["signature"] == {"valid": True, "error": None}
    assert body["receipt"]["event_id"] == str(recorded.id)
    assert body["receipt"]["purpose"] == "service-news-email"
    assert body["receipt"]["event_type"] == "given"
    assert body["receipt"]["collection_method"] == "web_form"
    assert body["receipt"]["leaf_index"] == recorded.seq
    assert body["receipt"]["occurred_at"].startswith(recorded.occurred_at.strftime("%Y-%m-%dT%H:%M"))
    assert body["inclusion"] is None


@pytest.mark.parametrize("part", [1, 2])
def test_a_tampered_receipt_fails(client: BrowserClient, recorded: Any, part: int) -> None:
    parts = receipt_for_event(recorded).split(".")
    parts[part] = flip(parts[part], len(parts[part]) // 2)
    response = post(client, {"receipt": ".".join(parts)})
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert body["signature"] == {"valid": False, "error": "signature"}
    assert body["receipt"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"receipt": "garbage"},
        {"receipt": "a.b.c"},
        {"receipt": 42},
        {},
        {"receipt": "é" * 10},
        {"receipt": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "proof": [1, 2]},
        {"receipt": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "proof": "{not json"},
        {"receipt": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "proof": {"signed_tree_head": 1, "inclusion_path": []}},
        {
            "receipt": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
            "proof": {"signed_tree_head": "x", "inclusion_path": ["zz"]},
        },
    ],
)
def test_garbage_is_a_400_problem(client: BrowserClient, db: Any, body: Any) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].startswith("urn:cum:problem:")


def test_not_json_too_large_and_rate_limited(client: BrowserClient, db: Any, settings: Any) -> None:
    assert client.post(API, "{", content_type="application/json").status_code == 400
    assert client.post(API, "[]", content_type="application/json").status_code == 400
    assert client.post(API, "receipt=x", content_type="text/plain").status_code == 415
    assert post(client, {"receipt": "a" * 100_000}).status_code == 413
    assert client.get(API).status_code == 405
    settings.CONSENT_RECEIPT_VERIFY_RATE_LIMIT = {"per_ip": 2, "window_seconds": 600}
    post(client, {"receipt": "x"})
    post(client, {"receipt": "x"})
    response = post(client, {"receipt": "x"})
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


def test_a_real_proof_verifies_against_the_signed_tree_head(client: BrowserClient, recorded: Any) -> None:
    proof = event_proof(event=recorded)
    body = post(client, {"receipt": receipt_for_event(recorded), "proof": proof}).json()
    assert body["valid"] is True
    assert body["inclusion"]["verified"] is True and body["inclusion"]["error"] is None
    assert body["inclusion"]["tree_size"] == 3
    # The proof may also come as its file's text.
    body = post(client, {"receipt": receipt_for_event(recorded), "proof": json.dumps(proof)}).json()
    assert body["inclusion"]["verified"] is True


def test_a_tampered_proof_fails(client: BrowserClient, recorded: Any) -> None:
    receipt = receipt_for_event(recorded)
    proof = event_proof(event=recorded)
    bad_path = dict(
        proof, inclusion_path=[("0" if h[0] != "0" else "1") + h[1:] for h in proof["inclusion_path"]]
    )
    body = post(client, {"receipt": receipt, "proof": bad_path}).json()
    assert body["valid"] is False and body["signature"]["valid"] is True
    assert body["inclusion"] == {**body["inclusion"], "verified": False, "error": "path_invalid"}

    sth = proof["signed_tree_head"].split(".")
    sth[1] = flip(sth[1], len(sth[1]) // 2)
    body = post(client, {"receipt": receipt, "proof": dict(proof, signed_tree_head=".".join(sth))}).json()
    assert body["inclusion"]["verified"] is False and body["inclusion"]["error"] == "tree_head_invalid"

    body = post(client, {"receipt": receipt, "proof": dict(proof, leaf_index=proof["leaf_index"] + 1)}).json()
    assert body["inclusion"]["error"] == "other_leaf"

    # A proof of another event does not prove this receipt.
    other = event_proof(event=type(recorded).objects.get(seq=0))
    body = post(
        client, {"receipt": receipt, "proof": dict(other, leaf_index=recorded.seq, leaf_hash=None)}
    ).json()
    assert body["inclusion"]["verified"] is False


def test_the_page_shows_the_result(client: BrowserClient, recorded: Any) -> None:
    assert client.get(PAGE).status_code == 200
    receipt = receipt_for_event(recorded)
    response = client.post(PAGE, {"receipt": receipt, "proof": json.dumps(event_proof(event=recorded))})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Reçu authentique, et le choix qu" in html
    assert str(recorded.id) in html and "Consentement donné" in html

    parts = receipt.split(".")
    parts[2] = flip(parts[2], 20)
    html = client.post(PAGE, {"receipt": ".".join(parts)}).content.decode()
    assert "Reçu non valide." in html

    response = client.post(PAGE, {"receipt": "n'importe quoi"})
    assert response.status_code == 400
    assert "pas un reçu" in response.content.decode()


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_HEADERS = st.one_of(
    st.binary(max_size=40),
    st.just({"alg": "ES256", "typ": "consent-receipt+jwt"}),
    st.fixed_dictionaries(
        {
            "alg": st.sampled_from(["ES256", "none", "HS256"]),
            "typ": st.sampled_from(["consent-receipt+jwt", "consent-sth+jwt", "JWT"]),
            "kid": st.one_of(st.text(max_size=300), st.integers(), st.lists(st.integers(), max_size=2)),
        }
    ),
    st.lists(st.integers(), max_size=3),
)
_PAYLOADS = st.one_of(
    st.binary(max_size=60), st.just({"ledger": []}), st.dictionaries(st.text(max_size=5), st.integers())
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    header=_HEADERS,
    payload=_PAYLOADS,
    signature=st.binary(max_size=70),
    proof=st.one_of(
        st.none(),
        st.text(max_size=50),
        st.dictionaries(
            st.text(max_size=20), st.one_of(st.text(max_size=20), st.lists(st.text(max_size=64), max_size=3))
        ),
    ),
)
def test_never_a_500(
    client: BrowserClient, db: Any, settings: Any, header: Any, payload: Any, signature: bytes, proof: Any
) -> None:
    settings.CONSENT_RECEIPT_VERIFY_RATE_LIMIT = {"per_ip": 1_000_000, "window_seconds": 600}
    receipt = ".".join([_b64(header), _b64(payload), _b64(signature) or "AA"])
    response = post(client, {"receipt": receipt, "proof": proof})
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        assert response.json()["valid"] is False


_DIGEST = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_STH = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda header, payload, sig: ".".join([_b64(header), _b64(payload), _b64(sig) or "AA"]),
        _HEADERS,
        st.one_of(
            _PAYLOADS,
            st.fixed_dictionaries(
                {
                    "tree_size": st.one_of(st.integers(), st.text(max_size=3)),
                    "root_hash": st.one_of(_DIGEST, st.none()),
                }
            ),
        ),
        st.binary(max_size=70),
    ),
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sth=_STH,
    path=st.lists(_DIGEST, max_size=70),
    leaf_index=st.one_of(st.none(), st.integers(), st.text(max_size=3)),
)
def test_never_a_500_with_a_real_receipt(
    client: BrowserClient, recorded: Any, settings: Any, sth: str, path: list[str], leaf_index: Any
) -> None:
    settings.CONSENT_RECEIPT_VERIFY_RATE_LIMIT = {"per_ip": 1_000_000, "window_seconds": 600}
    proof: dict[str, Any] = {"signed_tree_head": sth, "inclusion_path": path}
    if leaf_index is not None:
        proof["leaf_index"] = leaf_index
    response = post(client, {"receipt": receipt_for_event(recorded), "proof": proof})
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        body = response.json()
        assert body["signature"]["valid"] is True and body["inclusion"]["verified"] is False
