"""The `transport_subscription` claim through a real OIDC flow (tests/conftest.py OIDCFlow):
released only with the resident's consent; never the card number."""

from __future__ import annotations

from datetime import date

import pytest

from connectors.links import link_create
from connectors.transport import link_secret
from consent.services import consent_record
from identity.oidc import claims as registry
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import OIDCFlow, verify_id_token
from tests.connectors.conftest import TRANSPORT_BIRTH, TRANSPORT_EXPIRED, TRANSPORT_NAME, TRANSPORT_VALID
from tests.oidc.conftest import complete_flow, is_consent_page, userinfo

pytestmark = pytest.mark.django_db

SCOPE = "openid transport_subscription"
SECRET = link_secret(family_name=TRANSPORT_NAME, birth_date=date.fromisoformat(TRANSPORT_BIRTH))


def test_the_scope_is_registered_and_published(client):
    assert registry.is_supported_scope("transport_subscription")
    assert registry.claim_scope("transport_subscription") == "transport_subscription"
    discovery = client.get("/.well-known/openid-configuration").json()
    assert "transport_subscription" in discovery["scopes_supported"]
    assert "transport_subscription" in discovery["claims_supported"]


def test_the_claim_is_released_with_consent_and_withdrawn_with_it(
    signed_in, resident, transport, transport_client
):
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)
    flow = OIDCFlow(signed_in, transport_client)
    page = flow.authorize(scope=SCOPE)
    assert is_consent_page(page)
    assert "Si votre carte Libertan liée porte un abonnement Naolib valide" in page.content.decode()
    tokens = complete_flow(flow, scope=SCOPE)
    claim = verify_id_token(tokens["id_token"], transport_client.client_id)["transport_subscription"]
    assert claim["linked"] is True and claim["valid"] is True and claim["type"] == "annual"
    assert date.fromisoformat(claim["valid_until"]) > date.today()
    assert TRANSPORT_VALID not in str(claim) and "0001" not in str(claim)
    assert userinfo(tokens["access_token"]).json()["transport_subscription"] == claim
    consent_record(
        user=resident,
        purpose_code=sharing_purpose_code(transport_client.client, ["openid", "transport_subscription"]),
        event_type="withdrawn",
        collection_method="web_form",
    )
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}


def test_refused_on_the_consent_screen_nothing_is_released(signed_in, resident, transport, transport_client):
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_VALID, secret=SECRET)
    flow = OIDCFlow(signed_in, transport_client)
    page = flow.authorize(scope=SCOPE)
    response = signed_in.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert "code=" not in response.get("Location", "")


def test_an_expired_subscription_is_linked_but_not_valid(signed_in, resident, transport, transport_client):
    link_create(user=resident, partner_connector=transport, reference=TRANSPORT_EXPIRED, secret=SECRET)
    tokens = complete_flow(OIDCFlow(signed_in, transport_client), scope=SCOPE)
    claim = userinfo(tokens["access_token"]).json()["transport_subscription"]
    assert claim["linked"] is True and claim["valid"] is False and claim["type"] == "monthly"
    assert date.fromisoformat(claim["valid_until"]) < date.today()


def test_without_a_card_the_claim_says_so(signed_in, transport, transport_client):
    tokens = complete_flow(OIDCFlow(signed_in, transport_client), scope=SCOPE)
    assert userinfo(tokens["access_token"]).json()["transport_subscription"] == {"linked": False}
