"""Mon compte › Personnalisation: the declared profile grouped by the purpose that governs
each field, the interests inferred from browsing with why, and one-click switches; every
form and every failure path, through Django's test client and the real services."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone

from consent.gate import consent_is_granted
from consent.models import LedgerEvent, Purpose
from consent.selectors import event_details, purpose_by_code
from consent.services import notice_publish
from identity.models import AuditEvent
from profiles.models import DeclaredProfile, Interest, InterestCorrection
from profiles.selectors import declared_view
from profiles.services import declared_update, page_view_record, subject_of
from tests.conftest import open_session
from tests.profiles.conftest import BROWSING, DECLARED, NEWS, decide
from tests.security.test_ledger_tampering import execute, unlock

pytestmark = pytest.mark.django_db

PAGE = "/compte/personnalisation/"
DECLARED_FORM = {
    "commune": "44109",
    "quartier": "ile-de-nantes",
    "themes": ["culture", "mobility"],
    "language": "en",
    "accessibility": ["larger-text", "reduced-motion"],
}


def switch(client: BrowserClient, code: str, decision: str) -> Any:
    return client.post(f"{PAGE}{code}/decision/", {"decision": decision})


def save(client: BrowserClient, code: str, data: dict[str, Any]) -> Any:
    return client.post(f"{PAGE}{code}/donnees/", data)


def section(html: str, code: str) -> str:
    found = re.search(rf'<section class="purpose" id="groupe-{code}".*?</section>', html, re.S)
    assert found, f"no section for {code}"
    return found.group(0)


def view(subject_user: Any, themes: list[str], site: str = "www.nantes.fr", days_ago: int = 0) -> list[str]:
    return page_view_record(
        subject=subject_of(subject_user),
        site=site,
        themes=themes,
        viewed_at=timezone.now() - timedelta(days=days_ago),
    )


@pytest.fixture
def browser(resident: Any, signing_keys: Any) -> BrowserClient:
    return open_session(BrowserClient(), resident, ["pwd"])


@pytest.fixture
def granted(browser: BrowserClient, resident: Any) -> BrowserClient:
    for code in (DECLARED, NEWS, BROWSING):
        decide(resident, code, True)
    return browser


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", PAGE, {}),
        ("post", f"{PAGE}{DECLARED}/decision/", {"decision": "grant"}),
        ("post", f"{PAGE}{DECLARED}/donnees/", {"commune": "44109"}),
        ("post", f"{PAGE}interets/culture/pas-interesse/", {}),
        ("post", f"{PAGE}interets/culture/supprimer/", {}),
        ("post", f"{PAGE}interets/culture/annuler/", {}),
        ("get", f"{PAGE}interets/tout-supprimer/", {}),
        ("post", f"{PAGE}interets/tout-supprimer/", {}),
    ],
)
def test_sign_in_required(client: BrowserClient, db: Any, method: str, path: str, data: dict) -> None:
    response = getattr(client, method)(path, data)
    assert response.status_code == 302 and "/connexion/" in response["Location"]
    assert LedgerEvent.objects.count() == 0 and not DeclaredProfile.objects.exists()


def test_every_post_needs_the_csrf_token(resident: Any, signing_keys: Any) -> None:
    for code in (DECLARED, NEWS, BROWSING):
        decide(resident, code, True)
    view(resident, ["culture"])
    browser = open_session(BrowserClient(enforce_csrf_checks=True), resident, ["pwd"])
    assert switch(browser, DECLARED, "withdraw").status_code == 403
    assert save(browser, DECLARED, DECLARED_FORM).status_code == 403
    for action in ("pas-interesse", "supprimer", "annuler"):
        assert browser.post(f"{PAGE}interets/culture/{action}/").status_code == 403
    assert browser.post(f"{PAGE}interets/tout-supprimer/").status_code == 403
    assert consent_is_granted(user=resident, purpose_code=DECLARED)
    assert not DeclaredProfile.objects.exists()
    assert Interest.objects.filter(user=resident, theme="culture").exists()
    assert not InterestCorrection.objects.exists()


def test_get_only_page_and_post_only_actions(granted: BrowserClient) -> None:
    assert granted.post(PAGE).status_code == 405
    assert granted.get(f"{PAGE}{DECLARED}/decision/").status_code == 405
    assert granted.get(f"{PAGE}{DECLARED}/donnees/").status_code == 405
    assert granted.get(f"{PAGE}interets/culture/supprimer/").status_code == 405


# --- the page and the switches ------------------------------------------------------------------


def test_nothing_granted_shows_why_fields_are_not_editable(browser: BrowserClient) -> None:
    response = browser.get(PAGE)
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert "<h1>Personnalisation</h1>" in html
    assert '<a href="/compte/personnalisation/" aria-current="page">Personnalisation</a>' in html
    for code in (DECLARED, NEWS, BROWSING):
        part = section(html, code)
        assert "pas donné" in part
        assert f'href="/confidentialite/notices/{code}/"' in part
        assert f'action="/compte/personnalisation/{code}/decision/"' in part
        assert 'value="grant"' in part and 'value="withdraw"' not in part
        assert "Sans votre accord, nous ne gardons aucune information de cette rubrique" in part
        assert "/donnees/" not in part and 'name="commune"' not in part
    assert "Personnaliser le portail à partir de votre profil" in html
    assert "Personnaliser à partir de votre navigation (cookies)" in html
    assert 'src="/static/profiles/personalisation.js"' in html and "<script>" not in html


def test_grant_by_one_click_then_the_form_appears(browser: BrowserClient, resident: Any) -> None:
    response = switch(browser, DECLARED, "grant")
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}#groupe-{DECLARED}"
    assert consent_is_granted(user=resident, purpose_code=DECLARED)
    event = LedgerEvent.objects.get()
    assert (event.event_type, event.collection_method, event.actor_type) == ("given", "web_form", "resident")
    html = unescape(browser.get(PAGE).content.decode())
    assert "Votre accord est enregistré" in html
    part = section(html, DECLARED)
    assert "badge--ok" in part and 'value="withdraw"' in part
    assert f'action="/compte/personnalisation/{DECLARED}/donnees/"' in part
    assert part.count("<option value=") == 1 + 24 + 1 + 11  # communes and quartiers, each with "none"
    assert 'lang="en">English</label>' in part
    assert 'name="commune"' not in section(html, NEWS)  # the other purpose is still not granted
    assert switch(browser, DECLARED, "grant").status_code == 302  # a second click changes nothing
    assert LedgerEvent.objects.count() == 1
    assert "Ce choix était déjà enregistré" in unescape(browser.get(PAGE).content.decode())


def test_declare_everything_and_read_it_back(granted: BrowserClient, resident: Any) -> None:
    response = save(granted, DECLARED, DECLARED_FORM)
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#groupe-{DECLARED}"
    response = save(granted, NEWS, {"notification_frequency": "weekly", "notification_themes": ["sport"]})
    assert response.status_code == 302
    values = declared_view(user=resident).values
    assert {name: values[name] for name in DECLARED_FORM} == DECLARED_FORM
    assert values["notification_frequency"] == "weekly" and values["notification_themes"] == ["sport"]
    html = unescape(granted.get(PAGE).content.decode())
    assert "Vos choix sont enregistrés." in html
    part = section(html, DECLARED)
    assert '<option value="44109" selected>Nantes</option>' in part
    assert '<option value="ile-de-nantes" selected>' in part
    for code in ("culture", "mobility", "larger-text", "reduced-motion"):
        assert re.search(rf'value="{code}" checked>', part), code
    assert re.search(r'name="language" value="en" checked>', part)
    assert not re.search(r'value="sport" checked>', part)
    assert re.search(r'name="notification_themes" value="sport" checked>', section(html, NEWS))
    assert AuditEvent.objects.filter(event="profile.declared_updated").count() == 2


def test_saving_the_same_values_again_says_nothing_changed(granted: BrowserClient) -> None:
    save(granted, DECLARED, DECLARED_FORM)
    granted.get(PAGE)  # consume the first message
    save(granted, DECLARED, DECLARED_FORM)
    assert "Rien n'a changé." in unescape(granted.get(PAGE).content.decode())
    assert AuditEvent.objects.filter(event="profile.declared_updated").count() == 1


def test_unticking_everything_clears_the_fields(granted: BrowserClient, resident: Any) -> None:
    save(granted, DECLARED, DECLARED_FORM)
    # Unticked boxes and a disabled (hidden) quartier list are not sent at all.
    save(granted, DECLARED, {"commune": "", "language": ""})
    values = declared_view(user=resident).values
    assert values["themes"] == [] and values["accessibility"] == [] and values["quartier"] == ""
    assert values["commune"] == "" and values["language"] == ""


@pytest.mark.parametrize(
    ("code", "data", "field", "message"),
    [
        (DECLARED, {"commune": "75056"}, "commune", "Choisissez votre commune dans la liste des 24 communes"),
        (DECLARED, {"commune": "44143", "quartier": "ile-de-nantes"}, "quartier", "pas dans la commune"),
        (DECLARED, {"commune": "", "quartier": "ile-de-nantes"}, "quartier", "pas dans la commune"),
        (DECLARED, {"themes": ["culture", "astrology"]}, "themes", "Choisissez vos thèmes"),
        (DECLARED, {"language": "de"}, "language", "Choisissez une langue"),
        (DECLARED, {"accessibility": ["braille"]}, "accessibility", "Choisissez vos préférences"),
        (NEWS, {"notification_frequency": "hourly"}, "notification_frequency", "Choisissez une fréquence"),
        (NEWS, {"notification_themes": ["astrology"]}, "notification_themes", "Choisissez vos thèmes"),
    ],
)
def test_bad_values_are_explained_in_french_and_nothing_is_lost(
    granted: BrowserClient, resident: Any, code: str, data: dict, field: str, message: str
) -> None:
    sent = {**DECLARED_FORM, **data} if code == DECLARED else data
    response = save(granted, code, sent)
    assert response.status_code == 400
    html = unescape(response.content.decode())
    assert html.count('class="error-summary"') == 1 and "Il y a un problème" in html
    assert "<title>Erreur – Personnalisation" in html
    assert f'id="id_{field}_error"' in html and message in html
    assert "must be" not in html and "unknown" not in html  # the service's developer messages
    # What was sent is shown again (the commune, the ticked boxes)...
    part = section(html, code)
    if code == DECLARED:
        if field != "commune":
            assert re.search(rf'<option value="{sent["commune"]}" selected>', part)
        assert re.search(r'value="culture" checked>', part)
        if field != "accessibility":
            assert re.search(r'value="larger-text" checked>', part)
    # ...and nothing was written.
    assert not DeclaredProfile.objects.filter(user=resident).exists()


def test_saving_while_the_purpose_is_not_granted_is_readable(browser: BrowserClient, resident: Any) -> None:
    response = save(browser, DECLARED, DECLARED_FORM)
    assert response.status_code == 409
    html = unescape(response.content.decode())
    assert "Vos choix n'ont pas été enregistrés" in html
    assert "Personnaliser le portail à partir de votre profil" in html
    # What was chosen is shown back in words, with the switch to grant.
    part = section(html, DECLARED)
    assert "Commune : Nantes" in part and "Thèmes suivis : Culture, Déplacements" in part
    assert "Quartier : Île de Nantes" in part or "Quartier : Île-de-Nantes" in part
    assert 'value="grant"' in part
    assert not DeclaredProfile.objects.exists()


def test_withdraw_erases_and_the_page_shows_it(granted: BrowserClient, resident: Any) -> None:
    save(granted, DECLARED, DECLARED_FORM)
    save(granted, NEWS, {"notification_frequency": "monthly"})
    response = switch(granted, DECLARED, "withdraw")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#groupe-{DECLARED}"
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)
    profile = DeclaredProfile.objects.get(user=resident)
    assert (profile.commune, profile.quartier, profile.themes, profile.language, profile.accessibility) == (
        "",
        "",
        [],
        "",
        [],
    )
    assert profile.notification_frequency == "monthly"  # the other purpose's field stays
    event = LedgerEvent.objects.order_by("-seq").first()
    assert event is not None and event.event_type == "withdrawn"
    assert "profiles.declared:personalisation-declared" in event_details(event)["erased"]
    html = unescape(granted.get(PAGE).content.decode())
    assert "Votre accord est retiré" in html and "ont été effacés" in html
    part = section(html, DECLARED)
    assert "pas donné" in part and 'name="commune"' not in part and "Nantes</option>" not in part
    assert re.search(r'name="notification_frequency" value="monthly" checked>', section(html, NEWS))


def test_grant_again_starts_empty(granted: BrowserClient, resident: Any) -> None:
    save(granted, DECLARED, DECLARED_FORM)
    switch(granted, DECLARED, "withdraw")
    switch(granted, DECLARED, "grant")
    part = section(unescape(granted.get(PAGE).content.decode()), DECLARED)
    assert 'name="commune"' in part
    # Only the "none" choices are chosen: no commune, no quartier, no language preference.
    assert re.findall(r'value="([^"]*)"(?: selected| checked)>', part) == ["", "", ""]


def test_renewal_required_stops_the_form_and_renewal_starts_empty(
    granted: BrowserClient, resident: Any
) -> None:
    save(granted, DECLARED, DECLARED_FORM)
    notice_publish(purpose=purpose_by_code(DECLARED), text_fr="Nouveau.", text_en="New.", material=True)
    part = section(unescape(granted.get(PAGE).content.decode()), DECLARED)
    assert "à renouveler" in part and "Renouveler mon accord" in part
    assert 'name="commune"' not in part and "Renouveler votre accord repart de zéro" in part
    switch(granted, DECLARED, "grant")
    assert LedgerEvent.objects.order_by("-seq").first().event_type == "renewed"  # type: ignore[union-attr]
    assert declared_view(user=resident).values["commune"] == ""


def test_unknown_decision_and_purposes_of_other_pages(granted: BrowserClient) -> None:
    before = LedgerEvent.objects.count()
    assert switch(granted, DECLARED, "toggle").status_code == 400
    assert switch(granted, "audience-measurement", "withdraw").status_code == 404
    assert switch(granted, "no-such-purpose", "grant").status_code == 404
    assert save(granted, BROWSING, {"commune": "44109"}).status_code == 404
    assert save(granted, "no-such-purpose", {"commune": "44109"}).status_code == 404
    assert LedgerEvent.objects.count() == before


def test_an_altered_ledger_row_gives_a_readable_503(granted: BrowserClient) -> None:
    event = LedgerEvent.objects.order_by("seq").first()
    assert event is not None
    savepoint = transaction.savepoint()
    try:
        unlock()
        execute(
            "UPDATE consent_ledgerevent SET collection_method = %s WHERE seq = %s", ["telepathy", event.seq]
        )
        response = granted.get(PAGE)
        assert response.status_code == 503
        assert "momentanément illisible" in unescape(response.content.decode())
    finally:
        transaction.savepoint_rollback(savepoint)


def test_an_altered_ledger_head_writes_nothing_and_says_so(granted: BrowserClient, resident: Any) -> None:
    count = LedgerEvent.objects.count()
    execute("UPDATE consent_ledgerhead SET size = %s WHERE id = 1", [count + 5])
    response = switch(granted, BROWSING, "withdraw")
    assert response.status_code == 503
    assert "Votre choix n'a pas pu être enregistré" in unescape(response.content.decode())
    assert LedgerEvent.objects.count() == count
    assert consent_is_granted(user=resident, purpose_code=BROWSING)


# --- inferred interests -------------------------------------------------------------------------


def test_interests_are_explained(granted: BrowserClient, resident: Any) -> None:
    for days_ago in (3, 2, 1, 0):
        view(resident, ["culture", "sport"], days_ago=days_ago)
    view(resident, ["culture"], site="www.reze.fr", days_ago=1)
    html = unescape(granted.get(PAGE).content.decode())
    part = section(html, BROWSING)
    assert "Centres d'intérêt déduits de votre navigation" in part
    assert '<h3 id="interet-culture">Culture</h3>' in part and '<h3 id="interet-sport">Sport</h3>' in part
    assert part.index("interet-culture") < part.index("interet-sport")  # strongest first
    assert "Intérêt : <strong>moyen</strong>" in part
    assert "Déduit de 5 pages consultées entre le" in part
    assert "www.nantes.fr : 4 pages, du" in part and "www.reze.fr : 1 page, le" in part
    assert "moitié moins au bout de 30 jours" in part
    assert "ne sera plus jamais déduit" in part and "il peut revenir" in part
    assert "0.9" not in part  # a word, not the weight


def test_not_interested_wins_over_browsing_and_can_be_undone(granted: BrowserClient, resident: Any) -> None:
    view(resident, ["culture", "sport"])
    response = granted.post(f"{PAGE}interets/culture/pas-interesse/")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#interets"
    html = unescape(granted.get(PAGE).content.decode())
    assert "« Culture » ne sera plus déduit de votre navigation." in html
    part = section(html, BROWSING)
    assert 'id="interet-culture"' not in part and 'id="interet-sport"' in part
    assert "Thèmes que vous avez écartés" in part and "interets/culture/annuler/" in part
    assert view(resident, ["culture", "sport"]) == ["sport"]  # the correction wins
    assert AuditEvent.objects.filter(event="profile.interest_corrected").count() == 1

    response = granted.post(f"{PAGE}interets/culture/annuler/")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#corrections"
    html = unescape(granted.get(PAGE).content.decode())
    assert "« Culture » pourra de nouveau être déduit" in html
    assert "Vous n'avez écarté aucun thème." in html
    assert view(resident, ["culture"]) == ["culture"]
    granted.post(f"{PAGE}interets/culture/annuler/")
    assert "Ce choix était déjà annulé." in unescape(granted.get(PAGE).content.decode())


def test_delete_one_it_may_come_back(granted: BrowserClient, resident: Any) -> None:
    view(resident, ["culture", "sport"])
    response = granted.post(f"{PAGE}interets/culture/supprimer/")
    assert response.status_code == 302
    html = unescape(granted.get(PAGE).content.decode())
    assert "« Culture » est supprimé de vos centres d'intérêt" in html
    assert 'id="interet-culture"' not in html and 'id="interet-sport"' in html
    assert not InterestCorrection.objects.exists()
    granted.post(f"{PAGE}interets/culture/supprimer/")
    assert "Ce centre d'intérêt était déjà supprimé." in unescape(granted.get(PAGE).content.decode())
    view(resident, ["culture"])  # browsing again infers it again
    assert 'id="interet-culture"' in unescape(granted.get(PAGE).content.decode())


def test_delete_all_asks_first_and_keeps_corrections(granted: BrowserClient, resident: Any) -> None:
    view(resident, ["culture", "sport", "housing"])
    granted.post(f"{PAGE}interets/housing/pas-interesse/")
    assert 'href="/compte/personnalisation/interets/tout-supprimer/"' in unescape(
        granted.get(PAGE).content.decode()
    )
    confirm = granted.get(f"{PAGE}interets/tout-supprimer/")
    assert confirm.status_code == 200
    html = unescape(confirm.content.decode())
    assert "Nous allons oublier les 2 centres d'intérêt" in html
    assert "Oui, tout supprimer" in html and "sont gardés" in html
    assert Interest.objects.filter(user=resident).count() == 2  # the GET changed nothing
    response = granted.post(f"{PAGE}interets/tout-supprimer/")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#interets"
    assert not Interest.objects.filter(user=resident).exists()
    assert InterestCorrection.objects.filter(user=resident, theme="housing").exists()
    html = unescape(granted.get(PAGE).content.decode())
    assert "2 centres d'intérêt supprimés." in html
    assert "Aucun centre d'intérêt n'est déduit de votre navigation pour le moment." in html
    granted.post(f"{PAGE}interets/tout-supprimer/")
    assert "Il n'y avait aucun centre d'intérêt à supprimer." in unescape(granted.get(PAGE).content.decode())


def test_unknown_theme_is_404(granted: BrowserClient) -> None:
    for action in ("pas-interesse", "supprimer", "annuler"):
        assert granted.post(f"{PAGE}interets/astrology/{action}/").status_code == 404
    assert not InterestCorrection.objects.exists()


def test_not_interested_without_the_purpose_is_refused_readably(
    browser: BrowserClient, resident: Any
) -> None:
    response = browser.post(f"{PAGE}interets/culture/pas-interesse/")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#groupe-{BROWSING}"
    assert "la personnalisation à partir de votre navigation n'est pas activée" in (
        unescape(browser.get(PAGE).content.decode())
    )
    assert not InterestCorrection.objects.exists()


def test_withdrawing_browsing_erases_interests_and_corrections(granted: BrowserClient, resident: Any) -> None:
    view(resident, ["culture", "sport"])
    granted.post(f"{PAGE}interets/sport/pas-interesse/")
    switch(granted, BROWSING, "withdraw")
    assert not Interest.objects.exists() and not InterestCorrection.objects.exists()
    html = unescape(granted.get(PAGE).content.decode())
    assert "Vos centres d'intérêt déduits de votre navigation" in html and "ont été effacés" in html
    part = section(html, BROWSING)
    assert "interet-culture" not in part and "Thèmes que vous avez écartés" not in part
    switch(granted, BROWSING, "grant")
    part = section(unescape(granted.get(PAGE).content.decode()), BROWSING)
    assert "Aucun centre d'intérêt n'est déduit" in part and "Vous n'avez écarté aucun thème." in part


# --- one resident never sees another's ----------------------------------------------------------


def test_another_residents_data_is_never_shown_nor_touched(
    granted: BrowserClient, resident: Any, make_resident: Any
) -> None:
    other = make_resident("dominique@example.org")
    for code in (DECLARED, NEWS, BROWSING):
        decide(other, code, True)
    declared_update(user=other, changes={"commune": "44143", "themes": ["health"]})
    view(other, ["health", "seniors"], site="www.saint-herblain.fr")
    html = unescape(granted.get(PAGE).content.decode())
    assert '<option value="44143" selected>' not in html and 'value="health" checked>' not in html
    assert "interet-health" not in html and "saint-herblain" not in html
    granted.post(f"{PAGE}interets/health/supprimer/")
    granted.post(f"{PAGE}interets/seniors/pas-interesse/")
    granted.post(f"{PAGE}interets/tout-supprimer/")
    switch(granted, BROWSING, "withdraw")
    assert Interest.objects.filter(user=other).count() == 2
    assert not InterestCorrection.objects.filter(user=other).exists()
    assert consent_is_granted(user=other, purpose_code=BROWSING)


# --- Mon compte ---------------------------------------------------------------------------------


def test_mon_compte_links_and_summarises_the_section(granted: BrowserClient, resident: Any) -> None:
    save(granted, DECLARED, {"commune": "44109", "themes": ["culture"]})
    view(resident, ["sport"])
    html = unescape(granted.get("/compte/").content.decode())
    assert 'href="/compte/personnalisation/"' in html
    assert (
        "Personnalisation à partir de votre profil : activée. Vous avez indiqué : votre commune, vos thèmes."
        in (html)
    )
    assert "Personnalisation à partir de votre navigation : activée, 1 centre d'intérêt déduit." in html
    switch(granted, DECLARED, "withdraw")
    switch(granted, BROWSING, "withdraw")
    html = unescape(granted.get("/compte/").content.decode())
    assert "Personnalisation à partir de votre profil : pas activée." in html
    assert "Personnalisation à partir de votre navigation : pas activée." in html


def test_the_page_in_english(granted: BrowserClient, resident: Any) -> None:
    view(resident, ["mobility"])
    granted.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    html = unescape(granted.get(PAGE).content.decode())
    assert "<h1>Personalisation</h1>" in html
    assert "Interests inferred from your browsing" in html and "Getting around" in html
    assert "Not interested" in html and "Withdraw my consent and erase this information" in html


def test_the_privacy_policy_says_where_to_do_it(client: BrowserClient, db: Any) -> None:
    html = unescape(client.get("/confidentialite/").content.decode())
    assert '<a href="/compte/personnalisation/">Personnalisation</a>' in html
    assert "retirer votre accord efface aussitôt ces informations" in html


def test_a_retired_purpose_has_no_group_and_the_page_still_works(granted: BrowserClient) -> None:
    Purpose.objects.filter(code=NEWS).update(is_active=False)
    response = granted.get(PAGE)
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert f'id="groupe-{NEWS}"' not in html and f'id="groupe-{DECLARED}"' in html
    assert switch(granted, NEWS, "withdraw").status_code == 404
