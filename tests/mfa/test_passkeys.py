"""Passkeys (WebAuthn) with a software authenticator: registration, second factor,
passwordless sign-in, sign-count regression, removal."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from identity.mfa.models import Passkey
from identity.mfa.selectors import user_has_mfa
from identity.services import user_create
from identity.sessions import SESSION_AMR
from tests.conftest import MFA_AMR, PASSWORD, deliver_emails, open_session
from tests.mfa.conftest import SoftAuthenticator, b64url, post_json, register_passkey, sign_in_password

pytestmark = pytest.mark.django_db


def test_registration_options_ask_for_a_discoverable_credential(rp_settings: Any, signed_in: Client) -> None:
    options = post_json(signed_in, "/compte/securite/cles/options/").json()
    assert options["rp"] == {"id": "compte.nantesmetropole.example", "name": "Compte unique métropolitain"}
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none"
    assert len(options["challenge"]) >= 43


def test_registration_ok(
    rp_settings: Any,
    signed_in: Client,
    resident: Any,
    django_capture_on_commit_callbacks: Any,
    mailoutbox: Any,
) -> None:
    authenticator = SoftAuthenticator()
    with django_capture_on_commit_callbacks(execute=True):
        response = register_passkey(signed_in, authenticator, name="Ordinateur du bureau")
    deliver_emails()
    assert response.status_code == 200, response.content
    assert response.json() == {"redirect": "/compte/securite/"}
    passkey = Passkey.objects.get(user=resident)
    assert passkey.name == "Ordinateur du bureau"
    assert passkey.credential_id == b64url(authenticator.credential_id)
    assert passkey.sign_count == 0 and passkey.transports == ["internal", "hybrid"]
    assert not passkey.backup_eligible
    assert user_has_mfa(resident)
    assert mailoutbox[0].subject == "Un second facteur a été ajouté à votre compte"
    # Registering the same credential again is refused (a second factor: from a recent MFA session).
    open_session(signed_in, resident, MFA_AMR)
    again = register_passkey(signed_in, authenticator)
    assert again.status_code == 400
    assert Passkey.objects.count() == 1


def test_registration_from_another_origin_is_refused(rp_settings: Any, signed_in: Client) -> None:
    authenticator = SoftAuthenticator()
    options = post_json(signed_in, "/compte/securite/cles/options/").json()
    credential = authenticator.create(options, origin="https://compte.nantesmetropole.example.evil.example")
    response = post_json(signed_in, "/compte/securite/cles/enregistrer/", {"credential": credential})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not Passkey.objects.exists()


def test_registration_with_another_challenge_is_refused(rp_settings: Any, signed_in: Client) -> None:
    authenticator = SoftAuthenticator()
    options = post_json(signed_in, "/compte/securite/cles/options/").json()
    credential = authenticator.create(options, challenge=b64url(b"x" * 64))
    response = post_json(signed_in, "/compte/securite/cles/enregistrer/", {"credential": credential})
    assert response.status_code == 400
    assert not Passkey.objects.exists()
    # The challenge is spent by its first use: the right answer replayed later fails too.
    credential = authenticator.create(options)
    response = post_json(signed_in, "/compte/securite/cles/enregistrer/", {"credential": credential})
    assert response.status_code == 400


def _with_passkey(signed_in: Client, **kwargs: Any) -> SoftAuthenticator:
    authenticator = SoftAuthenticator(**kwargs)
    assert register_passkey(signed_in, authenticator).status_code == 200
    return authenticator


def test_passkey_as_second_factor(rp_settings: Any, signed_in: Client, resident: Any) -> None:
    authenticator = _with_passkey(signed_in)
    client = Client()
    response = sign_in_password(client, resident.email, next_url="/compte/securite/")
    assert response["Location"] == "/connexion/verification/"
    assert "_auth_user_id" not in client.session
    options = post_json(client, "/connexion/verification/cle/options/").json()
    assert [entry["id"] for entry in options["allowCredentials"]] == [b64url(authenticator.credential_id)]
    response = post_json(client, "/connexion/verification/cle/", {"credential": authenticator.get(options)})
    assert response.status_code == 200, response.content
    assert response.json() == {"redirect": "/compte/securite/"}
    assert client.session[SESSION_AMR] == ["pwd", "hwk", "mfa"]
    assert Passkey.objects.get().sign_count == 1


def test_synced_passkey_is_a_software_key(rp_settings: Any, signed_in: Client, resident: Any) -> None:
    authenticator = _with_passkey(signed_in, backup_eligible=True)
    client = Client()
    sign_in_password(client, resident.email)
    options = post_json(client, "/connexion/verification/cle/options/").json()
    post_json(client, "/connexion/verification/cle/", {"credential": authenticator.get(options)})
    assert client.session[SESSION_AMR] == ["pwd", "swk", "mfa"]


def test_assertion_for_another_rp_or_origin_is_refused(
    rp_settings: Any, signed_in: Client, resident: Any
) -> None:
    authenticator = _with_passkey(signed_in)
    client = Client()
    sign_in_password(client, resident.email)
    for tampered in ({"origin": "https://evil.example"}, {"rp_id": "evil.example"}):
        options = post_json(client, "/connexion/verification/cle/options/").json()
        response = post_json(
            client, "/connexion/verification/cle/", {"credential": authenticator.get(options, **tampered)}
        )
        assert response.status_code == 400
        assert "_auth_user_id" not in client.session


def test_sign_count_regression_is_refused(rp_settings: Any, signed_in: Client, resident: Any) -> None:
    authenticator = _with_passkey(signed_in)
    client = Client()
    sign_in_password(client, resident.email)
    options = post_json(client, "/connexion/verification/cle/options/").json()
    response = post_json(
        client, "/connexion/verification/cle/", {"credential": authenticator.get(options, sign_count=5)}
    )
    assert response.status_code == 200

    # A cloned authenticator shows a counter that did not increase (same or lower).
    for count in (5, 3):
        clone = Client()
        sign_in_password(clone, resident.email)
        options = post_json(clone, "/connexion/verification/cle/options/").json()
        response = post_json(
            clone,
            "/connexion/verification/cle/",
            {"credential": authenticator.get(options, sign_count=count)},
        )
        assert response.status_code == 400
        assert "_auth_user_id" not in clone.session
    assert Passkey.objects.get().sign_count == 5


def test_passwordless_sign_in(rp_settings: Any, signed_in: Client, resident: Any) -> None:
    authenticator = _with_passkey(signed_in)
    client = Client()
    page = client.get("/connexion/cle/?next=/compte/securite/")
    assert page.status_code == 200 and "mfa/webauthn.js" in page.content.decode()
    options = post_json(client, "/connexion/cle/options/").json()
    assert options.get("allowCredentials", []) == []
    assert options["userVerification"] == "preferred"
    response = post_json(
        client, "/connexion/cle/", {"credential": authenticator.get(options), "next": "/compte/securite/"}
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"redirect": "/compte/securite/"}
    assert client.session["_auth_user_id"] == str(resident.pk)
    assert client.session[SESSION_AMR] == ["hwk", "mfa"]


def test_passwordless_without_user_verification_is_single_factor(
    rp_settings: Any, signed_in: Client, resident: Any
) -> None:
    authenticator = _with_passkey(signed_in, user_verification=False)
    client = Client()
    options = post_json(client, "/connexion/cle/options/").json()
    response = post_json(client, "/connexion/cle/", {"credential": authenticator.get(options)})
    assert response.status_code == 200
    assert client.session[SESSION_AMR] == ["hwk"]


def test_passwordless_with_unknown_key_or_replayed_challenge_fails(
    rp_settings: Any, signed_in: Client
) -> None:
    known = _with_passkey(signed_in)
    stranger = SoftAuthenticator()
    client = Client()
    options = post_json(client, "/connexion/cle/options/").json()
    assert post_json(client, "/connexion/cle/", {"credential": stranger.get(options)}).status_code == 400
    # The challenge was spent by the failed attempt.
    assert post_json(client, "/connexion/cle/", {"credential": known.get(options)}).status_code == 400
    assert "_auth_user_id" not in client.session


def test_removal(rp_settings: Any, signed_in: Client, resident: Any) -> None:
    _with_passkey(signed_in)
    # Adding and removing factors once there is one: from a recent MFA session
    # (tests/security/test_mfa_step_up.py).
    open_session(signed_in, resident, MFA_AMR)
    second = SoftAuthenticator()
    register_passkey(signed_in, second, name="Clé USB")
    first_id, second_id = Passkey.objects.order_by("pk").values_list("pk", flat=True)
    response = signed_in.post(f"/compte/securite/passkey/{second_id}/supprimer/")
    assert response.status_code == 302 and response["Location"] == "/compte/securite/"
    assert list(Passkey.objects.values_list("pk", flat=True)) == [first_id]
    # Another resident cannot remove it.
    other = Client()
    user_create(email="other@example.org", password=PASSWORD, email_verified=True)
    sign_in_password(other, "other@example.org")
    assert other.post(f"/compte/securite/passkey/{first_id}/supprimer/").status_code == 404


def test_malformed_json_gets_a_problem_not_a_500(rp_settings: Any, signed_in: Client) -> None:
    post_json(signed_in, "/compte/securite/cles/options/")
    response = signed_in.post(
        "/compte/securite/cles/enregistrer/", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    post_json(signed_in, "/compte/securite/cles/options/")
    response = post_json(signed_in, "/compte/securite/cles/enregistrer/", {"credential": {"id": "???"}})
    assert response.status_code == 400
    client = Client()
    post_json(client, "/connexion/cle/options/")
    response = post_json(client, "/connexion/cle/", {"credential": "nope"})
    assert response.status_code == 400
