"""The API documentation page (/api/docs/, Swagger UI) in a real Chromium, under the site's CSP.

It must render the description served at /api/schema/ with nothing but our own files: every
request goes to our origin (no CDN), and neither a Content-Security-Policy violation nor a
console error nor an uncaught exception happens on the way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from identity.middleware import DEFAULT_CSP

pytestmark = pytest.mark.django_db(transaction=True)

# Registered before any script of the page runs (Playwright's init scripts are not subject to
# the page's CSP): every violation the browser reports, with the directive and what it blocked.
RECORD_VIOLATIONS = """
window.cumViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cumViolations.push(event.effectiveDirective + " " + (event.blockedURI || "inline"));
});
"""


def test_the_docs_page_renders_offline_without_csp_violations(live_server: Any, chromium: Any) -> None:
    context = chromium.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.add_init_script(RECORD_VIOLATIONS)
        console_errors: list[str] = []
        page_errors: list[str] = []
        requested: list[str] = []
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.on("request", lambda request: requested.append(request.url))

        response = page.goto(live_server.url + "/api/docs/")
        assert response is not None and response.status == 200
        assert response.headers["content-security-policy"] == DEFAULT_CSP

        # Swagger UI fetched /api/schema/ and drew every operation.
        page.locator(".opblock").first.wait_for(timeout=15_000)
        assert "Compte unique métropolitain API" in page.locator(".info .title").inner_text()
        assert page.locator(".opblock").count() >= 15
        assert page.locator(".opblock-tag", has_text="Cookie consent").count() == 1
        page.locator(".opblock-summary-path", has_text="/consent/api/v1/cookie/config").first.click()
        page.locator(".responses-table").first.wait_for()
        page.wait_for_load_state("networkidle")

        ours = urlsplit(live_server.url).netloc
        elsewhere = [url for url in requested if not url.startswith("data:") and urlsplit(url).netloc != ours]
        assert elsewhere == []
        assert any(url.endswith("/api/schema/") for url in requested), requested
        assert page.evaluate("window.cumViolations") == []
        assert console_errors == []
        assert page_errors == []
    finally:
        context.close()
