"""The demo partner plays the territorial portal (/demo/portail/): after the demo sign-in, its
server calls GET /profiles/api/v1/personalisation over real HTTP with the resident's access
token and shows "Les actualités de votre commune" and "Vos thèmes", each with why; what the
resident withdraws disappears on the next load (issue 12).

The provider runs on a real port (live_server); the demo's pages are driven with Django's
test client, which holds the resident's session, as the browser test of the demo does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client as BrowserClient
from django.utils import timezone
from oauth2_provider.models import get_application_model

from consent.purpose_data import DataSubject
from identity.demo import DEMO_CLIENT_NAME, DEMO_EMAIL, DEMO_PASSWORD, DEMO_SCOPES
from identity.demo.portal import portal_view
from identity.models import User
from identity.oidc.sharing import sharing_withdraw
from profiles.services import declared_update, page_view_record
from tests.oidc.conftest import closed_port_url
from tests.profiles.conftest import BROWSING, DECLARED, decide

PORTAL = "/demo/portail/"


@pytest.fixture
def demo_server(live_server: Any, settings: Any, tmp_path: Any) -> str:
    settings.ISSUER = live_server.url
    settings.VAR_DIR = tmp_path
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    call_command("ensure_signing_keys")
    call_command("load_demo")
    return live_server.url


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def demo_sign_in(browser: BrowserClient) -> None:
    """/demo/start → sign-in → consent screen (allow) → /demo/callback, as a browser would."""
    response = browser.post("/connexion/", {"username": DEMO_EMAIL, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    response = browser.get("/demo/start")
    assert response.status_code == 302
    response = browser.get(_local(response["Location"]))
    if response.status_code == 200 and "pending_id" in (response.context or {}):
        assert {item["scope"] for item in response.context["scopes"]} == set(DEMO_SCOPES)
        response = browser.post(
            "/authorize/decision", {"pending": response.context["pending_id"], "decision": "allow"}
        )
    assert response.status_code in (302, 303), response.content[:300]
    response = browser.get(_local(response["Location"]))
    assert response.status_code == 302 and response["Location"] == "/demo/", response.content[:500]


def _resident() -> Any:
    return User.objects.get(email=DEMO_EMAIL)


def _personalise(user: Any) -> None:
    decide(user, DECLARED, True)
    decide(user, BROWSING, True)
    declared_update(
        user=user, changes={"commune": "44109", "quartier": "ile-de-nantes", "themes": ["culture"]}
    )
    page_view_record(
        subject=DataSubject(user_id=user.pk), site="www.nantes.fr", themes=["sport"], viewed_at=timezone.now()
    )


@pytest.mark.django_db(transaction=True)
def test_signed_out_the_portal_page_asks_to_sign_in(demo_server: str) -> None:
    page = BrowserClient().get(PORTAL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Connectez-vous d'abord" in html and 'href="/demo/start"' in html


@pytest.mark.django_db(transaction=True)
def test_the_demo_asks_the_profiles_scopes_and_links_the_portal(demo_server: str) -> None:
    browser = BrowserClient()
    demo_sign_in(browser)
    assert 'href="/demo/portail/"' in browser.get("/demo/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_portal_shows_commune_news_and_themes_and_they_vanish_on_withdrawal(demo_server: str) -> None:
    browser = BrowserClient()
    _personalise(_resident())
    demo_sign_in(browser)

    html = browser.get(PORTAL).content.decode()
    assert "Les actualités de votre commune" in html and "Vos thèmes" in html
    assert "Les Machines de l&#x27;île ouvrent une nouvelle galerie" in html
    assert "Réunion du conseil de quartier Île de Nantes" in html
    assert "Parce que vous avez indiqué habiter Nantes" in html
    assert "actualité fictive (démo)" in html
    assert "À la une sur le thème « Culture »" in html and "Parce que vous suivez ce thème" in html
    assert "À la une sur le thème « Sport »" in html and "déduit de votre navigation" in html

    # The resident withdraws the declared personalisation: on the next load, the commune's news
    # and the declared theme are gone; the inferred one stays.
    decide(_resident(), DECLARED, False)
    html = browser.get(PORTAL).content.decode()
    assert "Les Machines de l&#x27;île" not in html and "Culture" not in html.split("Vos thèmes")[1]
    assert "À la une sur le thème « Sport »" in html

    # Then the browsing one: nothing is allowed any more, the page says so and where to choose.
    decide(_resident(), BROWSING, False)
    page = browser.get(PORTAL)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="nothing-allowed"' in html and "Sport" not in html.split("Réponse brute")[0]
    assert 'href="/compte/personnalisation/"' in html


@pytest.mark.django_db(transaction=True)
def test_withdrawing_the_demo_partners_access_empties_the_portal(demo_server: str) -> None:
    browser = BrowserClient()
    _personalise(_resident())
    demo_sign_in(browser)
    assert "Les actualités de votre commune" in browser.get(PORTAL).content.decode()
    client = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    sharing_withdraw(user=_resident(), client=client)
    page = browser.get(PORTAL)
    html = page.content.decode()
    assert page.status_code == 200 and 'id="token-refused"' in html
    assert "Les Machines de l&#x27;île" not in html


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_provider_gives_a_readable_page_never_a_500(demo_server: str, settings: Any) -> None:
    browser = BrowserClient()
    demo_sign_in(browser)
    settings.ISSUER = closed_port_url("")
    page = browser.get(PORTAL)
    assert page.status_code == 502
    assert "/profiles/api/v1/personalisation unreachable" in page.content.decode()


def test_the_page_content_from_an_answer() -> None:
    """The items of the contract's answer (docs/partners.md) become news with their reasons."""
    sharing = {"purpose": DECLARED, "sharing": True, "scope": "territory"}
    view = portal_view(
        {
            "subject": "resident",
            "items": [
                {
                    "kind": "quartier",
                    "value": {"code": "nantes-nord", "name": "Nantes Nord"},
                    "reason": sharing,
                },
                {
                    "kind": "commune",
                    "value": {"insee_code": "44020", "name": "Bouguenais"},
                    "reason": sharing,
                },
                {
                    "kind": "theme",
                    "value": {"code": "sport", "label": "Sport"},
                    "source": "inferred",
                    "weight": 1.0,
                    "reason": {"purpose": BROWSING, "sharing": True},
                },
                {"kind": "accessibility", "value": "larger-text", "reason": sharing},
                {"kind": "something-new", "value": 1, "reason": sharing},
                "not an item",
            ],
        },
        english=False,
    )
    assert [news.title for news in view.commune_news] == [
        "Conseil municipal de Bouguenais : l'ordre du jour est en ligne",
        "Réunion du conseil de quartier Nantes Nord",
    ]
    assert all(news.demo for news in view.commune_news)
    assert "Bouguenais" in view.commune_news[0].reason and DECLARED in view.commune_news[0].reason
    assert [news.title for news in view.themes] == ["À la une sur le thème « Sport »"]
    assert BROWSING in view.themes[0].reason
    assert view.accessibility == ["larger-text"]
    assert not view.empty
    assert portal_view({"items": []}, english=False).empty
    english = portal_view(
        {"items": [{"kind": "commune", "value": {"insee_code": "44109", "name": "Nantes"}}]}, english=True
    )
    assert english.commune_news[0].title == "Les Machines de l'île open a new gallery"
