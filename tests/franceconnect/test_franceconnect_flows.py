"""FranceConnect as an upstream sign-in, end to end against a local stand-in provider.

Our pages are driven with Django's test client; the stand-in's pages with real HTTP
requests to its port (tests/franceconnect/fake_fc.py).
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY, get_user
from django.core import mail
from django.template import Context, Template
from django.test import Client as BrowserClient
from django.test import RequestFactory

from identity.franceconnect.client import clear_caches
from identity.franceconnect.models import FranceConnectLink
from identity.franceconnect.selectors import logout_url_for
from identity.levels import ACR_BASIC
from identity.mfa.selectors import session_acr
from identity.models import AuditEvent, BrowserSession, User
from identity.sessions import SESSION_AMR, SESSION_SID
from tests.conftest import PASSWORD, clear_test_caches, deliver_emails
from tests.franceconnect.conftest import LOGOUT_RETURN_PATH, FranceConnectBrowser, http_get
from tests.franceconnect.fake_fc import DEFAULT_IDENTITY

pytestmark = pytest.mark.django_db

FC_EMAIL = DEFAULT_IDENTITY["email"]
UNAVAILABLE = "FranceConnect est momentanément indisponible"
NOT_VERIFIED = "La réponse de FranceConnect n'a pas pu être vérifiée"


def signed_in_user(client: BrowserClient) -> Any:
    user_id = client.session.get(SESSION_KEY)
    return User.objects.get(pk=user_id) if user_id else None


def browser_session(client: BrowserClient) -> BrowserSession:
    return BrowserSession.objects.get(sid=client.session[SESSION_SID])


def login_page_after(client: BrowserClient, response: Any) -> str:
    """Follow a redirect to the sign-in page and return its text."""
    assert response.status_code == 302, response.status_code
    assert urlsplit(response["Location"]).path == "/connexion/", response["Location"]
    page = client.get(response["Location"])
    assert page.status_code == 200
    return text(page)


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def create_account_through_fc(fc_browser: FranceConnectBrowser, capture: Any) -> User:
    response = fc_browser.sign_in()
    assert response["Location"] == "/franceconnect/premiere-connexion/"
    with capture(execute=True):
        response = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "create"})
    assert response.status_code == 302, response.content[:500]
    deliver_emails()
    return User.objects.get(email=FC_EMAIL)


# --- the button and the authorization request -----------------------------------------------------


def test_login_page_shows_the_franceconnect_button_without_inline_style(client, fake_fc):
    page = client.get("/connexion/")
    page_text = text(page)
    assert page.status_code == 200
    assert 'class="fc-connect"' in page_text
    assert "S’identifier avec" in page_text and "FranceConnect</span>" in page_text
    assert "Qu’est-ce que FranceConnect ?" in page_text
    assert 'href="https://franceconnect.gouv.fr/"' in page_text
    assert "style=" not in page_text and "<script" not in page_text
    # The page works whether or not the upstream answers: nothing is fetched to render it.
    assert fake_fc.authorize_requests == []


def test_button_is_hidden_when_franceconnect_is_disabled(client, settings):
    settings.FRANCECONNECT_ENABLED = False
    assert 'class="fc-connect"' not in text(client.get("/connexion/"))
    response = client.post("/franceconnect/connexion/")
    assert "n'est pas proposée" in login_page_after(client, response)


def test_authorization_request_carries_state_nonce_acr_and_scopes(fc_browser, fake_fc, settings):
    response = fc_browser.start()
    query = {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == fake_fc.client_id
    assert query["redirect_uri"] == settings.ISSUER + "/franceconnect/retour/"
    assert query["acr_values"] == "eidas1"
    assert query["scope"].split() == settings.FRANCECONNECT_SCOPES
    assert query["prompt"] == "login consent"
    assert json.loads(query["claims"]) == {"id_token": {"amr": {"essential": True}}}
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["state"] != query["nonce"]
    # Fresh values every time.
    again = {k: v[0] for k, v in parse_qs(urlsplit(fc_browser.start()["Location"]).query).items()}
    assert again["state"] != query["state"] and again["nonce"] != query["nonce"]


# --- first use: account creation ------------------------------------------------------------------


def test_first_use_creates_an_account_and_signs_in_at_eidas1(
    fc_browser, fake_fc, django_capture_on_commit_callbacks
):
    response = fc_browser.sign_in()
    assert response.status_code == 302
    assert response["Location"] == "/franceconnect/premiere-connexion/"
    assert signed_in_user(fc_browser.client) is None  # nothing happens before the resident chooses

    page = fc_browser.client.get("/franceconnect/premiere-connexion/")
    page_text = text(page)
    assert "Angela Claire Louise DUBOIS" in page_text and FC_EMAIL in page_text
    assert "Créer mon compte" in page_text and "J'ai déjà un compte" in page_text

    with django_capture_on_commit_callbacks(execute=True):
        response = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "create"})
    assert response.status_code == 302 and response["Location"] == "/compte/"
    deliver_emails()

    user = User.objects.get(email=FC_EMAIL)
    assert (user.given_name, user.family_name) == ("Angela Claire Louise", "DUBOIS")
    assert user.email_verified is False  # FranceConnect does not vouch for the address
    assert not user.has_usable_password()
    assert FranceConnectLink.objects.get(user=user).sub == DEFAULT_IDENTITY["sub"]
    assert signed_in_user(fc_browser.client) == user
    assert fc_browser.client.session[SESSION_AMR] == ["pwd"]
    assert browser_session(fc_browser.client).acr == "eidas1"
    # A confirmation link went to the address FranceConnect gave.
    assert [message.to for message in mail.outbox] == [[FC_EMAIL]]

    # The token request authenticated with client_secret_post and the registered redirect URI.
    (token_request,) = fake_fc.token_requests
    assert token_request["client_secret"] == fake_fc.client_secret
    assert token_request["redirect_uri"].endswith("/franceconnect/retour/")

    # The account page shows the link; no password yet, so no unlink button but a way to set one.
    account = text(fc_browser.client.get("/compte/"))
    assert "Votre compte est lié à FranceConnect" in account
    assert "Délier FranceConnect" not in account
    assert "/franceconnect/mot-de-passe/" in account


def test_no_identity_pivot_in_audit_events_or_database(fc_browser, django_capture_on_commit_callbacks):
    create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    events = list(AuditEvent.objects.values_list("event", "data"))
    assert (
        "login.succeeded",
        {"method": "franceconnect", "link": FranceConnectLink.objects.get().pk},
    ) in events
    dumped = json.dumps([data for _event, data in events])
    for value in ("1962-08-24", "75107", "99100", "female", "DUBOIS", FC_EMAIL, DEFAULT_IDENTITY["sub"]):
        assert value not in dumped
    link = FranceConnectLink.objects.get()
    assert {field.name for field in link._meta.fields} == {"id", "user", "sub", "linked_at", "last_used_at"}


def test_usage_name_is_preferred_for_the_family_name(fc_browser, fake_fc, django_capture_on_commit_callbacks):
    fake_fc.identity["preferred_username"] = "MARTIN"
    user = create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    assert user.family_name == "MARTIN"


def test_email_matching_an_existing_account_is_never_linked_automatically(fc_browser, make_resident):
    existing = make_resident(FC_EMAIL)
    response = fc_browser.sign_in()
    assert response["Location"] == "/franceconnect/premiere-connexion/"
    assert signed_in_user(fc_browser.client) is None

    response = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "create"})
    assert response.status_code == 400
    assert "Un compte existe déjà avec l'adresse e-mail transmise par FranceConnect" in text(response)
    assert not FranceConnectLink.objects.exists()
    assert User.objects.count() == 1
    assert signed_in_user(fc_browser.client) is None
    existing.refresh_from_db()
    assert existing.has_usable_password()


def test_no_email_from_franceconnect_means_no_account_creation(fc_browser, fake_fc):
    fake_fc.identity["email"] = ""
    fc_browser.sign_in()
    response = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "create"})
    assert response.status_code == 400
    assert "pas transmis d'adresse e-mail" in text(response)
    assert not User.objects.exists()


# --- first use: linking an existing account -------------------------------------------------------


def test_link_to_an_existing_account_after_a_password_sign_in(fc_browser, fake_fc, make_resident, settings):
    resident = make_resident("camille.autre@example.org")
    fc_browser.sign_in()
    response = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "link"})
    assert response.status_code == 302
    # The dedicated sign-in page of the link flow (tests/security/test_franceconnect_pending_link.py).
    sign_in_url = response["Location"]
    assert urlsplit(sign_in_url).path == "/franceconnect/lier/connexion/"
    flow = parse_qs(urlsplit(sign_in_url).query)["flow"][0]
    page = fc_browser.client.get(sign_in_url)
    assert page.status_code == 200 and FC_EMAIL in text(page)  # FranceConnect's address as a hint

    response = fc_browser.client.post(sign_in_url, {"username": resident.email, "password": PASSWORD})
    link_url = f"/franceconnect/lier/?flow={flow}"
    assert response.status_code == 302 and response["Location"] == link_url
    page = fc_browser.client.get(link_url)
    assert page.status_code == 200 and resident.email in text(page)
    assert not FranceConnectLink.objects.exists()  # not before the resident confirms

    response = fc_browser.client.post(link_url, {"action": "link"})
    assert response.status_code == 302 and response["Location"] == "/compte/"
    assert FranceConnectLink.objects.get(user=resident).sub == DEFAULT_IDENTITY["sub"]
    assert User.objects.count() == 1
    # FranceConnect's session is open too: the sign-out should end it.
    request = _request_for(fc_browser.client)
    assert logout_url_for(request) == "/franceconnect/deconnexion/"

    # From now on FranceConnect signs in to that account, from any browser.
    other = FranceConnectBrowser(BrowserClient(), fake_fc)
    response = other.sign_in()
    assert response.status_code == 302 and response["Location"] == "/compte/"
    assert signed_in_user(other.client) == resident


def test_an_earlier_session_does_not_prove_ownership_for_linking(signed_in, fake_fc, resident):
    fc_browser = FranceConnectBrowser(signed_in, fake_fc)
    fc_browser.sign_in()
    sign_in_url = fc_browser.client.post("/franceconnect/premiere-connexion/", {"action": "link"})["Location"]
    flow = parse_qs(urlsplit(sign_in_url).query)["flow"][0]
    # Already signed in before choosing: that session ends, a fresh sign-in is required.
    assert signed_in_user(fc_browser.client) is None
    response = fc_browser.client.post(f"/franceconnect/lier/?flow={flow}", {"action": "link"})
    assert response.status_code == 302 and response["Location"] == sign_in_url
    assert "Connectez-vous à votre compte existant" in text(fc_browser.client.get(sign_in_url))
    assert not FranceConnectLink.objects.exists()
    # The identity is still waiting: signing in on the link flow's own page completes the link.
    # (A sign-in on the ordinary sign-in page would drop it: issue 9, finding 9.)
    fc_browser.client.post(sign_in_url, {"username": resident.email, "password": PASSWORD})
    fc_browser.client.post(f"/franceconnect/lier/?flow={flow}", {"action": "link"})
    assert FranceConnectLink.objects.get().user == resident


def test_a_franceconnect_sign_in_does_not_prove_ownership_for_linking(
    fc_browser, fake_fc, make_resident, django_capture_on_commit_callbacks
):
    """Someone with FranceConnect account A cannot link identity B to A by signing in with A."""
    user_a = create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    browser = FranceConnectBrowser(BrowserClient(), fake_fc)
    fake_fc.identity = {**fake_fc.identity, "sub": "identity-b", "email": "b@example.org"}
    browser.sign_in()
    browser.client.post("/franceconnect/premiere-connexion/", {"action": "link"})
    fake_fc.identity = {**fake_fc.identity, "sub": DEFAULT_IDENTITY["sub"]}
    assert browser.sign_in()["Location"] == "/compte/"  # signed in to A through FranceConnect
    assert signed_in_user(browser.client) == user_a
    response = browser.client.post("/franceconnect/lier/", {"action": "link"})
    assert urlsplit(response["Location"]).path == "/connexion/"
    assert list(FranceConnectLink.objects.values_list("sub", flat=True)) == [DEFAULT_IDENTITY["sub"]]


def test_link_page_without_a_pending_identity_restarts(client):
    response = client.get("/franceconnect/lier/")
    assert "a expiré" in login_page_after(client, response)


# --- known identity -------------------------------------------------------------------------------


def test_known_identity_signs_in_with_upstream_amr_and_eidas1(
    fc_browser, fake_fc, django_capture_on_commit_callbacks
):
    user = create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    fake_fc.switches.amr = ["pin", "pop", "mfa"]
    browser = FranceConnectBrowser(BrowserClient(), fake_fc)
    response = browser.sign_in(next_url="/compte/mot-de-passe/")
    assert response.status_code == 302 and response["Location"] == "/compte/mot-de-passe/"
    assert signed_in_user(browser.client) == user
    # FranceConnect stays eIDAS low whatever the methods: the upstream "mfa" is not carried
    # into our session, whose level says so (and cannot satisfy an MFA step-up).
    assert browser.client.session[SESSION_AMR] == ["pin", "pop"]
    assert browser_session(browser.client).acr == "eidas1"

    request = type("R", (), {"session": browser.client.session})()
    assert session_acr(request) == ACR_BASIC
    assert FranceConnectLink.objects.get(user=user).last_used_at is not None


def test_known_identity_of_a_deactivated_account_is_refused(fc_browser, django_capture_on_commit_callbacks):
    user = create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    User.objects.filter(pk=user.pk).update(is_active=False)
    browser = FranceConnectBrowser(BrowserClient(), fc_browser.fake)
    response = browser.sign_in()
    assert "ne peut pas être utilisé" in login_page_after(browser.client, response)
    assert signed_in_user(browser.client) is None


# --- unlinking ------------------------------------------------------------------------------------


def test_unlink_with_a_password(signed_in, resident):
    FranceConnectLink.objects.create(user=resident, sub="some-sub")
    assert "Délier FranceConnect" in text(signed_in.get("/compte/"))
    response = signed_in.post("/franceconnect/delier/")
    assert response.status_code == 302 and response["Location"] == "/compte/"
    assert not FranceConnectLink.objects.exists()
    assert AuditEvent.objects.filter(event="franceconnect.unlinked", subject_user_id=resident.pk).exists()
    assert "Lier mon compte à FranceConnect" in text(signed_in.get("/compte/"))


def test_unlink_without_a_password_is_refused_and_a_password_link_offered(
    fc_browser, django_capture_on_commit_callbacks
):
    user = create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    response = fc_browser.client.post("/franceconnect/delier/")
    assert response.status_code == 302
    assert FranceConnectLink.objects.filter(user=user).exists()
    assert "Choisissez d'abord un mot de passe" in text(fc_browser.client.get("/compte/"))

    with django_capture_on_commit_callbacks(execute=True):
        fc_browser.client.post("/franceconnect/mot-de-passe/")
    deliver_emails()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [FC_EMAIL]
    assert "/mot-de-passe-oublie/" in mail.outbox[0].body


def test_unlink_requires_sign_in(client):
    response = client.post("/franceconnect/delier/")
    assert response.status_code == 302 and urlsplit(response["Location"]).path == "/connexion/"


# --- failures: each one a clear message, no session, no account -----------------------------------

ID_TOKEN_FAILURES = [
    "tamper_signature",
    "tamper_payload",
    "wrong_nonce",
    "non_ascii_nonce",
    "wrong_aud",
    "wrong_iss",
    "expired",
    "hs256",
    "none",
    "unknown_kid",
]
USERINFO_FAILURES = ["unsigned", "other_sub", "tamper_signature", "none", "wrong_aud"]


def assert_refused(fc_browser: FranceConnectBrowser, response: Any, message: str, reason: str) -> None:
    assert message in login_page_after(fc_browser.client, response)
    assert signed_in_user(fc_browser.client) is None
    assert not User.objects.exists()
    assert not FranceConnectLink.objects.exists()
    event = AuditEvent.objects.filter(event="franceconnect.login_failed").latest("id")
    assert event.data == {"reason": reason}


@pytest.mark.parametrize("mode", ID_TOKEN_FAILURES)
def test_bad_id_token_is_refused(fc_browser, fake_fc, mode):
    fake_fc.switches.id_token = mode
    response = fc_browser.sign_in()
    expected_reason = {
        "tamper_signature": "id_token_signature",
        "tamper_payload": "id_token_signature",
        "wrong_nonce": "id_token_nonce",
        "non_ascii_nonce": "id_token_nonce",
        "wrong_aud": "id_token_aud",
        "wrong_iss": "id_token_iss",
        "expired": "id_token_expired",
        "hs256": "id_token_alg",
        "none": "id_token_alg",
        "unknown_kid": "id_token_signature",
    }[mode]
    assert_refused(fc_browser, response, NOT_VERIFIED, expected_reason)


def test_rs256_id_token_is_accepted(fc_browser, fake_fc, django_capture_on_commit_callbacks):
    fake_fc.switches.alg = "RS256"
    assert create_account_through_fc(fc_browser, django_capture_on_commit_callbacks).email == FC_EMAIL


@pytest.mark.parametrize("acr", [None, "eidas0", "https://refeds.org/profile/mfa"])
def test_missing_or_unknown_acr_is_refused(fc_browser, fake_fc, acr):
    fake_fc.switches.acr = acr
    response = fc_browser.sign_in()
    assert_refused(fc_browser, response, "niveau de garantie", "acr_too_low")


def test_acr_lower_than_asked_is_refused(fc_browser, fake_fc, settings):
    settings.FRANCECONNECT_ACR = "eidas2"
    fake_fc.switches.acr = "eidas1"
    response = fc_browser.sign_in()
    assert_refused(fc_browser, response, "niveau de garantie", "acr_too_low")


@pytest.mark.parametrize("mode", USERINFO_FAILURES)
def test_bad_userinfo_is_refused(fc_browser, fake_fc, mode):
    fake_fc.switches.userinfo = mode
    response = fc_browser.sign_in()
    expected_reason = {
        "unsigned": "userinfo_unsigned",
        "other_sub": "userinfo_sub",
        "tamper_signature": "userinfo_signature",
        "none": "userinfo_alg",
        "wrong_aud": "userinfo_aud",
    }[mode]
    assert_refused(fc_browser, response, NOT_VERIFIED, expected_reason)


def test_upstream_error_access_denied(fc_browser, fake_fc):
    fake_fc.switches.authorize_error = "access_denied"
    response = fc_browser.sign_in()
    assert_refused(fc_browser, response, "Vous avez annulé la connexion avec FranceConnect", "upstream_error")
    assert fake_fc.token_requests == []


def test_upstream_other_error(fc_browser, fake_fc):
    fake_fc.switches.authorize_error = "server_error"
    response = fc_browser.sign_in()
    assert_refused(fc_browser, response, "FranceConnect n'a pas pu vous identifier", "upstream_error")


def test_wrong_state_is_refused_and_the_code_is_not_used(fc_browser, fake_fc):
    back = fc_browser.upstream(fc_browser.start())
    tampered = back.replace("state=", "state=x")
    response = fc_browser.return_to_us(tampered)
    assert_refused(fc_browser, response, "a expiré ou n'est plus valable", "state")
    assert fake_fc.token_requests == []


def test_missing_state_is_refused(fc_browser, fake_fc):
    fc_browser.start()
    response = fc_browser.client.get("/franceconnect/retour/", {"code": "whatever"})
    assert_refused(fc_browser, response, "a expiré ou n'est plus valable", "state")
    assert fake_fc.token_requests == []


def test_callback_without_a_started_request_is_refused(client, fake_fc):
    response = client.get("/franceconnect/retour/", {"code": "x", "state": "y"})
    assert "a expiré ou n'est plus valable" in login_page_after(client, response)


def test_state_is_single_use(fc_browser, fake_fc, django_capture_on_commit_callbacks):
    back = fc_browser.upstream(fc_browser.start())
    assert fc_browser.return_to_us(back)["Location"] == "/franceconnect/premiere-connexion/"
    replay = fc_browser.return_to_us(back)
    assert "a expiré ou n'est plus valable" in login_page_after(fc_browser.client, replay)


def test_state_from_another_browser_is_refused(fc_browser, fake_fc):
    back = fc_browser.upstream(fc_browser.start())
    victim = FranceConnectBrowser(BrowserClient(), fake_fc)
    victim.start()  # the victim has a request of their own, with another state
    response = victim.return_to_us(back)
    assert "a expiré ou n'est plus valable" in login_page_after(victim.client, response)
    assert signed_in_user(victim.client) is None


def test_wrong_iss_parameter_on_the_callback_is_refused(fc_browser, fake_fc):
    back = fc_browser.upstream(fc_browser.start())
    response = fc_browser.return_to_us(back + "&iss=https%3A%2F%2Fevil.example.org")
    assert_refused(fc_browser, response, NOT_VERIFIED, "iss_parameter")


# --- upstream unreachable -------------------------------------------------------------------------


def test_unreachable_upstream_gives_a_message_and_password_sign_in_still_works(client, fake_fc, resident):
    fake_fc.close()  # connection refused
    response = client.post("/franceconnect/connexion/")
    assert UNAVAILABLE in login_page_after(client, response)
    assert signed_in_user(client) is None
    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})
    assert response.status_code == 302
    assert signed_in_user(client) == resident


def test_upstream_timeout_gives_a_message(client, fake_fc, settings):
    settings.FRANCECONNECT_TIMEOUT = 1
    fake_fc.switches.discovery_delay = 3
    response = client.post("/franceconnect/connexion/")
    assert UNAVAILABLE in login_page_after(client, response)


def test_upstream_going_down_during_the_flow(fc_browser, fake_fc):
    back = fc_browser.upstream(fc_browser.start())
    fake_fc.close()

    clear_test_caches()  # the discovery document must be fetched again, from a dead host
    response = fc_browser.return_to_us(back)
    assert_refused(fc_browser, response, UNAVAILABLE, "unavailable")


def test_missing_credentials_in_development_give_the_unavailable_message(client, settings):
    settings.FRANCECONNECT_ENABLED = True
    settings.FRANCECONNECT_CLIENT_ID = ""
    settings.FRANCECONNECT_CLIENT_SECRET = ""
    response = client.post("/franceconnect/connexion/")
    assert UNAVAILABLE in login_page_after(client, response)


def test_discovery_with_another_issuer_is_refused(client, fake_fc, settings):
    settings.FRANCECONNECT_ISSUER = fake_fc.issuer + "/"  # trailing slash stripped: still equal
    assert client.post("/franceconnect/connexion/")["Location"].startswith(fake_fc.issuer)

    clear_test_caches()
    settings.FRANCECONNECT_ISSUER = f"http://localhost:{fake_fc.port}/api/v2"  # not the issuer it announces
    response = client.post("/franceconnect/connexion/")
    assert UNAVAILABLE in login_page_after(client, response)


# --- sign-out -------------------------------------------------------------------------------------


def _request_for(client: BrowserClient) -> Any:
    request = RequestFactory().get("/")
    request.session = client.session
    request.user = get_user(request)
    return request


def test_sign_out_ends_the_franceconnect_session_too(
    fc_browser, fake_fc, django_capture_on_commit_callbacks, settings
):
    create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    client = fc_browser.client
    assert logout_url_for(_request_for(client)) == "/franceconnect/deconnexion/"
    sid = client.session[SESSION_SID]

    assert "Vous serez aussi déconnecté de FranceConnect" in text(client.get("/franceconnect/deconnexion/"))
    response = client.post("/franceconnect/deconnexion/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(fake_fc.issuer + "/session/end?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["id_token_hint"] == fake_fc.issued_id_tokens[-1]
    assert query["post_logout_redirect_uri"] == settings.ISSUER + LOGOUT_RETURN_PATH
    assert len(query["state"]) >= 32
    # Signed out here already, before the browser even reaches FranceConnect.
    assert signed_in_user(client) is None
    assert BrowserSession.objects.get(sid=sid).ended_at is not None

    status, back, _body = http_get(location)
    assert status == 302
    assert fake_fc.end_session_requests[-1]["id_token_hint"] == query["id_token_hint"]
    parts = urlsplit(back)
    assert parts.path == LOGOUT_RETURN_PATH
    page = client.get(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})
    assert page.status_code == 200
    assert "Vous êtes déconnecté de votre compte et de FranceConnect" in text(page)
    # The return page's state is single use.
    again = client.get(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})
    assert again.status_code == 302


def test_sign_out_when_franceconnect_is_down(fc_browser, fake_fc, django_capture_on_commit_callbacks):
    create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    fake_fc.close()

    clear_test_caches()
    response = fc_browser.client.post("/franceconnect/deconnexion/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(fc_browser.client) is None
    home = text(fc_browser.client.get("/"))
    assert "FranceConnect est momentanément indisponible" in home


def test_password_sessions_use_the_normal_sign_out(signed_in):
    assert logout_url_for(_request_for(signed_in)) is None
    response = signed_in.post("/franceconnect/deconnexion/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(signed_in) is None


def test_the_main_sign_out_button_also_ends_the_franceconnect_session(
    fc_browser, fake_fc, django_capture_on_commit_callbacks
):
    create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    client = fc_browser.client
    response = client.post("/deconnexion/")
    assert response.status_code == 302
    assert response["Location"].startswith(fake_fc.issuer + "/session/end?")
    assert signed_in_user(client) is None


def test_logout_return_with_a_forged_state_does_nothing(signed_in, resident):
    response = signed_in.get(LOGOUT_RETURN_PATH, {"state": "forged"})
    assert response.status_code == 302
    session = signed_in.session
    session["franceconnect.logout_state"] = "expected"
    session.save()
    assert signed_in.get(LOGOUT_RETURN_PATH, {"state": "forgé"}).status_code == 302
    assert signed_in_user(signed_in) == resident


# --- never a 500 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"code": ""},
        {"state": ""},
        {"state": "été"},
        {"error": "x" * 5000},
        {"code": "x" * 5000, "state": "y" * 5000},
    ],
)
def test_garbage_on_the_callback_never_500s(client, fake_fc, params):
    client.post("/franceconnect/connexion/")
    response = client.get("/franceconnect/retour/", params)
    assert response.status_code == 302


def test_choice_page_without_pending_identity(client):
    response = client.post("/franceconnect/premiere-connexion/", {"action": "create"})
    assert "a expiré" in login_page_after(client, response)


def test_messages_are_in_english_for_english_speakers(client, fake_fc, settings):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    fake_fc.close()
    response = client.post("/franceconnect/connexion/")
    page = login_page_after(client, response)
    assert "FranceConnect is temporarily unavailable." in page
    assert "Sign in with" in text(client.get("/connexion/"))


def test_after_an_outage_later_clicks_fail_fast_without_calling_upstream(client, fake_fc, settings):
    settings.FRANCECONNECT_TIMEOUT = 1
    fake_fc.switches.discovery_delay = 3
    assert UNAVAILABLE in login_page_after(client, client.post("/franceconnect/connexion/"))
    assert fake_fc.discovery_requests == 1
    fake_fc.switches.discovery_delay = 0
    # During the back-off nobody waits on FranceConnect again.
    assert UNAVAILABLE in login_page_after(client, client.post("/franceconnect/connexion/"))
    assert fake_fc.discovery_requests == 1

    clear_caches()  # as when the back-off has run out
    assert client.post("/franceconnect/connexion/")["Location"].startswith(fake_fc.issuer)
    assert fake_fc.discovery_requests == 2


def test_links_are_visible_to_staff_read_only(admin_client, make_resident):
    link = FranceConnectLink.objects.create(user=make_resident(), sub="sub-for-admin")
    page = admin_client.get(f"/admin/franceconnect/franceconnectlink/{link.pk}/change/")
    assert page.status_code == 200
    assert admin_client.get("/admin/franceconnect/franceconnectlink/add/").status_code == 403


def test_logout_url_template_tag(rf, fc_browser, django_capture_on_commit_callbacks):
    tag = Template("{% load franceconnect %}{% franceconnect_logout_url as url %}{{ url }}")
    anonymous = _request_for(BrowserClient())
    assert tag.render(Context({"request": anonymous})) == "/deconnexion/"
    create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)
    request = _request_for(fc_browser.client)
    assert tag.render(Context({"request": request})) == "/franceconnect/deconnexion/"


def test_sign_in_from_a_new_browser_is_notified_once(
    fc_browser, fake_fc, django_capture_on_commit_callbacks, mailoutbox
):
    create_account_through_fc(fc_browser, django_capture_on_commit_callbacks)

    def new_device_emails():
        return [m for m in mailoutbox if "Nouvelle connexion" in m.subject]

    browser = FranceConnectBrowser(BrowserClient(), fake_fc)
    with django_capture_on_commit_callbacks(execute=True):
        browser.sign_in()
    deliver_emails()
    assert len(new_device_emails()) == 1
    # The same browser is now a known device: signing in again sends nothing.
    browser.client.post("/deconnexion/")
    with django_capture_on_commit_callbacks(execute=True):
        browser.sign_in()
    deliver_emails()
    assert len(new_device_emails()) == 1
