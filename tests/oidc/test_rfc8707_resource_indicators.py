"""RFC 8707 (resource indicators): registering a resource server's identifier.

How tokens are asked for a resource, and who may then introspect them, is tested in
tests/security/test_introspection_audience.py. Here: the identifier a resource server is
registered with (register_client, client_register, the partner admin) is an absolute https
URI without fragment, query or user information, unique, and never our own issuer.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from oauth2_provider.models import get_application_model

from identity.oidc.client_uris import ClientConfigError
from identity.oidc.clients import client_register
from tests.oidc.test_partner_admin import change_url, form_data

pytestmark = pytest.mark.django_db

API = "https://api.mediatheques.example.org"
BASE = {"name": "API", "redirect_uris": [], "grant_types": ["client_credentials"], "is_resource_server": True}


def test_a_resource_server_is_registered_with_its_identifier(signing_keys):
    client, _secret = client_register(**BASE, resource_identifier=API)
    client.refresh_from_db()
    assert client.resource_identifier == API
    other, _ = client_register(**BASE)
    assert other.resource_identifier is None  # unset: several clients may have none


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("api.example.org", "absolute"),
        ("http://api.example.org", "https"),
        ("https://api.example.org/#x", "fragment"),
        ("https://api.example.org/?tenant=1", "query"),
        ("https://user@api.example.org", "user information"),
        ("urn:example:api", "https"),
        ("ISSUER", "issuer"),
        ("ISSUER/", "issuer"),
        ("ISSUER/userinfo", "issuer"),
    ],
)
def test_malformed_or_reserved_identifiers_are_refused(signing_keys, identifier, expected):
    identifier = identifier.replace("ISSUER", settings.ISSUER)
    with pytest.raises(ClientConfigError) as excinfo:
        client_register(**BASE, resource_identifier=identifier)
    assert expected in str(excinfo.value)
    assert not get_application_model().objects.exists()


def test_an_identifier_belongs_to_one_resource_server(signing_keys):
    client_register(**BASE, resource_identifier=API)
    with pytest.raises(ClientConfigError) as excinfo:
        client_register(**BASE, resource_identifier=API)
    assert "already registered" in str(excinfo.value)
    assert get_application_model().objects.count() == 1


def test_register_client_command(signing_keys):
    out = io.StringIO()
    call_command(
        "register_client", "--name", "API", "--grant", "client_credentials", "--scope", "openid",
        "--resource-identifier", API, "--json", stdout=out,
    )  # fmt: skip
    client = get_application_model().objects.get(client_id=json.loads(out.getvalue())["client_id"])
    assert client.resource_identifier == API
    assert client.is_resource_server  # implied: it may introspect the tokens meant for it
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "register_client", "--name", "API 2", "--grant", "client_credentials", "--scope", "openid",
            "--resource-identifier", API + "#x", stdout=io.StringIO(),
        )  # fmt: skip
    assert "fragment" in str(excinfo.value)


@pytest.fixture
def staff(admin_client: Any) -> Any:
    return admin_client


def api_client(make_client: Any, **extra: Any) -> Any:
    return make_client(name="API", redirect_uris=[], grant_types=["client_credentials"], **extra)


def test_partner_admin_edits_the_identifier(staff, make_client):
    rp = api_client(make_client, is_resource_server=True)
    page = staff.get(change_url(rp.client)).content.decode()
    assert 'name="resource_identifier"' in page
    response = staff.post(change_url(rp.client), form_data(rp.client, resource_identifier=API))
    assert response.status_code == 302, response.context["adminform"].form.errors
    rp.client.refresh_from_db()
    assert rp.client.resource_identifier == API
    # Cleared: stored as NULL (unique only when set).
    response = staff.post(change_url(rp.client), form_data(rp.client, resource_identifier=""))
    assert response.status_code == 302, response.context["adminform"].form.errors
    rp.client.refresh_from_db()
    assert rp.client.resource_identifier is None


@pytest.mark.parametrize("identifier", ["https://api.example.org/#x", "ISSUER", "TAKEN"])
def test_partner_admin_refuses_bad_identifiers(staff, make_client, identifier):
    api_client(make_client, resource_identifier=API)
    rp = api_client(make_client, is_resource_server=True)
    identifier = {"ISSUER": settings.ISSUER, "TAKEN": API}.get(identifier, identifier)
    response = staff.post(change_url(rp.client), form_data(rp.client, resource_identifier=identifier))
    assert response.status_code == 200
    assert "resource_identifier" in response.context["adminform"].form.errors
    rp.client.refresh_from_db()
    assert rp.client.resource_identifier is None
