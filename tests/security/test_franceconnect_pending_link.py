# ruff: noqa: F811  (fixtures imported from tests/franceconnect and tests/mfa are parameters here)
"""Issue 9, finding 9: a pending FranceConnect link must not survive on a shared computer.

Person A signs in with FranceConnect on a shared computer, chooses "J'ai déjà un compte",
then walks away. Whoever signs in next on that browser must not be offered (nor be able
to confirm) the link of A's FranceConnect identity to their own account: the pending
identity survives only the sign-in its own link flow asked for, on the dedicated page.

Driven through the real views, against the local FranceConnect stand-in
(tests/franceconnect/fake_fc.py) on a real port.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from identity.franceconnect import services as fc_services
from identity.franceconnect.models import FranceConnectLink
from identity.franceconnect.services import SESSION_PENDING
from tests.conftest import PASSWORD
from tests.franceconnect.conftest import FranceConnectBrowser, fake_fc, fc_browser  # noqa: F401
from tests.franceconnect.fake_fc import DEFAULT_IDENTITY
from tests.mfa.conftest import (  # noqa: F401  (fixtures)
    FakeClock,
    SoftAuthenticator,
    clock,
    post_json,
    register_passkey,
    rfc6238,
    rp_settings,
    totp_resident,
)

pytestmark = pytest.mark.django_db

FC_NAME = f"{DEFAULT_IDENTITY['given_name']} {DEFAULT_IDENTITY['family_name']}"
LINK_SIGN_IN = "/franceconnect/lier/connexion/"
LINK = "/franceconnect/lier/"
EXPIRED = "Votre connexion avec FranceConnect a expiré"


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def signed_in_as(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def start_link_flow(fc_browser: FranceConnectBrowser) -> str:
    """Person A: FranceConnect, first use, "J'ai déjà un compte". Returns the page A is sent to."""
    response = fc_browser.sign_in()
    assert response["Location"] == "/franceconnect/premiere-connexion/"
    response = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "link"})
    assert response.status_code == 302
    return response["Location"]


def flow_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["flow"][0]


def assert_nothing_to_link(client: Client, flow: str = "") -> None:
    """Whatever the next person opens, A's identity is gone: no confirmation page, no link."""
    assert SESSION_PENDING not in client.session
    for url in (LINK, f"{LINK}?flow={flow}", f"{LINK_SIGN_IN}?flow={flow}"):
        page = client.get(url)
        assert page.status_code == 302, url
        assert FC_NAME not in text(client.get(page["Location"]))
        client.post(url, {"action": "link"})
    assert not FranceConnectLink.objects.exists()


# --- the attack -----------------------------------------------------------------------------


