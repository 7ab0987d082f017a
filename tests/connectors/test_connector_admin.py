"""The operators' pages for partner connectors: secrets written, sealed and never shown;
settings checked by the connector's kind; sudo mode (identity.reauth) for every change;
residents' links read only, without the card number."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client as BrowserClient

from connectors.links import link_create
from connectors.models import PartnerConnector
from connectors.sealing import open_secrets
from identity.models import AuditEvent, User
from tests.conftest import open_session
from tests.connectors.conftest import VALID_CARD, library_config

pytestmark = pytest.mark.django_db

ADD = "/admin/connectors/partnerconnector/add/"


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser("admin@example.org", "a long admin passphrase")


def _form(client_pk: Any, sim: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "client": str(client_pk),
        "kind": "library",
        "label": "Bibliothèques",
        "enabled": "on",
        "config": json.dumps(library_config(sim)),
        "secrets_input": json.dumps({"login_password": sim.login_password}),
    }
    data.update(overrides)
    return data


def test_adding_a_connector_seals_its_secrets_and_never_shows_them(staff, library_client, library_sim):
    browser = open_session(BrowserClient(), staff)
    response = browser.post(ADD, _form(library_client.client.pk, library_sim))
    assert response.status_code == 302, response.content.decode()[:2000]
    connector = PartnerConnector.objects.get()
    assert open_secrets(connector.pk, connector.secrets_sealed) == {
        "login_password": library_sim.login_password
    }
    page = browser.get(f"/admin/connectors/partnerconnector/{connector.pk}/change/").content.decode()
    assert library_sim.login_password not in page
    assert AuditEvent.objects.filter(event="connector.added").exists()
    # Saving without typing secrets keeps them.
    data = _form(library_client.client.pk, library_sim, secrets_input="", label="Médiathèques")
    assert browser.post(f"/admin/connectors/partnerconnector/{connector.pk}/change/", data).status_code == 302
    connector.refresh_from_db()
    assert connector.label == "Médiathèques"
    assert open_secrets(connector.pk, connector.secrets_sealed) == {
        "login_password": library_sim.login_password
    }


def test_settings_the_kind_refuses_are_field_errors(staff, library_client, library_sim):
    browser = open_session(BrowserClient(), staff)
    response = browser.post(ADD, _form(library_client.client.pk, library_sim, config='{"host": ""}'))
    assert response.status_code == 200
    assert not PartnerConnector.objects.exists()
    response = browser.post(ADD, _form(library_client.client.pk, library_sim, secrets_input="[1]"))
    assert response.status_code == 200 and not PartnerConnector.objects.exists()


def test_changes_need_a_recent_mfa_sign_in(staff, library_client, library_sim):
    browser = open_session(BrowserClient(), staff, age=3600)
    response = browser.post(ADD, _form(library_client.client.pk, library_sim))
    assert response.status_code == 302 and "/admin/connectors/" not in response["Location"]
    assert not PartnerConnector.objects.exists()
    assert browser.get("/admin/connectors/partnerconnector/").status_code == 200  # reading is fine


def test_the_health_check_action(staff, library):
    browser = open_session(BrowserClient(), staff)
    response = browser.post(
        "/admin/connectors/partnerconnector/",
        {"action": "health_check", "_selected_action": [str(library.pk)]},
        follow=True,
    )
    assert "online" in response.content.decode()


def test_links_are_read_only_and_hide_the_card_number(staff, resident, library):
    link = link_create(
        user=resident, partner_connector=library, reference=VALID_CARD[0], secret=VALID_CARD[1]
    )
    browser = open_session(BrowserClient(), staff)
    page = browser.get(f"/admin/connectors/partnerlink/{link.pk}/change/").content.decode()
    assert VALID_CARD[0] not in page and "•••• 0001" in page
    assert browser.get("/admin/connectors/partnerlink/").status_code == 200
