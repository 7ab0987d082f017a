"""Mon compte › Consentements, a notice page and the receipt verification page in a real
browser, scanned with axe-core: French and English, 1280 px and 360 px (no horizontal
scrolling there). The resident grants with a click, then withdraws with a click; the history
opens; a receipt pasted into the verification page shows its result.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from consent.models import LedgerEvent
from consent.receipts import receipt_for_event
from consent.selectors import event_proof, purpose_by_code
from consent.services import consent_record, notice_publish, tree_head_sign
from tests.browser.conftest import axe_violations, sign_in, signed_in_page
from tests.browser.conftest import check_page as check

pytestmark = pytest.mark.django_db(transaction=True)

NEWS = "service-news-email"


@pytest.fixture
def history(resident: Any, signing_keys: Any) -> LedgerEvent:
    """A grant, a material notice change since (renewal required), a refusal, a sealed ledger."""
    event = consent_record(purpose_code=NEWS, event_type="given", collection_method="web_form", user=resident)
    consent_record(
        purpose_code="personalisation-declared",
        event_type="refused",
        collection_method="web_form",
        user=resident,
    )
    tree_head_sign()
    notice_publish(
        purpose=purpose_by_code(NEWS),
        text_fr="Nous vous écrivons une fois par mois.\nVous pouvez vous désinscrire.",
        text_en="We write to you once a month.\nYou may unsubscribe.",
        material=True,
    )
    return event


@pytest.mark.parametrize("language", ["fr", "en"])
def test_pages_pass_axe_and_reflow(
    live_server: Any, chromium: Any, resident: Any, history: LedgerEvent, language: str
) -> None:
    with signed_in_page(chromium, live_server.url, resident.email, language) as page:
        page.goto(live_server.url + "/compte/consentements/")
        heading = {"fr": "Mes consentements", "en": "My consents"}[language]
        assert page.get_by_role("heading", level=1).inner_text() == heading
        for summary in page.locator("summary").all():
            summary.click()
        check(page, language)

        page.goto(live_server.url + f"/confidentialite/notices/{NEWS}/")
        assert page.locator("ins").count() >= 1
        check(page, language)

        page.goto(live_server.url + "/recus/verifier/")
        page.locator("#receipt").fill(receipt_for_event(history))
        page.locator("#proof").fill(json.dumps(event_proof(event=history)))
        page.locator("form.verify-form button[type=submit]").click()
        page.wait_for_selector("#result-title")
        assert page.locator(".message--success").count() == 1
        check(page, language)


def test_grant_and_withdraw_with_one_click_each(
    live_server: Any, page: Any, resident: Any, signing_keys: Any
) -> None:
    sign_in(page, live_server.url, resident.email)
    page.goto(live_server.url + "/compte/")
    page.get_by_role(
        "link", name="Voir mes consentements, les donner ou les retirer, et télécharger mes reçus"
    ).click()
    page.wait_for_url("**/compte/consentements/")
    section = page.locator(f"#finalite-{NEWS}")
    section.get_by_role("button", name="Donner mon consentement").click()
    page.wait_for_url(f"**/compte/consentements/#finalite-{NEWS}")
    assert page.get_by_role("status").inner_text().startswith("Votre consentement est enregistré")
    page.locator(f"#finalite-{NEWS}").get_by_role("button", name="Retirer mon consentement").click()
    page.wait_for_url(f"**/compte/consentements/#finalite-{NEWS}")
    assert page.get_by_role("status").inner_text().startswith("Votre retrait est enregistré")
    assert list(LedgerEvent.objects.order_by("seq").values_list("event_type", flat=True)) == [
        "given",
        "withdrawn",
    ]
    assert axe_violations(page) == []
