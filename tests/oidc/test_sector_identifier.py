"""sector_identifier_uri (OpenID Connect Core 1.0 §8.1, Dynamic Client Registration 1.0 §5).

- The URI MUST use https (loopback http is accepted outside production, as for every URI
  of a client) and point to a JSON file containing an array of redirect_uri values.
- The values registered in redirect_uris MUST be included in the elements of the array,
  or the registration fails (Registration §5; Core §8.1: the OP validates it).
- Its host is the Sector Identifier used in the pairwise `sub` calculation (Core §8.1).

The document is served by a real HTTP server on a free local port; it is checked when a
client is registered (register_client --sector, the admin's add page) and when the admin
changes the sector identifier URI or the redirect URIs. Every refusal is readable and
saves nothing.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from oauth2_provider.models import get_application_model

from identity.models import AuditEvent
from identity.oidc import sector
from identity.oidc.subjects import subject_for
from tests.oidc.conftest import closed_port_url, expected_sub

pytestmark = pytest.mark.django_db

A = "https://billetterie.example.org/callback"
B = "https://app.billetterie-nantes.example.net/oidc/cb"


def register(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("register_client", "--name", "Billetterie", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def register_refused(*args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        register(*args)
    message = str(excinfo.value)
    assert "\n" not in message  # one readable line
    assert not get_application_model().objects.exists()  # nothing saved
    assert not AuditEvent.objects.filter(event="client.registered").exists()
    return message


def oversized_array() -> bytes:
    return json.dumps([A, B] + ["https://padding.example.org/" + "x" * 100] * 1000).encode()


# Each failure: how the server answers, and what the operator is told.
FAILURES: dict[str, tuple[Any, str]] = {
    "missing redirect URI": (lambda s: s.serve_json("/sector.json", [A]), B),
    "not JSON": (lambda s: s.serve_raw("/sector.json", b"<html>redirect_uris</html>"), "not JSON"),
    "not an array": (lambda s: s.serve_json("/sector.json", {"redirect_uris": [A, B]}), "JSON array"),
    "array of non-strings": (lambda s: s.serve_json("/sector.json", [A, B, 3]), "JSON array"),
    "unreachable": (lambda s: closed_port_url(), "not reachable"),
    "too large": (lambda s: s.serve_raw("/sector.json", oversized_array()), "larger than"),
    "redirect": (
        lambda s: (
            s.serve_json("/real.json", [A, B]),
            s.serve_raw("/sector.json", b"", 302, {"Location": s.url("/real.json")}),
        )[1],
        "redirect",
    ),
    "HTTP error": (lambda s: s.serve_json("/sector.json", [A, B], status=500), "HTTP 500"),
}


# --- register_client --sector ------------------------------------------------------------------


def test_command_registers_when_the_document_lists_every_redirect_uri(sector_server, resident):
    uri = sector_server.serve_json("/sector.json", [A, "https://other.example.org/cb", B])
    payload = register("--redirect-uri", A, "--redirect-uri", B, "--sector", uri)
    client = get_application_model().objects.get(client_id=payload["client_id"])
    assert client.sector_identifier_uri == uri
    # The sector is the host of the sector identifier URI, not of the redirect URIs.
    assert payload["sector"] == client.subject_sector == "127.0.0.1"
    assert sector_server.requested == ["/sector.json"]

    assert subject_for(client, resident) == expected_sub(client, resident, sector="127.0.0.1")


def test_clients_grouped_by_one_document_share_the_sub(sector_server, resident):
    uri = sector_server.serve_json("/sector.json", [A, B])
    first = register("--redirect-uri", A, "--sector", uri)
    second = register("--redirect-uri", B, "--sector", uri)

    clients = get_application_model().objects.filter(client_id__in=[first["client_id"], second["client_id"]])
    assert len({subject_for(client, resident) for client in clients}) == 1


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_command_refuses_and_saves_nothing(sector_server, case):
    arrange, expected = FAILURES[case]
    uri = arrange(sector_server)
    message = register_refused("--redirect-uri", A, "--redirect-uri", B, "--sector", uri)
    assert expected in message
    assert "sector identifier URI" in message


def test_command_does_not_follow_redirects(sector_server):
    target = sector_server.serve_json("/real.json", [A])
    sector_server.serve_raw("/sector.json", b"", 301, {"Location": target})
    register_refused("--redirect-uri", A, "--sector", sector_server.url("/sector.json"))
    assert sector_server.requested == ["/sector.json"]  # the target was never fetched


def test_command_gives_up_on_a_slow_server(sector_server, monkeypatch):
    monkeypatch.setattr(sector, "SECTOR_FETCH_TIMEOUT", 0.2)
    sector_server.delay = 1.0
    uri = sector_server.serve_json("/sector.json", [A])
    assert "not reachable" in register_refused("--redirect-uri", A, "--sector", uri)


def test_redirect_uris_are_compared_exactly(sector_server):
    uri = sector_server.serve_json("/sector.json", [A + "/", A.upper()])
    assert repr(A) in register_refused("--redirect-uri", A, "--sector", uri)


def test_loopback_http_document_is_refused_where_loopback_http_is_not_allowed(sector_server, settings):
    settings.ALLOW_HTTP_LOOPBACK_REDIRECTS = False
    uri = sector_server.serve_json("/sector.json", [A])
    assert "https" in register_refused("--redirect-uri", A, "--sector", uri)
    assert sector_server.requested == []  # refused before any request


def test_a_malformed_redirect_uri_is_reported_before_fetching(sector_server):
    uri = sector_server.serve_json("/sector.json", [A])
    assert "redirect URI" in register_refused("--redirect-uri", "ftp://x.example.org/cb", "--sector", uri)
    assert sector_server.requested == []


# --- the admin: add and change pages ---------------------------------------------------------


def add_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Portail culture",
        "client_type": "confidential",
        "grant_types": "authorization_code",
        "allowed_scopes": "openid profile email",
        "redirect_uris": f"{A} {B}",
        "post_logout_redirect_uris": "",
        "token_endpoint_auth_method": "client_secret_basic",
        "jwks": "",
        "jwks_uri": "",
        "algorithm": "RS256",
        "backchannel_logout_uri": "",
        "frontchannel_logout_uri": "",
        "sector_identifier_uri": "",
        "logo_uri": "",
        "policy_uri": "",
        "contacts": "",
    }
    data.update(overrides)
    return data


def change_form(client: Any, **overrides: Any) -> dict[str, Any]:
    data = add_form(
        name=client.name,
        client_type=client.client_type,
        grant_types=client.grant_types,
        allowed_scopes=client.allowed_scopes,
        redirect_uris=client.redirect_uris,
        sector_identifier_uri=client.sector_identifier_uri,
    )
    data.update(overrides)
    return data


def change_url(client: Any) -> str:
    return f"/admin/identity/client/{client.pk}/change/"


def form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def test_admin_add_with_a_good_document(admin_client, sector_server, signing_keys):
    uri = sector_server.serve_json("/sector.json", [A, B])
    response = admin_client.post("/admin/identity/client/add/", add_form(sector_identifier_uri=uri))
    assert response.status_code == 302, form_errors(response)
    client = get_application_model().objects.get()
    assert client.sector_identifier_uri == uri
    assert client.subject_sector == "127.0.0.1"


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_admin_add_refuses_with_a_field_error_and_saves_nothing(admin_client, sector_server, case):
    arrange, expected = FAILURES[case]
    uri = arrange(sector_server)
    response = admin_client.post("/admin/identity/client/add/", add_form(sector_identifier_uri=uri))
    errors = form_errors(response)
    assert list(errors) == ["sector_identifier_uri"]
    assert expected in errors["sector_identifier_uri"][0]
    assert not get_application_model().objects.exists()
    assert not AuditEvent.objects.filter(event="client.registered").exists()


def test_admin_change_of_the_sector_uri_is_checked(admin_client, sector_server, make_client):
    rp = make_client(redirect_uris=[A])
    incomplete = sector_server.serve_json("/incomplete.json", ["https://elsewhere.example.org/cb"])
    errors = form_errors(
        admin_client.post(change_url(rp.client), change_form(rp.client, sector_identifier_uri=incomplete))
    )
    assert A in errors["sector_identifier_uri"][0]
    rp.client.refresh_from_db()
    assert rp.client.sector_identifier_uri == ""

    good = sector_server.serve_json("/good.json", [A])
    response = admin_client.post(change_url(rp.client), change_form(rp.client, sector_identifier_uri=good))
    assert response.status_code == 302, form_errors(response)
    rp.client.refresh_from_db()
    assert rp.client.sector_identifier_uri == good
    assert rp.client.subject_sector == "billetterie.example.org"  # fixed at registration


def test_admin_change_of_redirect_uris_is_checked_against_the_document(
    admin_client, sector_server, make_client
):
    uri = sector_server.serve_json("/sector.json", [A, B])
    rp = make_client(redirect_uris=[A, B], sector_identifier_uri=uri)
    added = "https://new.example.org/cb"
    errors = form_errors(
        admin_client.post(change_url(rp.client), change_form(rp.client, redirect_uris=f"{A} {B} {added}"))
    )
    assert added in errors["sector_identifier_uri"][0]
    rp.client.refresh_from_db()
    assert added not in rp.client.redirect_uris

    sector_server.serve_json("/sector.json", [A, B, added])  # the partner publishes it first
    response = admin_client.post(
        change_url(rp.client), change_form(rp.client, redirect_uris=f"{A} {B} {added}")
    )
    assert response.status_code == 302, form_errors(response)
    rp.client.refresh_from_db()
    assert added in rp.client.redirect_uris.split()


def test_admin_change_of_other_settings_does_not_fetch(admin_client, make_client):
    down = closed_port_url()
    rp = make_client(redirect_uris=[A, B], sector_identifier_uri=down)
    response = admin_client.post(change_url(rp.client), change_form(rp.client, name="Portail culture 2"))
    assert response.status_code == 302, form_errors(response)
    rp.client.refresh_from_db()
    assert rp.client.name == "Portail culture 2"
