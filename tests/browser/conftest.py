"""Real headless Chromium (Debian's package) driven by Playwright, with axe-core checks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.conftest import PASSWORD

# The partners' simulators (real sockets) and their connectors, for the cards pages: the same
# fixtures as the connector tests'.
from tests.connectors.conftest import (  # noqa: F401 - fixtures
    library,
    library_client,
    library_sim,
    ticketing,
    ticketing_client,
    ticketing_sim,
    transport,
    transport_client,
    transport_sim,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# axe-core rule tags for WCAG 2.1 A and AA (RGAA 4.1 is mapped on WCAG 2.1 AA).
WCAG_AA_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# A desktop width and the narrowest phone width residents use (mobile first: WCAG 1.4.10 reflow).
WIDTHS = (1280, 360)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (installed by .ci/run)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    allow_orm_beside_playwright()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(locale="fr-FR", viewport={"width": 390, "height": 844}, bypass_csp=False)
    page = context.new_page()
    yield page
    context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core in the page; return WCAG 2.1 A/AA violations (id, impact, nodes)."""
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA_TAGS}})
    return [
        {
            "id": violation["id"],
            "impact": violation.get("impact"),
            "help": violation.get("help"),
            "targets": [node.get("target") for node in violation.get("nodes", [])][:5],
        }
        for violation in results.response.get("violations", [])
    ]


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the window (0 when it reflows)."""
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


def check_page(page: Any, language: str, where: str = "") -> None:
    """The page is in `language`, has no axe-core WCAG 2.1 A/AA violation at each of WIDTHS,
    and needs no horizontal scrolling at 360 px."""
    where = where or page.url
    assert page.locator("html").get_attribute("lang") == language
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        assert axe_violations(page) == [], (where, language, width)
        if width == 360:
            assert horizontal_overflow(page) <= 0, (where, language)


def sign_in(page: Any, base_url: str, email: str) -> None:
    """Sign in through the real sign-in page with the test password (tests.conftest.PASSWORD)."""
    page.goto(base_url + "/connexion/")
    page.locator("input[name=username]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url("**/compte/**")


@contextmanager
def signed_in_page(chromium: Any, base_url: str, email: str, language: str) -> Iterator[Any]:
    """A page of a new browser context in `language` (locale and language cookie), at the
    desktop width, with the resident signed in through the real sign-in page; the context is
    closed on leaving."""
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": WIDTHS[0], "height": 800}
    )
    try:
        context.add_cookies([{"name": "language", "value": language, "url": base_url}])
        page = context.new_page()
        sign_in(page, base_url, email)
        yield page
    finally:
        context.close()


def allow_orm_beside_playwright() -> None:
    """Playwright's sync API runs an event loop in its thread, which Django's ORM takes for an
    async context; the ORM use of tests (and of scenarios run by `in_browser`) is still
    synchronous and safe. Set by every way of starting a browser, so a test never depends on
    another one having started the session-wide browser first."""
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def in_browser(scenario: Callable[[Any], None], locale: str = "fr-FR") -> None:
    """Run `scenario(page)` in a fresh headless Chromium (phone-sized) on its own thread: for
    tests outside tests/browser/ (Playwright's sync API allows one instance per thread, and
    the `chromium` fixture keeps a session-wide one)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (installed by .ci/run)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    allow_orm_beside_playwright()

    def run() -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(locale=locale, viewport={"width": 390, "height": 844})
                scenario(context.new_page())
            finally:
                # A scenario may use the ORM (sign_in_through_the_partner reads the client):
                # Django then opened a database connection for it, which nothing else closes.
                # Left open, it outlives the test, and PostgreSQL refuses to drop the test
                # database at the end ("being accessed by other users"). Closed here, inside
                # Playwright's block: its event loop makes Django keep connections per context
                # (asgiref's Local), so after the block this thread would see none of them.
                connections.close_all()
                browser.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()
