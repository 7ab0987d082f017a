"""Browsing-based personalisation in a real Chromium, end to end (issue 12): the cookie widget
on a partner page sends the page's themes only while the visitor allows
"personalisation-browsing"; what the portal may then use for the browser; and the browser's
interests joining the resident's account only by the browser's proof (the sign-in through the
partner with consent_browser_id and the link ticket), never by an address parameter.
"""

from __future__ import annotations

from typing import Any

import pytest

from consent.services import browser_id_hash
from profiles.models import Interest
from tests.browser.conftest import in_browser
from tests.consent_api.widget_browser import demo_landing, events_received, sign_in_through_the_partner

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("flushable_ledger"),
]

DEMO_THEMES = {"culture", "mobility"}  # data-page-themes of templates/consent/widget_demo.html


def test_page_views_are_sent_only_while_the_visitor_allows_it(widget_server: str) -> None:
    seen: dict[str, Any] = {}

    def scenario(page: Any) -> None:
        page.goto(widget_server + "/consent/demo-widget/")
        page.get_by_role("button", name="Tout refuser").click()
        events_received(page, 2)
        seen["browser_id"] = page.evaluate("window.cumConsentEvents[1].browserId")
        # Refused: a new visit sends nothing (the page asks the widget, which says so).
        page.reload()
        events_received(page, 1)
        page.get_by_role("button", name="Voir ce que le portail peut utiliser pour ce navigateur").click()
        page.locator("#personalisation-result").filter(has_text="n'est pas autorisée").wait_for()
        assert page.locator("html[data-cum-page-view]").count() == 0
        seen["after_refusal"] = page.evaluate("document.documentElement.hasAttribute('data-cum-page-view')")

        # Allowed from "Gérer mes cookies": the next visit is counted for the page's themes.
        page.get_by_role("button", name="Gérer mes cookies").click()
        dialog = page.get_by_role("dialog", name="Personnaliser mes choix")
        dialog.wait_for()
        dialog.locator("label", has_text="Personnaliser à partir de votre navigation").click()
        page.get_by_role("button", name="Enregistrer mes choix").click()
        dialog.wait_for(state="hidden")
        page.reload()
        page.locator("html[data-cum-page-view='culture mobility']").wait_for(state="attached")
        page.get_by_role("button", name="Voir ce que le portail peut utiliser pour ce navigateur").click()
        result = page.locator("#personalisation-result")
        result.get_by_role("listitem").first.wait_for()
        seen["items"] = result.get_by_role("listitem").all_inner_texts()

    in_browser(scenario)
    assert seen["after_refusal"] is False
    assert len(seen["items"]) == 2
    assert all("personalisation-browsing" in item for item in seen["items"])
    rows = list(Interest.objects.all())
    assert {row.theme for row in rows} == DEMO_THEMES
    assert {row.browser_hash for row in rows} == {browser_id_hash(seen["browser_id"])}
    assert all(row.user_id is None and row.views == 1 and list(row.sources) == ["localhost"] for row in rows)


def test_a_browsers_interests_join_the_account_with_its_proof(
    widget_server: str,
    make_resident: Any,
) -> None:
    resident = make_resident("alice@example.org")
    landing = demo_landing(widget_server)

    def scenario(page: Any) -> None:
        page.goto(landing)
        page.get_by_role("button", name="Tout accepter").click()
        events_received(page, 2)
        browser_id = page.evaluate("window.cumConsentEvents[1].browserId")
        page.reload()
        page.locator("html[data-cum-page-view='culture mobility']").wait_for(state="attached")
        sign_in_through_the_partner(page, widget_server, browser_id=browser_id, email=resident.email)

    in_browser(scenario)
    rows = list(Interest.objects.all())
    # The visit before sign-in and the landing page's own visit (counted for the browser or the
    # account, whichever the widget sent first): all of it is now the account's.
    assert {row.theme for row in rows} == DEMO_THEMES
    assert all(row.user_id == resident.pk and row.browser_hash == "" for row in rows)
