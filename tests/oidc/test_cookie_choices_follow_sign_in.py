"""cum_browser_id: a visitor's cookie choices on a partner site follow them when they sign in."""

from __future__ import annotations

import uuid

from consent.selectors import consent_is_granted
from consent.services import consent_record

BROWSING = "personalisation-browsing"


def choose_on_partner_site(client, browser_id: str, granted: bool = True) -> None:
    consent_record(
        purpose_code=BROWSING,
        event_type="given" if granted else "refused",
        collection_method="cookie_widget",
        browser_id=browser_id,
        collected_for=client,
    )


def test_choices_made_on_the_partner_site_follow_the_resident_after_sign_in(flow, resident):
    browser_id = str(uuid.uuid4())
    choose_on_partner_site(flow.rp.client, browser_id)
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)
    flow.get_code(cum_browser_id=browser_id)
    assert consent_is_granted(user=resident, purpose_code=BROWSING)


def test_a_browser_id_from_another_partner_site_is_not_attached(flow, resident, make_client):
    other = make_client(name="Autre site", redirect_uris=["https://other.example.org/cb"])
    browser_id = str(uuid.uuid4())
    choose_on_partner_site(other.client, browser_id)
    flow.get_code(cum_browser_id=browser_id)
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)


def test_a_malformed_browser_id_is_ignored(flow, resident):
    code = flow.get_code(cum_browser_id="not-a-uuid")
    assert flow.token(code).status_code == 200
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)
