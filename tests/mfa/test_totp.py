"""TOTP (RFC 6238): enrolment, use, tolerance window, replay, throttling, secret at rest."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from django.db import connection

from identity.mfa import services
from identity.mfa.models import TOTPDevice
from tests.conftest import deliver_emails
from tests.mfa.conftest import key_from_page, rfc6238

pytestmark = pytest.mark.django_db


def test_independent_totp_matches_rfc_6238_vectors() -> None:
    # RFC 6238 Appendix B, SHA-1 seed, 8 digits.
    seed = b"12345678901234567890"
    assert rfc6238(seed, 59, digits=8) == "94287082"
    assert rfc6238(seed, 1111111109, digits=8) == "07081804"
    assert rfc6238(seed, 2000000000, digits=8) == "69279037"


def test_enrolment_page_shows_qr_code_secret_text_and_uri(signed_in: Any, clock: Any) -> None:
    response = signed_in.get("/compte/securite/application/ajouter/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<img src="data:image/svg+xml' in html
    key = key_from_page(html)
    assert len(key) == 20
    secret = base64.b32encode(key).decode().rstrip("=")
    assert "otpauth://totp/" in html and f"secret={secret}" in html
    # Reloading the page keeps the same pending secret (the resident may have scanned it).
    assert key_from_page(signed_in.get("/compte/securite/application/ajouter/").content.decode()) == key


def test_wrong_first_code_does_not_activate_right_code_does(
    signed_in: Any, resident: Any, clock: Any, django_capture_on_commit_callbacks: Any, mailoutbox: Any
) -> None:
    key = key_from_page(signed_in.get("/compte/securite/application/ajouter/").content.decode())
    wrong = str((int(rfc6238(key, clock())) + 1) % 1_000_000).zfill(6)
    response = signed_in.post("/compte/securite/application/ajouter/", {"code": wrong})
    assert response.status_code == 200
    assert "Ce code ne correspond pas" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=resident, confirmed=True).exists()

    clock.advance(2)  # past the 1 s throttle of one failure
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(
            "/compte/securite/application/ajouter/", {"code": rfc6238(key, clock()), "name": "Mon téléphone"}
        )
    deliver_emails()
    assert response.status_code == 302
    assert response["Location"] == "/compte/securite/"
    device = TOTPDevice.objects.get(user=resident)
    assert device.confirmed and device.name == "Mon téléphone"
    assert [m.subject for m in mailoutbox] == ["Un second facteur a été ajouté à votre compte"]
    body = mailoutbox[0].body
    assert "Mon téléphone" in body and "Ce n'était pas vous ?" in body and "/mot-de-passe-oublie/" in body


def test_secret_is_encrypted_at_rest(totp_resident: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM mfa_totpdevice WHERE id = %s", [totp_resident.device_id])
        (stored,) = cursor.fetchone()
    stored = bytes(stored)
    key = totp_resident.key
    assert key not in stored
    assert base64.b32encode(key) not in stored and base64.b32encode(key).rstrip(b"=") not in stored
    assert key.hex().encode() not in stored
    assert len(stored) == 12 + len(key) + 16  # nonce + ciphertext + GCM tag
    # Bound to the device id: moved to another row, it no longer decrypts.
    other = TOTPDevice(pk=totp_resident.device_id + 1000, secret_encrypted=stored)
    with pytest.raises(InvalidTag):
        other.secret()


def test_code_of_current_step_is_accepted_once(totp_resident: Any, clock: Any) -> None:
    user, key = totp_resident.user, totp_resident.key
    code = rfc6238(key, clock())
    assert services.totp_verify(user=user, code=code).ok
    clock.advance(5)  # same 30 s step, past any throttle
    replay = services.totp_verify(user=user, code=code)
    assert not replay.ok and not replay.throttled


def test_tolerance_window_is_one_step(totp_resident: Any, clock: Any) -> None:
    user, key = totp_resident.user, totp_resident.key
    clock.advance(90)  # the fixture used the step before the start
    assert not services.totp_verify(user=user, code=rfc6238(key, clock() - 60)).ok  # two steps back
    clock.advance(2)
    assert services.totp_verify(user=user, code=rfc6238(key, clock() - 30)).ok  # previous step
    clock.advance(0.5)
    assert services.totp_verify(user=user, code=rfc6238(key, clock() + 30)).ok  # next step
    clock.advance(0.5)
    # The current step is older than the one just used: refused (no going back).
    assert not services.totp_verify(user=user, code=rfc6238(key, clock())).ok


def test_throttling_is_exponential_with_a_readable_message(signed_in: Any, resident: Any, clock: Any) -> None:
    page = "/compte/securite/application/ajouter/"
    key = key_from_page(signed_in.get(page).content.decode())

    def wrong() -> str:
        return str((int(rfc6238(key, clock())) + 1) % 1_000_000).zfill(6)

    def message(response: Any) -> str:
        return response.content.decode().replace("&#x27;", "'")

    signed_in.post(page, {"code": wrong()})
    # Even the right code is refused while throttled, without being looked at.
    response = signed_in.post(page, {"code": rfc6238(key, clock())})
    assert "Trop d'essais incorrects. Par sécurité, attendez 1 seconde avant de réessayer." in message(
        response
    )
    assert not TOTPDevice.objects.get(user=resident).confirmed

    for waited, expected in ((1, 2), (2, 4), (4, 8)):
        clock.advance(waited)  # exactly what was asked
        signed_in.post(page, {"code": wrong()})
        response = signed_in.post(page, {"code": rfc6238(key, clock())})
        assert f"attendez {expected} secondes avant de réessayer" in message(response)
    device = TOTPDevice.objects.get(user=resident)
    assert device.throttling_failure_count == 4 and not device.confirmed

    clock.advance(8)
    response = signed_in.post(page, {"code": rfc6238(key, clock())})
    assert response.status_code == 302
    assert TOTPDevice.objects.get(user=resident).confirmed


def test_verification_is_throttled_per_device(totp_resident: Any, clock: Any) -> None:
    user, key = totp_resident.user, totp_resident.key
    clock.advance(30)
    assert not services.totp_verify(
        user=user, code="000000" if rfc6238(key, clock()) != "000000" else "111111"
    ).ok
    throttled = services.totp_verify(user=user, code=rfc6238(key, clock()))
    assert throttled.throttled and throttled.retry_after == 1
    clock.advance(1)
    assert services.totp_verify(user=user, code=rfc6238(key, clock())).ok
    assert TOTPDevice.objects.get(pk=totp_resident.device_id).throttling_failure_count == 0
