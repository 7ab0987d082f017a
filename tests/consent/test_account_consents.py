"""Mon compte › Consentements: the metropolis' own purposes, one click to grant or withdraw,
the history with receipts and proofs, and the public notice pages with what changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client as BrowserClient

from consent.gate import consent_is_granted
from consent.models import LedgerEvent
from consent.notice_diff import Segment, notice_diff
from consent.selectors import purpose_by_code
from consent.services import consent_record, notice_publish, tree_head_sign
from identity.oidc.sharing import purpose_for_client_scopes
from tests.conftest import open_session
from tests.security.test_ledger_tampering import execute, unlock

pytestmark = pytest.mark.django_db

PAGE = "/compte/consentements/"
NEWS = "service-news-email"


def decide(client: BrowserClient, code: str, decision: str) -> Any:
    return client.post(f"/compte/consentements/{code}/decision/", {"decision": decision})


@pytest.fixture
def browser(resident: Any, ledger_ready: Any) -> BrowserClient:
    return open_session(BrowserClient(), resident, ["pwd"])


def test_the_page_lists_the_catalogue_with_states(browser: BrowserClient, resident: Any) -> None:
    consent_record(
        purpose_code="personalisation-declared",
        event_type="refused",
        collection_method="web_form",
        user=resident,
    )
    response = browser.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Recevoir les actualités des services par e-mail" in html
    assert "Personnaliser le portail à partir de votre profil" in html
    assert "consentement refusé" in html
    assert "pas encore fait de choix" in html
    # The exempt audience measurement is information, with its legal basis and the DPO.
    assert "Aucun consentement n'est demandé" in html
    assert "mission de service public" in html
    assert "/compte/services/" in html


def test_login_required(client: BrowserClient, db: Any) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302 and "/connexion/" in response["Location"]
    response = client.post(f"/compte/consentements/{NEWS}/decision/", {"decision": "grant"})
    assert response.status_code == 302 and "/connexion/" in response["Location"]
    assert LedgerEvent.objects.count() == 0


def test_grant_then_withdraw_one_post_each(browser: BrowserClient, resident: Any) -> None:
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    response = decide(browser, NEWS, "grant")
    assert response.status_code == 302 and response["Location"].endswith(f"#finalite-{NEWS}")
    assert consent_is_granted(user=resident, purpose_code=NEWS)
    event = LedgerEvent.objects.get()
    assert (event.event_type, event.collection_method, event.actor_type) == ("given", "web_form", "resident")
    assert event.notice_version == 1
    assert "valable jusqu" in browser.get(PAGE).content.decode()

    decide(browser, NEWS, "grant")  # a second click changes nothing
    assert LedgerEvent.objects.count() == 1

    response = decide(browser, NEWS, "withdraw")
    assert response.status_code == 302
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    last = LedgerEvent.objects.order_by("-seq").first()
    assert last is not None and (last.event_type, last.actor_type) == ("withdrawn", "resident")
    assert "consentement retiré" in browser.get(PAGE).content.decode()


def test_decision_needs_csrf(resident: Any, ledger_ready: Any) -> None:
    browser = open_session(BrowserClient(enforce_csrf_checks=True), resident, ["pwd"])
    assert decide(browser, NEWS, "grant").status_code == 403
    assert LedgerEvent.objects.count() == 0


def test_partner_public_task_and_unknown_purposes_are_not_decided_here(
    browser: BrowserClient, make_client: Any
) -> None:
    sharing = purpose_for_client_scopes(client=make_client().client, scopes=["openid", "email"])
    assert decide(browser, sharing.code, "grant").status_code == 404
    assert decide(browser, "audience-measurement", "withdraw").status_code == 404
    assert decide(browser, "no-such-purpose", "grant").status_code == 404
    assert decide(browser, NEWS, "toggle").status_code == 400
    assert LedgerEvent.objects.count() == 0


def test_material_notice_change_requires_renewal(browser: BrowserClient, resident: Any) -> None:
    decide(browser, NEWS, "grant")
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Nouveau texte.", text_en="New text.", material=True
    )
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    html = browser.get(PAGE).content.decode()
    assert "à renouveler" in html and "Renouveler mon consentement" in html
    decide(browser, NEWS, "grant")
    assert consent_is_granted(user=resident, purpose_code=NEWS)
    last = LedgerEvent.objects.order_by("-seq").first()
    assert last is not None and last.event_type == "renewed" and last.notice_version == 1
    assert "à renouveler" not in browser.get(PAGE).content.decode()


def test_history_links_receipts_and_proofs(browser: BrowserClient, resident: Any) -> None:
    decide(browser, NEWS, "grant")
    event = LedgerEvent.objects.get()
    html = browser.get(PAGE).content.decode()
    assert "Consentement donné" in html and "depuis votre compte" in html
    assert f"/consent/recus/{event.id}.jws" in html
    assert f"/compte/consentements/preuves/{event.id}.json" not in html  # not sealed yet
    assert browser.get(f"/consent/recus/{event.id}.jws").status_code == 200
    assert browser.get(f"/compte/consentements/preuves/{event.id}.json").status_code == 302

    tree_head_sign()
    html = browser.get(PAGE).content.decode()
    assert f"/compte/consentements/preuves/{event.id}.json" in html
    proof = browser.get(f"/compte/consentements/preuves/{event.id}.json")
    assert proof.status_code == 200
    assert proof.json()["leaf_index"] == event.seq and proof.json()["signed_tree_head"]


def test_another_residents_receipt_and_proof_are_404(
    browser: BrowserClient, make_resident: Any, ledger_ready: Any
) -> None:
    other = make_resident()
    event = consent_record(purpose_code=NEWS, event_type="given", collection_method="web_form", user=other)
    tree_head_sign()
    assert browser.get(f"/consent/recus/{event.id}.jws").status_code == 404
    assert browser.get(f"/compte/consentements/preuves/{event.id}.json").status_code == 404
    assert other.email not in browser.get(PAGE).content.decode()


def test_notice_page_shows_versions_and_the_diff(client: BrowserClient, db: Any) -> None:
    purpose = purpose_by_code(NEWS)
    notice_publish(
        purpose=purpose,
        text_fr="Nous envoyons une lettre par mois.",
        text_en="One letter a month.",
        material=False,
    )
    notice_publish(
        purpose=purpose,
        text_fr="Nous envoyons une lettre par semaine.",
        text_en="One letter a week.",
        material=True,
    )
    response = client.get(f"/confidentialite/notices/{NEWS}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Notice de ce traitement, version 2" in html and "Notice générale, version 1" in html
    assert "Changement important" in html and "Changement mineur" in html
    assert '<del><span class="visually-hidden">supprimé : </span>mois.</del>' in html
    assert '<ins><span class="visually-hidden">ajouté : </span>semaine.</ins>' in html
    assert client.get("/confidentialite/notices/no-such-purpose/").status_code == 404


def test_notice_page_in_english(client: BrowserClient, db: Any) -> None:
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Texte.", text_en="A letter a week.", material=False
    )
    client.cookies["language"] = "en"
    html = client.get(f"/confidentialite/notices/{NEWS}/").content.decode()
    assert "A letter a week." in html


def test_the_privacy_policy_links_each_purposes_notices(client: BrowserClient, db: Any) -> None:
    html = client.get("/confidentialite/").content.decode()
    assert f"/confidentialite/notices/{NEWS}/" in html


def test_an_altered_ledger_row_gives_a_readable_503(browser: BrowserClient, resident: Any) -> None:
    decide(browser, NEWS, "grant")
    event = LedgerEvent.objects.get()
    savepoint = transaction.savepoint()
    try:
        unlock()
        execute(
            "UPDATE consent_ledgerevent SET collection_method = %s WHERE seq = %s", ["telepathy", event.seq]
        )
        response = browser.get(PAGE)
        assert response.status_code == 503
        html = response.content.decode()
        assert "momentanément illisible" in html and str(event.id) not in html
    finally:
        transaction.savepoint_rollback(savepoint)


def test_notice_diff_words_inside_similar_lines_whole_lines_otherwise() -> None:
    similar = notice_diff("Une lettre par mois.\nFin.", "Une lettre par semaine.\nFin.")
    assert similar == [
        [Segment("equal", "Une lettre par "), Segment("del", "mois."), Segment("ins", "semaine.")],
        [Segment("equal", "Fin.")],
    ]
    different = notice_diff("Nantes Métropole tient votre compte.", "Tout autre chose ici.")
    assert different == [
        [Segment("del", "Nantes Métropole tient votre compte.")],
        [Segment("ins", "Tout autre chose ici.")],
    ]
    assert notice_diff("Même texte.", "Même texte.\n") == []


def test_mon_compte_links_the_page_and_summarises_it(browser: BrowserClient, resident: Any) -> None:
    html = browser.get("/compte/").content.decode()
    assert 'href="/compte/consentements/"' in html
    assert "votre consentement à aucun usage facultatif" in html
    decide(browser, NEWS, "grant")
    decide(browser, "personalisation-declared", "grant")
    notice_publish(purpose=purpose_by_code(NEWS), text_fr="Nouveau.", text_en="New.", material=True)
    html = browser.get("/compte/").content.decode()
    assert "Vous avez donné votre consentement à 1 usage facultatif de vos informations." in html
    assert "1 consentement est à renouveler." in html
    page = browser.get(PAGE).content.decode()
    assert '<a href="/compte/consentements/" aria-current="page">Consentements</a>' in page


def test_an_altered_ledger_head_writes_nothing_and_says_so(browser: BrowserClient, resident: Any) -> None:
    decide(browser, NEWS, "grant")
    execute("UPDATE consent_ledgerhead SET size = %s WHERE id = 1", [7])
    response = decide(browser, NEWS, "withdraw")
    assert response.status_code == 503
    assert "Votre choix n'a pas pu être enregistré" in response.content.decode()
    assert LedgerEvent.objects.count() == 1
    assert consent_is_granted(user=resident, purpose_code=NEWS)
