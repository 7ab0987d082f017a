"""The DPO's Personnalisation page and the demo portal page in a real browser, scanned with
axe-core in French and English at 1280 px and 360 px (no horizontal scrolling there)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client as BrowserClient
from django.utils import timezone

from consent.purpose_data import DataSubject
from identity.demo import DEMO_EMAIL, DEMO_PASSWORD
from identity.models import User
from profiles.selectors import half_life_days
from profiles.services import declared_update, page_view_record
from tests.browser.conftest import WIDTHS
from tests.browser.conftest import check_page as check
from tests.conftest import MFA_AMR, open_session
from tests.profiles.conftest import BROWSING, DECLARED, decide

pytestmark = pytest.mark.django_db(transaction=True)


def _context(chromium: Any, base_url: str, language: str) -> Any:
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": WIDTHS[0], "height": 800}
    )
    context.add_cookies([{"name": "language", "value": language, "url": base_url}])
    return context


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_dpo_personalisation_page_passes_axe_and_reflows(
    live_server: Any, chromium: Any, make_resident: Any, language: str
) -> None:
    dpo = make_resident("dpo@nantesmetropole.fr")
    dpo.is_staff = True
    dpo.save(update_fields=["is_staff"])
    dpo.groups.add(Group.objects.get_or_create(name="dpo")[0])
    session = open_session(BrowserClient(), dpo, MFA_AMR).cookies[settings.SESSION_COOKIE_NAME].value
    context = _context(chromium, live_server.url, language)
    try:
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
        )
        page = context.new_page()
        page.goto(live_server.url + "/dpo/personnalisation/")
        heading = {"fr": "Personnalisation : demi-vie", "en": "Personalisation: half-life"}[language]
        assert page.get_by_role("heading", level=1).inner_text().startswith(heading)
        check(page, language)

        page.locator("#id_half_life_days").fill("0")
        page.locator("#id_half_life_days").press("Enter")
        page.wait_for_selector(".error-summary")
        check(page, language, "half-life refused")

        page.locator("#id_half_life_days").fill("14")
        page.locator("#id_half_life_days").press("Enter")
        page.wait_for_selector(".message--success")
        assert half_life_days() == 14
        check(page, language, "half-life saved")
    finally:
        context.close()


@pytest.fixture
def demo_server(live_server: Any, settings: Any, tmp_path: Any) -> str:
    settings.ISSUER = live_server.url
    settings.VAR_DIR = tmp_path
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    call_command("ensure_signing_keys")
    call_command("load_demo")
    return live_server.url


def _demo_sign_in(page: Any, base_url: str) -> None:
    page.goto(base_url + "/demo/start")
    page.locator("input[name=username]").fill(DEMO_EMAIL)
    page.locator("input[name=password]").fill(DEMO_PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_selector("form.decision")
    page.locator("form.decision button[value=allow]").click()
    page.wait_for_selector("#id-token-claims")


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_demo_portal_page_signed_out_passes_axe(demo_server: str, chromium: Any, language: str) -> None:
    context = _context(chromium, demo_server, language)
    try:
        page = context.new_page()
        page.goto(demo_server + "/demo/portail/")
        check(page, language)
    finally:
        context.close()


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_demo_portal_shows_then_hides_what_the_resident_withdraws(
    demo_server: str, chromium: Any, language: str
) -> None:
    resident = User.objects.get(email=DEMO_EMAIL)
    decide(resident, DECLARED, True)
    decide(resident, BROWSING, True)
    declared_update(
        user=resident, changes={"commune": "44109", "themes": ["culture"], "accessibility": ["larger-text"]}
    )
    page_view_record(
        subject=DataSubject(user_id=resident.pk),
        site="www.nantes.fr",
        themes=["sport"],
        viewed_at=timezone.now(),
    )
    context = _context(chromium, demo_server, language)
    try:
        page = context.new_page()
        _demo_sign_in(page, demo_server)
        page.goto(demo_server + "/demo/portail/")
        assert page.locator("#commune-news li").count() == 2
        assert page.locator("#themes li").count() == 2
        check(page, language, "portal with items")

        decide(resident, DECLARED, False)
        page.reload()
        assert page.locator("#commune-news li").count() == 0
        assert page.locator("#themes li").count() == 1
        check(page, language, "portal after withdrawing the declared data")

        decide(resident, BROWSING, False)
        page.reload()
        assert page.locator("#nothing-allowed").count() == 1
        check(page, language, "portal with nothing allowed")
    finally:
        context.close()
