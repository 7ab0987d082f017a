"""Staff pages render, and never show key material."""

from __future__ import annotations

import pytest

from identity.models import SigningKey, User
from tests.conftest import staff_mfa_login


@pytest.fixture
def staff_client(client, db):
    admin = User.objects.create_superuser("admin@example.org", "a long admin passphrase")
    # Staff pages need a session at the MFA level (tests/security/test_staff_sign_in.py).
    return staff_mfa_login(client, admin)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/identity/user/",
        "/admin/identity/client/",
        "/admin/identity/auditevent/",
        "/admin/identity/signingkey/",
        "/admin/identity/accesstoken/",
        "/admin/identity/refreshtoken/",
    ],
)
def test_admin_changelists_render(staff_client, rp, url):
    assert staff_client.get(url).status_code == 200


def test_signing_key_page_hides_private_key(staff_client, signing_keys):
    key = SigningKey.objects.first()
    response = staff_client.get(f"/admin/identity/signingkey/{key.pk}/change/")
    assert response.status_code == 200
    assert b"private_key_encrypted" not in response.content


def test_residents_cannot_reach_admin(client, resident):
    client.force_login(resident)
    response = client.get("/admin/identity/user/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
