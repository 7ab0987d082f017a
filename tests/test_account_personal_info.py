"""Mon compte > Informations personnelles: names, phone number, postal address, and a change
of email address (link to the new address, notice to the old one)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from identity import rights
from identity.communes import (
    commune_by_code,
    commune_for_address,
    communes,
    is_french_postcode,
    postcode_belongs,
)
from identity.models import AuditEvent, EmailChange, User
from identity.phone import phone_to_e164
from tests.conftest import PASSWORD, OIDCFlow, deliver_emails, open_session
from tests.oidc.conftest import complete_flow, userinfo

pytestmark = pytest.mark.django_db

PAGE = "/compte/informations/"
EDIT = "/compte/informations/modifier/"
EMAIL_CHANGE = "/compte/informations/adresse-e-mail/"
NEW_EMAIL = "camille.nouvelle@example.org"
CHANGE_LINK = re.compile(r"https?://\S+/compte/adresse-e-mail/confirmer/(?P<token>[^/\s]+)/")
NOT_ME_LINK = re.compile(r"https?://\S+/compte/ce-netait-pas-moi/(?P<token>[^/\s]+)/")


def edit_data(**overrides: str) -> dict[str, str]:
    data = {
        "given_name": "Camille",
        "family_name": "Martin",
        "phone_number": "",
        "street_address": "",
        "commune": "",
        "other_locality": "",
        "postal_code": "",
    }
    data.update(overrides)
    return data


# --- the communes and phone modules -----------------------------------------------------------


def test_the_24_communes_are_shipped_as_data():
    names = [commune.name for commune in communes()]
    assert len(names) == 24 and len({commune.insee_code for commune in communes()}) == 24
    assert "Nantes" in names and "Rezé" in names and "Saint-Herblain" in names
    nantes = commune_by_code("44109")
    assert nantes is not None and nantes.postal_codes == ("44000", "44100", "44200", "44300")
    assert postcode_belongs("44109", "44300") and not postcode_belongs("44109", "44400")
    assert commune_by_code("75056") is None and not postcode_belongs("75056", "75001")
    assert commune_for_address("reze", "44400") == commune_by_code("44143")
    assert commune_for_address("Rezé", "44000") is None
    assert is_french_postcode("44000") and is_french_postcode("97400")
    assert (
        not is_french_postcode("4400") and not is_french_postcode("00100") and not is_french_postcode("AB123")
    )


@pytest.mark.parametrize(
    "typed",
    ["06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678", "06.12.34.56.78", "+33 (0)6 12 34 56 78"],
)
def test_french_numbers_are_stored_as_e164(typed):
    assert phone_to_e164(typed) == "+33612345678"


@pytest.mark.parametrize(
    "typed", ["06 12", "12345", "00 00 00 00 00", "not a number", "+33 6 12 34 56 78 99 99"]
)
def test_invalid_numbers_are_refused(typed):
    assert phone_to_e164(typed) is None


# --- the pages -------------------------------------------------------------------------------


def test_pages_require_sign_in(client):
    for url in (PAGE, EDIT, EMAIL_CHANGE):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/connexion/")
    response = client.post(EDIT, edit_data(given_name="Intrus"))
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")


def test_edit_requires_csrf(resident):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(resident)
    assert browser.post(EDIT, edit_data(given_name="Dominique")).status_code == 403
    assert (
        browser.post(EMAIL_CHANGE, {"new_email": NEW_EMAIL, "current_password": PASSWORD}).status_code == 403
    )
    resident.refresh_from_db()
    assert resident.given_name == "Camille" and resident.email == "camille@example.org"
    assert not EmailChange.objects.exists()


def test_account_page_links_to_the_personal_information(signed_in):
    assert f'href="{PAGE}"' in signed_in.get("/compte/").content.decode()


def test_page_shows_the_details_and_says_the_phone_is_not_verified(signed_in, resident):
    resident.phone_number = "+33612345678"
    resident.save()
    text = signed_in.get(PAGE).content.decode()
    assert "Camille" in text and "Martin" in text and "camille@example.org" in text
    assert "06 12 34 56 78" in text and "non vérifié" in text
    assert "phone_number_verified" in text


def test_edit_names(signed_in, resident):
    response = signed_in.post(EDIT, edit_data(given_name=" Dominique ", family_name="Le Goff"))
    assert response.status_code == 302 and response["Location"] == PAGE
    resident.refresh_from_db()
    assert (resident.given_name, resident.family_name) == ("Dominique", "Le Goff")
    event = AuditEvent.objects.get(event="account.profile_updated")
    assert event.data == {"fields": ["given_name", "family_name"]}
    assert event.subject_user_id == resident.pk and event.acting_user_id == resident.pk
    assert "Dominique" not in str(event.data)


def test_edit_phone_is_normalised_and_not_verified(signed_in, resident):
    resident.phone_number_verified = True
    resident.save()
    signed_in.post(EDIT, edit_data(phone_number="0033 6 12 34 56 78"))
    resident.refresh_from_db()
    assert resident.phone_number == "+33612345678" and resident.phone_number_verified is False
    event = AuditEvent.objects.get(event="account.profile_updated")
    assert event.data == {"fields": ["phone_number"]} and "+33" not in str(event.data)
    # The form shows it back in the national format; an unchanged form changes nothing.
    form_page = signed_in.get(EDIT).content.decode()
    assert 'value="06 12 34 56 78"' in form_page
    signed_in.post(EDIT, edit_data(phone_number="06 12 34 56 78"))
    assert AuditEvent.objects.filter(event="account.profile_updated").count() == 1


def test_edit_foreign_phone_number(signed_in, resident):
    signed_in.post(EDIT, edit_data(phone_number="+32 470 12 34 56"))
    resident.refresh_from_db()
    assert resident.phone_number == "+32470123456"


def test_edit_metropolitan_address(signed_in, resident):
    response = signed_in.post(
        EDIT, edit_data(street_address="2 cours du Champ de Mars", commune="44109", postal_code="44 000")
    )
    assert response.status_code == 302
    resident.refresh_from_db()
    assert resident.street_address == "2 cours du Champ de Mars"
    assert (resident.locality, resident.postal_code, resident.country) == ("Nantes", "44000", "France")
    assert resident.region == ""
    form_page = signed_in.get(EDIT).content.decode()
    assert '<option value="44109" selected>Nantes</option>' in form_page
    assert "commune de Nantes Métropole" in signed_in.get(PAGE).content.decode()


def test_edit_other_french_address(signed_in, resident):
    signed_in.post(
        EDIT,
        edit_data(
            street_address="1 place du Ralliement",
            commune="autre",
            other_locality="Angers",
            postal_code="49000",
        ),
    )
    resident.refresh_from_db()
    assert (resident.locality, resident.postal_code, resident.country) == ("Angers", "49000", "France")
    form_page = signed_in.get(EDIT).content.decode()
    assert '<option value="autre" selected>' in form_page and 'value="Angers"' in form_page


def test_clearing_the_address(signed_in, resident):
    signed_in.post(EDIT, edit_data(street_address="3 rue Kervégan", commune="44109", postal_code="44000"))
    signed_in.post(EDIT, edit_data())
    resident.refresh_from_db()
    assert (resident.street_address, resident.locality, resident.postal_code, resident.country) == (
        "",
        "",
        "",
        "",
    )


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"phone_number": "06 12"}, "phone_number", "Ce numéro de téléphone n&#x27;est pas valide"),
        ({"commune": "44143", "postal_code": "44000"}, "postal_code", "n&#x27;est pas celui de Rezé (44400)"),
        ({"commune": "44109", "postal_code": "4400"}, "postal_code", "code postal français de cinq chiffres"),
        ({"commune": "44109", "postal_code": ""}, "postal_code", "Indiquez le code postal."),
        ({"commune": "autre", "postal_code": "49000"}, "other_locality", "Indiquez le nom de votre commune."),
        (
            {"commune": "autre", "other_locality": "Paris", "postal_code": "ABCDE"},
            "postal_code",
            "cinq chiffres",
        ),
        ({"street_address": "2 rue X", "postal_code": "44000"}, "commune", "Choisissez votre commune"),
        ({"commune": "75056", "postal_code": "75001"}, "commune", "Sélectionnez un choix valide"),
        ({"given_name": ""}, "given_name", "Ce champ est obligatoire."),
    ],
)
def test_invalid_input_is_refused_and_nothing_saved(signed_in, resident, data, field, message):
    before = User.objects.values().get(pk=resident.pk)
    response = signed_in.post(EDIT, edit_data(**{"family_name": "Changé", **data}))
    assert response.status_code == 200
    text = response.content.decode()
    assert message in text
    assert f'id="id_{field}_error"' in text and 'class="error-summary"' in text
    assert User.objects.values().get(pk=resident.pk) == before
    assert not AuditEvent.objects.filter(event="account.profile_updated").exists()


def test_english_page(signed_in):
    signed_in.cookies["language"] = "en"
    text = signed_in.get(EDIT, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Another municipality in France" in text and "Postcode" in text


# --- a partner sees the change at its next userinfo call -------------------------------------


@pytest.fixture
def contact_rp(make_client):
    return make_client(scopes=["openid", "profile", "email", "address", "phone"])


def test_partner_userinfo_reflects_the_new_address_and_phone(contact_rp, signed_in, resident):
    body = complete_flow(OIDCFlow(signed_in, contact_rp), scope="openid profile email address phone")
    before = userinfo(body["access_token"]).json()
    assert "address" not in before and "phone_number" not in before

    signed_in.post(
        EDIT,
        edit_data(
            street_address="2 cours du Champ de Mars",
            commune="44109",
            postal_code="44000",
            phone_number="06 12 34 56 78",
        ),
    )
    after = userinfo(body["access_token"]).json()
    assert after["phone_number"] == "+33612345678" and after["phone_number_verified"] is False
    assert after["address"] == {
        "street_address": "2 cours du Champ de Mars",
        "postal_code": "44000",
        "locality": "Nantes",
        "country": "France",
        "formatted": "2 cours du Champ de Mars\n44000 Nantes\nFrance",
    }
    assert after["updated_at"] >= before["updated_at"]

    signed_in.post(EDIT, edit_data(street_address="1 rue de la Paix", commune="44143", postal_code="44400"))
    again = userinfo(body["access_token"]).json()
    assert again["address"]["locality"] == "Rezé" and "phone_number" not in again


# --- change of email address -----------------------------------------------------------------


def request_change(browser: Client, new_email: str = NEW_EMAIL, password: str = PASSWORD):
    response = browser.post(EMAIL_CHANGE, {"new_email": new_email, "current_password": password})
    deliver_emails()
    return response


def change_token() -> str:
    message = next(message for message in mail.outbox if message.to == [NEW_EMAIL])
    match = CHANGE_LINK.search(message.body)
    assert match, message.body
    return match.group("token")


def confirm_url(token: str) -> str:
    return f"/compte/adresse-e-mail/confirmer/{token}/"


def can_sign_in(email: str) -> bool:
    response = Client().post("/connexion/", {"username": email, "password": PASSWORD})
    return response.status_code == 302


def test_email_change_end_to_end(signed_in, resident):
    response = request_change(signed_in)
    assert response.status_code == 302 and response["Location"] == PAGE
    assert {tuple(message.to) for message in mail.outbox} == {(NEW_EMAIL,), ("camille@example.org",)}
    notice = next(message for message in mail.outbox if message.to == ["camille@example.org"])
    assert notice.subject == "Demande de changement de votre adresse e-mail"
    assert NEW_EMAIL in notice.body and NOT_ME_LINK.search(notice.body)
    token = change_token()
    assert token not in notice.body

    # Until the link is used, the old address is the account's and the page says a change waits.
    resident.refresh_from_db()
    assert resident.email == "camille@example.org"
    assert "Changement en attente" in signed_in.get(PAGE).content.decode()
    assert can_sign_in("camille@example.org") and not can_sign_in(NEW_EMAIL)
    event = AuditEvent.objects.get(event="account.email_change_requested")
    assert event.data == {"link_sent": True} and NEW_EMAIL not in str(event.data)

    # Opening the link only shows a button (mail scanners open links).
    anonymous = Client()
    page = anonymous.get(confirm_url(token))
    assert page.status_code == 200 and "Confirmer la nouvelle adresse" in page.content.decode()
    resident.refresh_from_db()
    assert resident.email == "camille@example.org"

    done = anonymous.post(confirm_url(token))
    assert done.status_code == 200 and "Adresse e-mail changée" in done.content.decode()
    resident.refresh_from_db()
    assert resident.email == NEW_EMAIL and resident.email_verified is True
    assert can_sign_in(NEW_EMAIL) and not can_sign_in("camille@example.org")
    assert AuditEvent.objects.filter(event="account.email_changed", subject_user_id=resident.pk).count() == 1

    # Single use.
    again = anonymous.post(confirm_url(token))
    assert again.status_code == 410 and "déjà été utilisé" in again.content.decode()


def test_email_change_reaches_the_partner(contact_rp, signed_in, resident):
    body = complete_flow(OIDCFlow(signed_in, contact_rp), scope="openid email")
    assert userinfo(body["access_token"]).json()["email"] == "camille@example.org"
    request_change(signed_in)
    assert userinfo(body["access_token"]).json()["email"] == "camille@example.org"
    Client().post(confirm_url(change_token()))
    info = userinfo(body["access_token"]).json()
    assert info["email"] == NEW_EMAIL and info["email_verified"] is True


def test_email_change_needs_the_current_password(signed_in, resident):
    response = request_change(signed_in, password="wrong password")
    assert response.status_code == 200
    assert "Le mot de passe actuel est incorrect." in response.content.decode()
    assert not EmailChange.objects.exists() and not mail.outbox


def test_email_change_to_the_same_address_is_refused(signed_in):
    response = request_change(signed_in, new_email="Camille@Example.org")
    assert response.status_code == 200 and "déjà l&#x27;adresse de votre compte" in response.content.decode()
    assert not EmailChange.objects.exists()


def test_email_change_to_an_address_with_an_account_sends_no_link(signed_in, resident, make_resident):
    make_resident(NEW_EMAIL)
    response = request_change(signed_in)
    # Same answer as for a free address: the form does not tell who has an account.
    assert response.status_code == 302 and response["Location"] == PAGE
    assert not EmailChange.objects.exists()
    to_new = [message for message in mail.outbox if message.to == [NEW_EMAIL]]
    assert len(to_new) == 1 and not CHANGE_LINK.search(to_new[0].body)
    assert to_new[0].subject == "Cette adresse e-mail a déjà un compte"
    assert any(message.to == ["camille@example.org"] for message in mail.outbox)
    assert AuditEvent.objects.get(event="account.email_change_requested").data == {"link_sent": False}


def test_address_taken_meanwhile_gives_a_clear_error(signed_in, resident, make_resident):
    request_change(signed_in)
    token = change_token()
    make_resident(NEW_EMAIL)
    page = Client().get(confirm_url(token))
    assert page.status_code == 409
    assert "celle d'un autre compte" in page.content.decode()
    response = Client().post(confirm_url(token))
    assert response.status_code == 409
    resident.refresh_from_db()
    assert resident.email == "camille@example.org"
    assert not AuditEvent.objects.filter(event="account.email_changed").exists()


def test_expired_link_is_refused(signed_in, resident):
    request_change(signed_in)
    token = change_token()
    EmailChange.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().post(confirm_url(token))
    assert response.status_code == 410 and "a expiré" in response.content.decode()
    resident.refresh_from_db()
    assert resident.email == "camille@example.org"


def test_unknown_link_is_refused(client):
    response = client.get(confirm_url("not-a-real-token"))
    assert response.status_code == 404 and "n'est pas valide" in response.content.decode()


def test_a_newer_request_cancels_the_older_link(signed_in, resident):
    request_change(signed_in)
    first = change_token()
    mail.outbox.clear()
    request_change(signed_in)
    second = change_token()
    assert first != second
    assert Client().post(confirm_url(first)).status_code == 410
    assert Client().post(confirm_url(second)).status_code == 200
    resident.refresh_from_db()
    assert resident.email == NEW_EMAIL


def test_not_me_from_the_old_address_cancels_the_change(signed_in, resident):
    request_change(signed_in)
    token = change_token()
    notice = next(message for message in mail.outbox if message.to == ["camille@example.org"])
    not_me = NOT_ME_LINK.search(notice.body)
    assert not_me
    assert Client().post(f"/compte/ce-netait-pas-moi/{not_me.group('token')}/").status_code == 200
    assert Client().post(confirm_url(token)).status_code == 410
    resident.refresh_from_db()
    assert resident.email == "camille@example.org"


def test_email_change_without_password_needs_a_recent_sign_in(client, make_resident):
    user = make_resident("fc@example.org", password=None)
    open_session(client, user, ["pwd"], age=3600)
    page = client.get(EMAIL_CHANGE).content.decode()
    assert 'name="current_password"' not in page and "moins de 10 minutes" in page
    response = client.post(EMAIL_CHANGE, {"new_email": NEW_EMAIL})
    assert response.status_code == 200 and not EmailChange.objects.exists()

    fresh = open_session(Client(), user, ["pwd"])
    response = fresh.post(EMAIL_CHANGE, {"new_email": NEW_EMAIL})
    assert response.status_code == 302 and EmailChange.objects.count() == 1


def test_email_change_in_english(signed_in, resident):
    resident.preferred_language = "en"
    resident.save()
    request_change(signed_in)
    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects == {
        NEW_EMAIL: "Confirm your new email address",
        "camille@example.org": "Request to change your email address",
    }


def test_export_lists_the_email_changes(signed_in, resident):
    request_change(signed_in)
    section = rights.export(resident)
    assert section["email_changes"][0]["new_email"] == NEW_EMAIL
    assert "token" not in str(section["email_changes"]).lower()


def test_resident_cancels_a_pending_change(signed_in, resident):
    request_change(signed_in)
    token = change_token()
    assert "Annuler ce changement d'adresse" in signed_in.get(PAGE).content.decode()
    assert Client().post("/compte/informations/adresse-e-mail/annuler/").status_code == 302  # signed out
    assert EmailChange.objects.filter(cancelled_at__isnull=True).count() == 1
    response = signed_in.post("/compte/informations/adresse-e-mail/annuler/")
    assert response.status_code == 302 and response["Location"] == PAGE
    assert AuditEvent.objects.filter(event="account.email_change_cancelled").count() == 1
    assert Client().post(confirm_url(token)).status_code == 410
    assert "Changement en attente" not in signed_in.get(PAGE).content.decode()
    resident.refresh_from_db()
    assert resident.email == "camille@example.org"


def test_not_me_after_a_completed_change_puts_the_old_address_back(signed_in, resident):
    request_change(signed_in)
    token = change_token()
    notice = next(message for message in mail.outbox if message.to == ["camille@example.org"])
    not_me = NOT_ME_LINK.search(notice.body)
    assert not_me
    Client().post(confirm_url(token))
    resident.refresh_from_db()
    assert resident.email == NEW_EMAIL
    mail.outbox.clear()
    assert Client().post(f"/compte/ce-netait-pas-moi/{not_me.group('token')}/").status_code == 200
    deliver_emails()
    resident.refresh_from_db()
    assert resident.email == "camille@example.org" and resident.email_verified
    assert AuditEvent.objects.filter(event="account.email_restored", subject_user_id=resident.pk).exists()
    # The password-reset link goes to the restored address, not to the one that replaced it.
    assert [message.to for message in mail.outbox] == [["camille@example.org"]]
