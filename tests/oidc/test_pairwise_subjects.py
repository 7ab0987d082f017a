"""Pairwise subject identifiers (OpenID Connect Core 1.0 §8, §8.1)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client as BrowserClient

from identity.oidc.client_uris import ClientConfigError
from identity.oidc.models import IDToken
from identity.oidc.subjects import subject_for
from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import expected_sub, location_query, post_token, sign_in, userinfo


def sub_at(browser: BrowserClient, partner: Any, redirect_uri: str) -> tuple[str, dict[str, Any]]:
    flow = OIDCFlow(browser, partner)
    code = flow.get_code(redirect_uri=redirect_uri)
    response = flow.token(code, redirect_uri=redirect_uri)
    assert response.status_code == 200, response.content
    tokens = response.json()
    return verify_id_token(tokens["id_token"], partner.client_id)["sub"], tokens


@pytest.fixture
def partners(make_client: Any) -> dict[str, Any]:
    return {
        "tickets": make_client(name="Billetterie", redirect_uris=["https://tickets.example.net/cb"]),
        "tickets-app": make_client(
            name="Billetterie (appli)", redirect_uris=["https://tickets.example.net/app"]
        ),
        "library": make_client(name="Médiathèques", redirect_uris=["https://library.example.com/cb"]),
        "grouped": make_client(
            name="Portail culture",
            redirect_uris=["https://culture.example.org/cb", "https://www.culture.example.org/cb"],
            sector_identifier_uri="https://library.example.com/sector.json",
        ),
        "internal": make_client(
            name="Démarches de la Métropole",
            redirect_uris=["https://demarches.example.fr/cb"],
            is_internal=True,
        ),
    }


REDIRECTS = {
    "tickets": "https://tickets.example.net/cb",
    "tickets-app": "https://tickets.example.net/app",
    "library": "https://library.example.com/cb",
    "grouped": "https://www.culture.example.org/cb",
    "internal": "https://demarches.example.fr/cb",
}


def test_discovery_lists_pairwise_and_public(db: Any) -> None:
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert set(metadata["subject_types_supported"]) == {"pairwise", "public"}


def test_subjects_differ_per_sector_and_match_within_one(
    signed_in: BrowserClient, partners: dict[str, Any], resident: Any
) -> None:
    subs = {name: sub_at(signed_in, partners[name], REDIRECTS[name])[0] for name in REDIRECTS}
    assert subs["tickets"] != subs["library"]  # different sectors: unrelated values
    assert subs["tickets"] == subs["tickets-app"]  # same redirect host: same sector
    assert subs["grouped"] == subs["library"]  # the sector identifier URI's host decides
    assert subs["internal"] == str(resident.pk)  # internal service: public subject
    for name in ("tickets", "library"):
        assert subs[name] == expected_sub(partners[name], resident)
        assert str(resident.pk) not in subs[name] and resident.email not in subs[name]
        assert len(subs[name]) == 43  # base64url of a SHA-256 HMAC, no padding


def test_two_residents_never_share_a_subject(
    partners: dict[str, Any], resident: Any, make_resident: Any
) -> None:
    other = make_resident("dominique@example.org")
    assert expected_sub(partners["tickets"], resident) != expected_sub(partners["tickets"], other)
    laptop, phone = BrowserClient(), BrowserClient()
    sign_in(laptop, resident.email)
    sign_in(phone, other.email)
    first = sub_at(laptop, partners["tickets"], REDIRECTS["tickets"])[0]
    second = sub_at(phone, partners["tickets"], REDIRECTS["tickets"])[0]
    assert first != second


def test_subject_is_stable_across_sign_ins_and_refreshes(
    client: BrowserClient, partners: dict[str, Any], resident: Any
) -> None:
    partner = partners["library"]
    sign_in(client, resident.email)
    first, tokens = sub_at(client, partner, REDIRECTS["library"])
    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=partner.basic_auth()
    ).json()
    assert verify_id_token(refreshed["id_token"], partner.client_id)["sub"] == first
    client.post("/deconnexion/")
    sign_in(client, resident.email)
    assert sub_at(client, partner, REDIRECTS["library"])[0] == first


def test_userinfo_and_introspection_use_the_clients_subject(
    signed_in: BrowserClient, partners: dict[str, Any], resident: Any, make_client: Any
) -> None:
    api = "https://api.tickets.example.net"
    resource_server = make_client(
        name="API",
        redirect_uris=[],
        grant_types=["client_credentials"],
        is_resource_server=True,
        resource_identifier=api,
    )
    # A token meant for userinfo and for the resource server (RFC 8707; RFC 7662 §4 describes
    # a token only to its client and to the resource servers named in its aud).
    flow = OIDCFlow(signed_in, partners["tickets"])
    code = flow.get_code(redirect_uri=REDIRECTS["tickets"], resource=[settings.ISSUER, api])
    tokens = flow.token(code, redirect_uri=REDIRECTS["tickets"]).json()
    sub = verify_id_token(tokens["id_token"], partners["tickets"].client_id)["sub"]
    assert userinfo(tokens["access_token"]).json()["sub"] == sub
    body = (
        BrowserClient()
        .post(
            "/introspect", {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=resource_server.basic_auth()
        )
        .json()
    )
    # The subject as the client knows the resident, not one of the resource server's own.
    assert body["active"] is True and body["sub"] == sub


def test_id_token_hint_is_matched_by_pairwise_subject(
    signed_in: BrowserClient, partners: dict[str, Any], resident: Any, make_resident: Any
) -> None:
    partner = partners["library"]
    partner.client.skip_authorization = True  # consent is not what this test is about
    partner.client.save()
    _sub, tokens = sub_at(signed_in, partner, REDIRECTS["library"])
    IDToken.objects.all().delete()  # the hint's record is gone: only the subject can match it
    flow = OIDCFlow(signed_in, partner)
    response = flow.authorize(
        prompt="none", id_token_hint=tokens["id_token"], redirect_uri=REDIRECTS["library"]
    )
    assert "code" in location_query(response), location_query(response)

    other = make_resident("dominique@example.org")
    browser = BrowserClient()
    sign_in(browser, other.email)
    response = OIDCFlow(browser, partner).authorize(
        prompt="none", id_token_hint=tokens["id_token"], redirect_uri=REDIRECTS["library"]
    )
    assert location_query(response)["error"] == ["login_required"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"redirect_uris": ["https://a.example.net/cb", "https://b.example.net/cb"]}, "sector identifier"),
        (
            {
                "redirect_uris": ["https://a.example.net/cb"],
                "sector_identifier_uri": "http://sector.example.net/",
            },
            "https",
        ),
        (
            {"redirect_uris": ["https://a.example.net/cb"], "sector_identifier_uri": "not a url"},
            "sector identifier",
        ),
    ],
)
def test_ambiguous_or_insecure_sector_is_refused(
    make_client: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ClientConfigError) as excinfo:
        make_client(name="Partenaire", **kwargs)
    assert message in str(excinfo.value)


def test_sector_is_fixed_at_registration(partners: dict[str, Any], resident: Any) -> None:
    partner = partners["tickets"].client
    before = expected_sub(partners["tickets"], resident)
    partner.redirect_uris = "https://elsewhere.example.org/cb"  # an operator edits the client later
    partner.save()

    assert partner.subject_sector == "tickets.example.net"
    assert subject_for(partner, resident) == before
