"""The cookie widget on a partner page of ANOTHER origin, in a real Chromium: its page views
and its personalisation call pass the CORS preflight (client_id in the address, the page's
origin registered on the client), are counted only once the visitor allows browsing
personalisation, and the answer reaches the page.

The partner page is served by a small server on 127.0.0.1 (tests/local_servers.py); our
provider (and the widget's script) by live_server on localhost: two origins for the browser.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps as django_apps

from consent.services import browser_id_hash
from profiles.models import Interest
from tests.browser.conftest import in_browser
from tests.consent_api.conftest import flushable_ledger as flushable_ledger  # re-exported fixture
from tests.consent_api.widget_browser import events_received
from tests.local_servers import DocumentServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("flushable_ledger"),
]

PAGE = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Portail (partenaire)</title>
<script>
window.cumConsentEvents = [];
document.addEventListener("cum:consent", function (event) {{
  window.cumConsentEvents.push(event.detail);
  document.documentElement.setAttribute("data-cum-events", String(window.cumConsentEvents.length));
}});
document.addEventListener("cum:page-view", function (event) {{
  document.documentElement.setAttribute("data-page-view", event.detail.counted.join(" "));
}});
</script>
<script src="{provider}/static/consent/widget.js" data-client-id="{client_id}"
  data-page-themes="culture" defer></script>
</head><body><main><h1>Portail</h1></main></body></html>
"""


@pytest.fixture
def partner_page(live_server: Any, settings: Any, make_client: Any) -> Any:
    importlib.import_module("consent.migrations.0003_seed_catalogue").seed(django_apps, None)
    settings.ISSUER = live_server.url
    server = DocumentServer()
    origin = server.address("")
    registered = make_client(name="Portail", scopes=["openid", "interests"])
    registered.client.allowed_origins = origin
    registered.client.save(update_fields=["allowed_origins"])
    body = PAGE.format(provider=live_server.url, client_id=registered.client_id).encode()
    server.serve_raw("/page.html", body, headers={"Content-Type": "text/html; charset=utf-8"})
    yield server.url("/page.html")
    server.close()


def test_the_widget_sends_page_views_across_origins(partner_page: str) -> None:
    seen: dict[str, Any] = {}

    def scenario(page: Any) -> None:
        page.goto(partner_page)
        page.get_by_role("button", name="Tout accepter").click()
        events_received(page, 2)
        seen["browser_id"] = page.evaluate("window.cumConsentEvents[1].browserId")
        page.reload()
        page.locator("html[data-page-view='culture']").wait_for(state="attached")
        seen["items"] = page.evaluate(
            "window.CumConsent.personalisation()"
            ".then(answer => answer.items.map(i => [i.value.code, i.reason.purpose]))"
        )

    in_browser(scenario)
    assert seen["items"] == [["culture", "personalisation-browsing"]]
    [row] = Interest.objects.all()
    assert row.theme == "culture" and row.browser_hash == browser_id_hash(seen["browser_id"])
    assert list(row.sources) == ["127.0.0.1"]
