"""The `library_card` claim through a real OIDC flow (tests/conftest.py OIDCFlow): released
only with the resident's consent on the sharing screen; the card number only to the partner
whose own library connector needs it."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.links import link_create
from connectors.services import partner_connector_configure
from consent.services import consent_record
from identity.oidc import claims as registry
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import OIDCFlow, verify_id_token
from tests.connectors.conftest import BLOCKED_CARD, VALID_CARD, library_config
from tests.oidc.conftest import complete_flow, is_consent_page, userinfo

pytestmark = pytest.mark.django_db

SCOPE = "openid library_card"


def test_the_scope_is_registered_and_published(client):
    assert registry.is_supported_scope("library_card")
    assert registry.claim_scope("library_card") == "library_card"
    discovery = client.get("/.well-known/openid-configuration").json()
    assert "library_card" in discovery["scopes_supported"]
    assert "library_card" in discovery["claims_supported"]


def test_the_claim_is_released_with_consent_and_withdrawn_with_it(
    signed_in, resident, library, library_client
):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    flow = OIDCFlow(signed_in, library_client)
    page = flow.authorize(scope=SCOPE)
    assert is_consent_page(page)
    assert "Si vous avez lié une carte de bibliothèque" in page.content.decode()
    tokens = complete_flow(flow, scope=SCOPE)
    id_token = verify_id_token(tokens["id_token"], library_client.client_id)
    claim = id_token["library_card"]
    assert claim["linked"] is True and claim["valid"] is True and "expires_on" in claim
    assert "card_number" not in claim
    body = userinfo(tokens["access_token"]).json()
    assert body["library_card"] == claim
    consent_record(
        user=resident,
        purpose_code=sharing_purpose_code(library_client.client, ["openid", "library_card"]),
        event_type="withdrawn",
        collection_method="web_form",
    )
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}


def test_refused_on_the_consent_screen_nothing_is_released(signed_in, resident, library, library_client):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    flow = OIDCFlow(signed_in, library_client)
    page = flow.authorize(scope=SCOPE)
    response = signed_in.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert "code=" not in response.get("Location", "")


def test_the_card_number_only_for_the_partner_whose_connector_needs_it(
    signed_in, resident, library, library_sim, library_client, make_client
):
    link_create(user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1])
    partner_connector_configure(
        client=library_client.client,
        kind="library",
        label=library.label,
        config=library_config(library_sim, release_card_number=True),
    )
    tokens = complete_flow(OIDCFlow(signed_in, library_client), scope=SCOPE)
    assert userinfo(tokens["access_token"]).json()["library_card"]["card_number"] == VALID_CARD[0]
    # Another partner asking for the scope learns the card's state, never its number.
    other = make_client(name="Médiathèque partenaire", scopes=["openid", "library_card"])
    tokens = complete_flow(OIDCFlow(signed_in, other), scope=SCOPE)
    claim = userinfo(tokens["access_token"]).json()["library_card"]
    assert claim["linked"] is True and "card_number" not in claim


def test_a_blocked_card_is_linked_but_not_valid(signed_in, resident, library, library_client):
    link_create(user=resident, partner_connector=library, reference=BLOCKED_CARD[0], secret=BLOCKED_CARD[1])
    tokens = complete_flow(OIDCFlow(signed_in, library_client), scope=SCOPE)
    claim: Any = userinfo(tokens["access_token"]).json()["library_card"]
    assert claim["linked"] is True and claim["valid"] is False


def test_without_a_card_the_claim_says_so(signed_in, library, library_client):
    tokens = complete_flow(OIDCFlow(signed_in, library_client), scope=SCOPE)
    assert userinfo(tokens["access_token"]).json()["library_card"] == {"linked": False}
