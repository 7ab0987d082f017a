"""The `eligibility` claim through a real OIDC flow (tests/conftest.py OIDCFlow) against the
ticketing simulator on a real socket: released only with the resident's consent; a list of
{scheme, valid_until}; nothing when no eligibility is current; never the card number."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from connectors.links import link_create
from connectors.models import PartnerLink
from connectors.ticketing import link_secret
from consent.services import consent_record
from identity.oidc import claims as registry
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import OIDCFlow, verify_id_token
from tests.connectors.conftest import TICKETING_BIRTH, TICKETING_ELIGIBLE, TICKETING_NOT_ELIGIBLE
from tests.oidc.conftest import complete_flow, is_consent_page, userinfo

pytestmark = pytest.mark.django_db

SCOPE = "openid eligibility"
SECRET = link_secret(birth_date=date.fromisoformat(TICKETING_BIRTH))


def _link(resident, ticketing, card=TICKETING_ELIGIBLE):
    return link_create(user=resident, partner_connector=ticketing, reference=card, secret=SECRET)


def test_the_scope_is_registered_and_published(client):
    assert registry.is_supported_scope("eligibility")
    assert registry.claim_scope("eligibility") == "eligibility"
    discovery = client.get("/.well-known/openid-configuration").json()
    assert "eligibility" in discovery["scopes_supported"]
    assert "eligibility" in discovery["claims_supported"]


def test_the_claim_is_released_with_consent_and_withdrawn_with_it(
    signed_in, resident, ticketing, ticketing_client
):
    _link(resident, ticketing)
    flow = OIDCFlow(signed_in, ticketing_client)
    page = flow.authorize(scope=SCOPE)
    assert is_consent_page(page)
    text = page.content.decode()
    assert "Si votre Carte Blanche liée vous donne droit aux tarifs réduits" in text
    tokens = complete_flow(flow, scope=SCOPE)
    claim = verify_id_token(tokens["id_token"], ticketing_client.client_id)["eligibility"]
    assert claim == [{"scheme": "carte_blanche", "valid_until": claim[0]["valid_until"]}]
    assert date.fromisoformat(claim[0]["valid_until"]) > date.today()
    assert TICKETING_ELIGIBLE not in str(claim) and "0001" not in str(claim)
    assert userinfo(tokens["access_token"]).json()["eligibility"] == claim
    consent_record(
        user=resident,
        purpose_code=sharing_purpose_code(ticketing_client.client, ["openid", "eligibility"]),
        event_type="withdrawn",
        collection_method="web_form",
    )
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}


def test_refused_on_the_consent_screen_nothing_is_released(signed_in, resident, ticketing, ticketing_client):
    _link(resident, ticketing)
    flow = OIDCFlow(signed_in, ticketing_client)
    page = flow.authorize(scope=SCOPE)
    response = signed_in.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert "code=" not in response.get("Location", "")


def test_without_the_scope_nothing_is_released(signed_in, resident, ticketing, ticketing_client):
    _link(resident, ticketing)
    tokens = complete_flow(OIDCFlow(signed_in, ticketing_client), scope="openid profile")
    assert "eligibility" not in userinfo(tokens["access_token"]).json()
    assert "eligibility" not in verify_id_token(tokens["id_token"], ticketing_client.client_id)


def test_without_a_current_eligibility_the_claim_is_absent(signed_in, resident, ticketing, ticketing_client):
    _link(resident, ticketing, TICKETING_NOT_ELIGIBLE)
    tokens = complete_flow(OIDCFlow(signed_in, ticketing_client), scope=SCOPE)
    assert "eligibility" not in userinfo(tokens["access_token"]).json()


def test_an_eligibility_ended_since_the_last_check_is_not_released(
    signed_in, resident, ticketing, ticketing_client
):
    link = _link(resident, ticketing)
    PartnerLink.objects.filter(pk=link.pk).update(expires_on=date.today() - timedelta(days=1))
    tokens = complete_flow(OIDCFlow(signed_in, ticketing_client), scope=SCOPE)
    assert "eligibility" not in userinfo(tokens["access_token"]).json()


def test_without_a_card_the_claim_is_absent(signed_in, ticketing, ticketing_client):
    tokens = complete_flow(OIDCFlow(signed_in, ticketing_client), scope=SCOPE)
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}