def test_next_persons_password_sign_in_drops_the_pending_identity(fc_browser, make_resident):
    """The review's reproduction: B signs in on the sign-in page, then opens the link page."""
    start_link_flow(fc_browser)
    person_b = make_resident("b.suivant@example.org")
    response = fc_browser.client.post(
        "/connexion/?next=/franceconnect/lier/", {"username": person_b.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert signed_in_as(fc_browser.client) == str(person_b.pk)
    assert_nothing_to_link(fc_browser.client)


def test_sign_in_page_with_the_flows_own_next_does_not_carry_the_link(fc_browser, make_resident):
    """Even with the flow id (browser history), a sign-in not made on the dedicated page drops it."""
    flow = flow_of(start_link_flow(fc_browser))
    person_b = make_resident("b.suivant@example.org")
    fc_browser.client.post(
        "/connexion/", {"username": person_b.email, "password": PASSWORD, "next": f"{LINK}?flow={flow}"}
    )
    assert signed_in_as(fc_browser.client) == str(person_b.pk)
    assert_nothing_to_link(fc_browser.client, flow)


def test_second_factor_sign_in_started_elsewhere_drops_the_pending_identity(fc_browser, totp_resident, clock):
    flow = flow_of(start_link_flow(fc_browser))
    client = fc_browser.client
    response = client.post(
        "/connexion/",
        {"username": totp_resident.user.email, "password": PASSWORD, "next": f"{LINK}?flow={flow}"},
    )
    assert response["Location"] == "/connexion/verification/"
    client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert signed_in_as(client) == str(totp_resident.user.pk)
    assert_nothing_to_link(client, flow)


def test_passkey_sign_in_drops_the_pending_identity(rp_settings, fc_browser, make_resident):
    person_b = make_resident("b.cle@example.org")
    setup = Client()
    setup.force_login(person_b)
    authenticator = SoftAuthenticator()
    assert register_passkey(setup, authenticator).status_code == 200

    flow = flow_of(start_link_flow(fc_browser))
    client = fc_browser.client
    options = post_json(client, "/connexion/cle/options/").json()
    response = post_json(
        client, "/connexion/cle/", {"credential": authenticator.get(options), "next": f"{LINK}?flow={flow}"}
    )
    assert response.status_code == 200, response.content
    assert signed_in_as(client) == str(person_b.pk)
    assert_nothing_to_link(client, flow)


def test_franceconnect_sign_in_of_another_identity_drops_the_pending_identity(
    fc_browser, fake_fc, django_capture_on_commit_callbacks
):
    flow = flow_of(start_link_flow(fc_browser))
    # B's FranceConnect identity is already linked to B's account.
    other = FranceConnectBrowser(Client(), fake_fc)
    fake_fc.identity = {**DEFAULT_IDENTITY, "sub": "identity-of-b", "email": "b@example.org"}
    other.sign_in()
    with django_capture_on_commit_callbacks(execute=True):
        other.client.post("/franceconnect/premiere-connexion/", {"action": "create"})
    assert FranceConnectLink.objects.count() == 1
    response = fc_browser.sign_in()
    assert response["Location"] == "/compte/"
    assert SESSION_PENDING not in fc_browser.client.session
    for url in (f"{LINK}?flow={flow}", f"{LINK_SIGN_IN}?flow={flow}"):
        assert urlsplit(fc_browser.client.get(url)["Location"]).path == "/connexion/"
    assert FranceConnectLink.objects.count() == 1


def test_a_second_sign_in_after_the_flows_own_drops_it(fc_browser, make_resident):
    """A signs in on the dedicated page, walks away before confirming; B signs in again."""
    person_a = make_resident("a.premier@example.org")
    person_b = make_resident("b.suivant@example.org")
    url = start_link_flow(fc_browser)
    flow = flow_of(url)
    client = fc_browser.client
    client.post(url, {"username": person_a.email, "password": PASSWORD})
    assert signed_in_as(client) == str(person_a.pk)
    assert client.get(f"{LINK}?flow={flow}").status_code == 200
    client.post("/connexion/", {"username": person_b.email, "password": PASSWORD})
    assert signed_in_as(client) == str(person_b.pk)
    assert_nothing_to_link(client, flow)


def test_the_dedicated_page_is_good_for_one_sign_in_only(fc_browser, make_resident):
    person_a = make_resident("a.premier@example.org")
    person_b = make_resident("b.suivant@example.org")
    url = start_link_flow(fc_browser)
    client = fc_browser.client
    client.post(url, {"username": person_a.email, "password": PASSWORD})
    response = client.post(url, {"username": person_b.email, "password": PASSWORD})
    assert signed_in_as(client) == str(person_a.pk)
    assert EXPIRED in text(client.get(response["Location"]))
    assert not FranceConnectLink.objects.exists()


# --- sign-outs and sessions ended elsewhere -------------------------------------------------


def test_sign_out_drops_the_pending_identity(fc_browser, make_resident):
    person_a = make_resident("a.premier@example.org")
    url = start_link_flow(fc_browser)
    flow = flow_of(url)
    client = fc_browser.client
    client.post(url, {"username": person_a.email, "password": PASSWORD})
    assert client.get(f"{LINK}?flow={flow}").status_code == 200
    client.post("/deconnexion/")
    assert signed_in_as(client) is None
    assert_nothing_to_link(client, flow)


def test_sign_out_before_signing_in_drops_the_pending_identity(fc_browser):
    flow = flow_of(start_link_flow(fc_browser))
    fc_browser.client.post("/deconnexion/")
    assert_nothing_to_link(fc_browser.client, flow)


def test_session_ended_from_another_device_drops_the_pending_identity(fc_browser, make_resident):
    person_a = make_resident("a.premier@example.org")
    url = start_link_flow(fc_browser)
    flow = flow_of(url)
    client = fc_browser.client
    client.post(url, {"username": person_a.email, "password": PASSWORD})
    assert client.get(f"{LINK}?flow={flow}").status_code == 200
    phone = Client()
    phone.post("/connexion/", {"username": person_a.email, "password": PASSWORD})
    phone.post("/compte/sessions/deconnecter-partout/")
    assert signed_in_as(client) is None
    assert_nothing_to_link(client, flow)


# --- lifetimes ------------------------------------------------------------------------------


def test_the_link_flow_expires(fc_browser, make_resident, clock):
    person_a = make_resident("a.premier@example.org")
    url = start_link_flow(fc_browser)
    clock.advance(fc_services.LINK_MAX_AGE_SECONDS + 1)
    assert fc_services.LINK_MAX_AGE_SECONDS < fc_services.PENDING_MAX_AGE_SECONDS
    response = fc_browser.client.get(url)
    assert EXPIRED in text(fc_browser.client.get(response["Location"]))
    fc_browser.client.post(url, {"username": person_a.email, "password": PASSWORD})
    assert signed_in_as(fc_browser.client) is None
    assert_nothing_to_link(fc_browser.client, flow_of(url))


def test_abandoned_at_the_second_step_then_another_sign_in_drops_it(
    fc_browser, totp_resident, make_resident, clock
):
    """A typed the password on the dedicated page and left at the second step; B signs in."""
    person_b = make_resident("b.suivant@example.org")
    url = start_link_flow(fc_browser)
    client = fc_browser.client
    response = client.post(url, {"username": totp_resident.user.email, "password": PASSWORD})
    assert response["Location"] == "/connexion/verification/"
    client.post("/connexion/", {"username": person_b.email, "password": PASSWORD})
    assert signed_in_as(client) == str(person_b.pk)
    assert_nothing_to_link(client, flow_of(url))


# --- the legitimate flow still works --------------------------------------------------------


def test_legitimate_link_with_a_password(fc_browser, make_resident):
    person_a = make_resident("a.premier@example.org")
    url = start_link_flow(fc_browser)
    assert urlsplit(url).path == LINK_SIGN_IN
    client = fc_browser.client
    page = client.get(url)
    assert page.status_code == 200
    assert f"FranceConnect a identifié {FC_NAME}" in text(page)
    assert DEFAULT_IDENTITY["email"] in text(page)  # the address FranceConnect gave, as a hint
    response = client.post(url, {"username": person_a.email, "password": PASSWORD, "next": "/ailleurs/"})
    assert response.status_code == 302
    assert response["Location"] == f"{LINK}?flow={flow_of(url)}"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert FC_NAME in text(page) and person_a.email in text(page)
    assert not FranceConnectLink.objects.exists()  # not before the confirmation
    response = client.post(response["Location"], {"action": "link"})
    assert response["Location"] == "/compte/"
    assert FranceConnectLink.objects.get(user=person_a).sub == DEFAULT_IDENTITY["sub"]
    assert SESSION_PENDING not in client.session


def test_legitimate_link_with_a_second_factor(fc_browser, totp_resident, clock):
    url = start_link_flow(fc_browser)
    client = fc_browser.client
    response = client.post(url, {"username": totp_resident.user.email, "password": PASSWORD})
    assert response["Location"] == "/connexion/verification/"
    assert signed_in_as(client) is None
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert response["Location"] == f"{LINK}?flow={flow_of(url)}"
    assert FC_NAME in text(client.get(response["Location"]))
    client.post(response["Location"], {"action": "link"})
    assert FranceConnectLink.objects.get(user=totp_resident.user).sub == DEFAULT_IDENTITY["sub"]


def test_the_link_is_confirmed_whatever_the_second_factors_clock_says(fc_browser, totp_resident, clock):
    """The flow's lifetimes run on identity.mfa.clock, the session's auth_time on the wall
    clock: the confirmation never compares one with the other. (It did: a fake MFA clock a
    moment ahead of the wall clock, as FakeClock is in the first second of a 30 s step, made
    test_legitimate_link_with_a_second_factor fail now and then.)"""
    clock.advance(120)  # still well within every lifetime of the flow
    url = start_link_flow(fc_browser)
    client = fc_browser.client
    response = client.post(url, {"username": totp_resident.user.email, "password": PASSWORD})
    response = client.post(
        "/connexion/verification/", {"method": "totp", "totp-code": rfc6238(totp_resident.key, clock())}
    )
    assert response["Location"] == f"{LINK}?flow={flow_of(url)}"
    assert FC_NAME in text(client.get(response["Location"]))
    client.post(response["Location"], {"action": "link"})
    assert FranceConnectLink.objects.get(user=totp_resident.user).sub == DEFAULT_IDENTITY["sub"]


def test_link_page_without_the_flow_id_does_not_confirm(fc_browser, make_resident):
    person_a = make_resident("a.premier@example.org")
    url = start_link_flow(fc_browser)
    client = fc_browser.client
    client.post(url, {"username": person_a.email, "password": PASSWORD})
    for wrong in (LINK, f"{LINK}?flow=autre", f"{LINK}?flow=%C3%A9"):
        assert client.get(wrong).status_code == 302
        client.post(wrong, {"action": "link"})
    assert not FranceConnectLink.objects.exists()
    client.post(f"{LINK}?flow={flow_of(url)}", {"action": "link"})
    assert FranceConnectLink.objects.get(user=person_a).sub == DEFAULT_IDENTITY["sub"]
