"""Second-factor pages in a real headless Chromium, scanned with axe-core (WCAG 2.1 A/AA),
in French and English, phone-sized (tests/test_accounts_browser.py's worker-thread pattern)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from identity.mfa import clock, services
from identity.mfa.models import Passkey
from tests.browser.conftest import axe_violations
from tests.conftest import PASSWORD
from tests.mfa.conftest import rfc6238
from tests.test_accounts_browser import in_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIGNED_IN_PAGES = [
    "/compte/",
    "/compte/securite/",
    "/compte/securite/application/ajouter/",
    "/compte/securite/codes-de-secours/",
    "/compte/securite/cles/ajouter/",
]


def test_mfa_pages_pass_axe_in_both_languages(live_server: Any, make_resident: Any) -> None:
    resident = make_resident("mfa@example.org")
    device, key = services.totp_enrolment_start(user=resident)
    assert services.totp_enrolment_confirm(
        user=resident, device_id=device.pk, code=rfc6238(key, time.time() - 30), name="Téléphone"
    ).ok
    services.backup_codes_generate(user=resident)
    factor_pages = [
        f"/compte/securite/totp/{device.pk}/renommer/",
        f"/compte/securite/totp/{device.pk}/supprimer/",
    ]
    in_browser(lambda page: scenario(live_server.url, resident.email, key, factor_pages, page))


def scenario(base: str, email: str, key: bytes, factor_pages: list[str], page: Any) -> None:
    page.goto(base + "/connexion/")
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/connexion/verification/")
    assert page.get_by_role("heading", name="Vérification en deux étapes").is_visible()
    assert axe_violations(page) == []

    # A wrong code: the error summary is announced, links to the field, and passes axe.
    wrong = str((int(rfc6238(key, time.time())) + 1) % 1_000_000).zfill(6)
    page.get_by_label("Code à 6 chiffres").fill(wrong)
    page.get_by_role("button", name="Vérifier le code").click()
    page.locator(".error-summary[role=alert]").wait_for()  # the answer, not a fixed delay
    assert axe_violations(page) == []
    # The 1 s throttle after one failure: move the MFA clock past it rather than sleep (the
    # live server runs in this process; identity.mfa.clock is the MFA code's only clock).
    real_now = clock.now
    clock.now = lambda: real_now() + 2  # type: ignore[assignment]
    try:
        page.get_by_label("Code à 6 chiffres").fill(rfc6238(key, clock.now()))
        page.get_by_role("button", name="Vérifier le code").click()
        page.wait_for_url("**/compte/")
    finally:
        clock.now = real_now  # type: ignore[assignment]

    for path in SIGNED_IN_PAGES + factor_pages:
        page.goto(base + path)
        assert axe_violations(page) == [], path
    page.goto(base + "/compte/securite/codes-de-secours/")
    page.get_by_role("button", name="Créer de nouveaux codes").click()
    page.locator("ol.codes li").nth(9).wait_for()
    assert page.locator("ol.codes li").count() == 10
    assert axe_violations(page) == []

    page.get_by_role("button", name="English – changer de langue").click()
    page.wait_for_selector("html[lang=en]")
    for path in SIGNED_IN_PAGES + factor_pages:
        page.goto(base + path)
        assert page.locator("html").get_attribute("lang") == "en"
        assert axe_violations(page) == [], path
    assert page.get_by_role("heading", level=1).first.inner_text() != ""
    # Verification page in English, as step-up from the signed-in session.
    page.goto(base + "/connexion/verification/?next=/compte/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="Two-step verification").is_visible()
    assert axe_violations(page) == []
    page.goto(base + "/connexion/cle/")
    assert axe_violations(page) == []


def test_passkeys_in_chromium_with_a_virtual_authenticator(
    live_server: Any, make_resident: Any, settings: Any
) -> None:
    """static/mfa/webauthn.js end to end: registration, passwordless sign-in and second factor,
    against Chromium's virtual authenticator (DevTools WebAuthn domain)."""
    settings.ISSUER = live_server.url  # http://localhost:<port>: a secure context with a host name
    resident = make_resident("passkey@example.org")
    in_browser(lambda page: passkey_scenario(live_server.url, resident.email, page))

    passkey = Passkey.objects.get(user=resident)
    assert passkey.name == "Ordinateur de test" and passkey.sign_count >= 1


def passkey_scenario(base: str, email: str, page: Any) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )

    def sign_in_with_password() -> None:
        page.goto(base + "/connexion/")
        page.get_by_label("Adresse e-mail").fill(email)
        page.get_by_label("Mot de passe").fill(PASSWORD)
        page.get_by_role("button", name="Se connecter").click()

    def sign_out() -> None:
        page.goto(base + "/deconnexion/")
        page.get_by_role("button", name="Me déconnecter").click()
        page.wait_for_url(base + "/")

    sign_in_with_password()
    page.wait_for_url("**/compte/")
    page.goto(base + "/compte/securite/cles/ajouter/")
    assert page.locator("[data-webauthn-unsupported]").is_hidden()
    page.get_by_label("Nom de la clé d'accès").fill("Ordinateur de test")
    page.get_by_role("button", name="Créer la clé d'accès").click()
    page.wait_for_url("**/compte/securite/")
    assert page.get_by_role("heading", name="Ordinateur de test").is_visible()

    # Passwordless, from the login page's link.
    sign_out()
    page.goto(base + "/connexion/")
    page.get_by_role("link", name="Se connecter avec une clé d'accès").click()
    page.get_by_role("button", name="Utiliser ma clé d'accès").click()
    page.wait_for_url("**/compte/")
    assert page.get_by_role("heading", name="Mon compte").is_visible()

    # As the second factor after the password.
    sign_out()
    sign_in_with_password()
    page.wait_for_url("**/connexion/verification/")
    page.get_by_role("button", name="Utiliser ma clé d'accès").click()
    page.wait_for_url("**/compte/")
