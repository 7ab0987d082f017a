"""Mon compte › Personnalisation in a real browser, scanned with axe-core: French and English,
1280 px and 360 px (no horizontal scrolling there). A resident grants, declares (the quartier
list follows the commune), sees the interests inferred from their browsing and why, rules one
out, then withdraws and sees the data vanish.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.gate import consent_is_granted
from consent.services import resident_decision_record
from profiles.models import DeclaredProfile, Interest, InterestCorrection
from profiles.services import declared_update, interest_correct, page_view_record, subject_of
from tests.browser.conftest import WIDTHS, axe_violations, sign_in
from tests.browser.conftest import check_page as check

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/compte/personnalisation/"
DECLARED = "personalisation-declared"
BROWSING = "personalisation-browsing"
NEWS = "service-news-email"


def browse(user: Any, themes: list[str], site: str, days_ago: int) -> None:
    page_view_record(
        subject=subject_of(user),
        site=site,
        themes=themes,
        viewed_at=timezone.now() - timedelta(days=days_ago, hours=1),
    )


@pytest.fixture
def profile(resident: Any, signing_keys: Any) -> Any:
    """Everything granted, a declared profile, inferred interests and one correction."""
    for code in (DECLARED, NEWS, BROWSING):
        resident_decision_record(user=resident, purpose_code=code, grant=True)
    declared_update(
        user=resident,
        changes={
            "commune": "44109",
            "quartier": "ile-de-nantes",
            "themes": ["culture"],
            "language": "fr",
            "accessibility": ["larger-text"],
            "notification_frequency": "weekly",
        },
    )
    for days_ago in (6, 4, 2, 0):
        browse(resident, ["sport", "environment"], "www.nantes.fr", days_ago)
    browse(resident, ["sport"], "www.saint-herblain.fr", 1)
    browse(resident, ["housing"], "metropole.nantes.fr", 3)
    interest_correct(subject=subject_of(resident), theme="housing")
    return resident


@pytest.mark.parametrize("language", ["fr", "en"])
def test_pages_pass_axe_and_reflow(live_server: Any, chromium: Any, profile: Any, language: str) -> None:
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB", viewport={"width": WIDTHS[0], "height": 800}
    )
    try:
        context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
        page = context.new_page()
        sign_in(page, live_server.url, profile.email)
        page.goto(live_server.url + PAGE)
        heading = {"fr": "Personnalisation", "en": "Personalisation"}[language]
        assert page.get_by_role("heading", level=1).inner_text() == heading
        assert page.locator(".interest").count() == 2  # sport, environment; housing ruled out
        assert page.locator(".correction").count() == 1
        check(page, language, "personalisation page")

        # A form sent back with an error (a quartier of another commune, as without the script).
        page.select_option("#id_commune", "44143")
        page.evaluate(
            """() => {
                document.getElementById("quartier-field").hidden = false;
                const list = document.getElementById("id_quartier");
                list.disabled = false;
                for (const group of list.querySelectorAll("optgroup")) {
                    group.hidden = group.disabled = false;
                }
            }"""
        )
        page.select_option("#id_quartier", "ile-de-nantes")
        page.locator(f"#groupe-{DECLARED} form.profile-form button[type=submit]").click()
        page.wait_for_selector(".error-summary")
        assert page.locator("#id_quartier_error").count() == 1
        check(page, language, "personalisation page with an error")

        page.goto(live_server.url + PAGE + "interets/tout-supprimer/")
        check(page, language, "delete-all confirmation")
    finally:
        context.close()


def test_nothing_granted_passes_axe(live_server: Any, page: Any, resident: Any, signing_keys: Any) -> None:
    sign_in(page, live_server.url, resident.email)
    page.goto(live_server.url + PAGE)
    assert page.locator("form.profile-form").count() == 0
    check(page, "fr", "personalisation page, nothing granted")


def test_grant_declare_see_interests_correct_withdraw(
    live_server: Any, page: Any, resident: Any, signing_keys: Any
) -> None:
    sign_in(page, live_server.url, resident.email)
    page.goto(live_server.url + "/compte/")
    page.get_by_role(
        "link", name="Voir, corriger ou effacer mes données de personnalisation et mes centres d'intérêt"
    ).click()
    page.wait_for_url(f"**{PAGE}")

    # Grant the declared personalisation: one click, and the form appears.
    declared = page.locator(f"#groupe-{DECLARED}")
    assert declared.locator("form.profile-form").count() == 0
    declared.get_by_role("button", name="Donner mon accord").click()
    page.wait_for_url(f"**{PAGE}#groupe-{DECLARED}")
    assert page.get_by_role("status").inner_text().startswith("Votre accord est enregistré")

    # The quartier list is there for Nantes only (the script hides it for other communes).
    declared = page.locator(f"#groupe-{DECLARED}")
    declared.get_by_label("Commune").select_option(label="Rezé")
    assert not page.locator("#quartier-field").is_visible()
    declared.get_by_label("Commune").select_option(label="Nantes")
    assert page.locator("#quartier-field").is_visible()
    declared.get_by_label("Quartier").select_option("ile-de-nantes")
    declared.get_by_label("Culture").check()
    declared.get_by_label("Déplacements").check()
    declared.get_by_label("English").check()
    declared.get_by_label("Moins d'animations").check()
    declared.get_by_role("button", name="Enregistrer").click()
    page.wait_for_url(f"**{PAGE}#groupe-{DECLARED}")
    assert page.get_by_role("status").inner_text() == "Vos choix sont enregistrés."
    stored = DeclaredProfile.objects.get(user=resident)
    assert (stored.commune, stored.quartier, stored.themes, stored.language, stored.accessibility) == (
        "44109",
        "ile-de-nantes",
        ["culture", "mobility"],
        "en",
        ["reduced-motion"],
    )
    assert page.locator("#id_commune").input_value() == "44109"

    # Grant browsing personalisation; partner sites report page views; the page explains them.
    page.locator(f"#groupe-{BROWSING}").get_by_role("button", name="Donner mon accord").click()
    page.wait_for_url(f"**{PAGE}#groupe-{BROWSING}")
    for days_ago in (3, 1, 0):
        browse(resident, ["sport", "culture"], "www.nantes.fr", days_ago)
    browse(resident, ["sport"], "www.reze.fr", 2)
    page.reload()
    sport = page.locator(".interest").filter(has=page.get_by_role("heading", name="Sport"))
    assert "Déduit de 4 pages consultées entre le" in sport.inner_text()
    assert "www.reze.fr : 1 page, le" in sport.inner_text()
    assert "Intérêt :" in sport.inner_text()

    # "Pas intéressé(e)": the interest goes, the correction is listed, browsing no longer infers it.
    page.get_by_role("button", name="Pas intéressé(e) (Culture)").click()
    page.wait_for_url(f"**{PAGE}#interets")
    assert "« Culture » ne sera plus déduit" in page.get_by_role("status").inner_text()
    assert page.get_by_role("heading", name="Culture", level=3).count() == 0
    assert page.locator("#corrections").get_by_text("Culture", exact=True).count() == 1
    assert InterestCorrection.objects.filter(user=resident, theme="culture").exists()
    assert axe_violations(page) == []

    # Withdraw browsing: interests and corrections vanish, in the page and in storage.
    page.locator(f"#groupe-{BROWSING}").get_by_role(
        "button", name="Retirer mon accord et effacer ces informations"
    ).click()
    page.wait_for_url(f"**{PAGE}#groupe-{BROWSING}")
    assert "ont été effacés" in page.get_by_role("status").inner_text()
    assert page.locator(".interest").count() == 0 and page.locator("#corrections").count() == 0
    assert not Interest.objects.filter(user=resident).exists()
    assert not InterestCorrection.objects.filter(user=resident).exists()

    # Withdraw the declared personalisation: the form and its values vanish.
    page.locator(f"#groupe-{DECLARED}").get_by_role(
        "button", name="Retirer mon accord et effacer ces informations"
    ).click()
    page.wait_for_url(f"**{PAGE}#groupe-{DECLARED}")
    assert "Votre commune, votre quartier" in page.get_by_role("status").inner_text()
    assert page.locator("#id_commune").count() == 0
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)
    assert not DeclaredProfile.objects.filter(user=resident).exists()
    assert axe_violations(page) == []
