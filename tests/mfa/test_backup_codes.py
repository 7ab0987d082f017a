"""Backup codes: ten, hashed, shown once, single use, regenerable, notified by email."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection

from identity.mfa import services
from identity.mfa.models import BackupCode, BackupCodeDevice
from tests.conftest import MFA_AMR, deliver_emails, open_session
from tests.mfa.conftest import sign_in_password

pytestmark = pytest.mark.django_db

CODE_RE = re.compile(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>")


def generate(client: Any) -> list[str]:
    response = client.post("/compte/securite/codes-de-secours/")
    assert response.status_code == 200
    return CODE_RE.findall(response.content.decode())


def test_ten_codes_shown_once_and_stored_hashed(client: Any, totp_resident: Any) -> None:
    # Generating codes once the account has a factor needs a recent MFA sign-in
    # (tests/security/test_mfa_step_up.py).
    signed_in = open_session(client, totp_resident.user, MFA_AMR)
    codes = generate(signed_in)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(not set(code.replace("-", "")) & set("01ILO") for code in codes)
    # Shown once: the page never lists them again.
    assert CODE_RE.findall(signed_in.get("/compte/securite/codes-de-secours/").content.decode()) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT code_hash FROM mfa_backupcode")
        stored = [row[0] for row in cursor.fetchall()]
    assert len(stored) == 10
    for code in codes:
        for value in stored:
            assert code not in value and code.replace("-", "") not in value
    assert all(value.startswith("hmac-sha256$") for value in stored)


def test_a_code_works_once_and_sends_an_email(
    totp_resident: Any, clock: Any, django_capture_on_commit_callbacks: Any, mailoutbox: Any
) -> None:
    user = totp_resident.user
    codes = services.backup_codes_generate(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.backup_code_use(user=user, code=codes[3].lower().replace("-", " "))
    assert first.ok and first.methods == ["otp"]
    clock.advance(5)
    again = services.backup_code_use(user=user, code=codes[3])
    assert not again.ok
    assert BackupCode.objects.filter(used_at__isnull=False).count() == 1
    deliver_emails()
    assert [m.subject for m in mailoutbox] == ["Un code de secours a été utilisé pour vous connecter"]
    body = mailoutbox[0].body
    assert "Il vous reste 9 codes de secours inutilisés." in body
    assert "Ce n'était pas vous ?" in body and "/mot-de-passe-oublie/" in body


def test_regenerating_invalidates_the_old_codes(totp_resident: Any, clock: Any) -> None:
    user = totp_resident.user
    old = services.backup_codes_generate(user=user)
    new = services.backup_codes_generate(user=user)
    assert not set(old) & set(new)
    assert not services.backup_code_use(user=user, code=old[0]).ok
    clock.advance(5)
    assert services.backup_code_use(user=user, code=new[0]).ok
    assert BackupCodeDevice.objects.filter(user=user).count() == 1
    assert BackupCode.objects.count() == 10


def test_backup_code_failures_are_throttled(totp_resident: Any, clock: Any) -> None:
    user = totp_resident.user
    codes = services.backup_codes_generate(user=user)
    assert not services.backup_code_use(user=user, code="AAAAA-AAAAA").ok
    throttled = services.backup_code_use(user=user, code=codes[0])
    assert throttled.throttled
    clock.advance(1)
    assert services.backup_code_use(user=user, code=codes[0]).ok


def test_sign_in_with_a_backup_code(
    client: Any, totp_resident: Any, clock: Any, django_capture_on_commit_callbacks: Any, mailoutbox: Any
) -> None:
    codes = services.backup_codes_generate(user=totp_resident.user)
    response = sign_in_password(client, totp_resident.user.email)
    assert response["Location"] == "/connexion/verification/"
    page = client.get("/connexion/verification/").content.decode()
    assert "Code de secours" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/connexion/verification/", {"method": "backup", "backup-code": codes[0]})
    assert response.status_code == 302 and response["Location"] == "/compte/"
    assert client.session["sessions.amr"] == ["pwd", "otp", "mfa"]
    assert deliver_emails() == 1
    assert len(mailoutbox) == 1


def test_generating_codes_needs_a_factor(signed_in: Any) -> None:
    response = signed_in.post("/compte/securite/codes-de-secours/")
    assert response.status_code == 302
    assert not BackupCodeDevice.objects.exists()
