"""RFC 6749 §4.4 (client credentials grant) and §2.3.1 (client secrets)."""

from __future__ import annotations

import pytest

from identity.oidc.client_uris import ClientConfigError
from identity.oidc.clients import client_register
from tests.oidc.conftest import basic, post_token


@pytest.fixture
def machine(make_client):
    return make_client(
        name="Passerelle transport", redirect_uris=[], grant_types=["client_credentials"], scopes=["profile"]
    )


def test_confidential_client_gets_a_token(machine):
    response = post_token({"grant_type": "client_credentials"}, auth=machine.basic_auth())
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["access_token"]
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] > 0
    # §4.4.3: a refresh token SHOULD NOT be included; no end-user, so no ID token.
    assert "refresh_token" not in body
    assert "id_token" not in body
    assert "no-store" in response["Cache-Control"]


def test_client_secret_post_works_for_client_credentials(make_client):
    machine = make_client(
        name="Passerelle transport",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["profile"],
        token_endpoint_auth_method="client_secret_post",
    )
    response = post_token(
        {"grant_type": "client_credentials", "client_id": machine.client_id, "client_secret": machine.secret}
    )
    assert response.status_code == 200, response.content


def test_a_client_must_use_its_registered_auth_method(machine):
    """OIDC Core §9 (registered method enforced): a client_secret_basic client posting its
    secret in the body is refused, even with the right secret."""
    response = post_token(
        {"grant_type": "client_credentials", "client_id": machine.client_id, "client_secret": machine.secret}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_requested_scope_outside_registration_is_invalid_scope(machine):
    response = post_token({"grant_type": "client_credentials", "scope": "email"}, auth=machine.basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_wrong_secret_is_invalid_client(machine):
    response = post_token({"grant_type": "client_credentials"}, auth=basic(machine.client_id, "nope"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_no_authentication_is_invalid_client(machine):
    response = post_token({"grant_type": "client_credentials", "client_id": machine.client_id})
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


def test_public_client_cannot_use_client_credentials(make_client):
    public = make_client(name="Appli mobile", public=True)
    assert public.secret is None
    response = post_token({"grant_type": "client_credentials", "client_id": public.client_id})
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")
    assert "access_token" not in response.json()


def test_public_client_cannot_be_registered_for_client_credentials(db, signing_keys):
    with pytest.raises(ClientConfigError):
        client_register(name="Appli", redirect_uris=[], grant_types=["client_credentials"], public=True)


def test_public_client_forced_to_client_credentials_still_gets_no_token(make_client):
    """Even if the registration were altered in the database, a public client has no secret."""
    public = make_client(name="Appli mobile", public=True)
    public.client.grant_types = "authorization_code client_credentials"
    public.client.save()
    for data in (
        {"grant_type": "client_credentials", "client_id": public.client_id},
        {"grant_type": "client_credentials", "client_id": public.client_id, "client_secret": ""},
    ):
        response = post_token(data)
        assert response.status_code in (400, 401)
        assert "access_token" not in response.json()


def test_client_not_registered_for_the_grant_is_unauthorized_client(rp):
    response = post_token({"grant_type": "client_credentials"}, auth=rp.basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_client_credentials_client_cannot_use_authorization_code(machine, flow):
    response = flow.authorize(client_id=machine.client_id)
    # No redirect URI is registered for it: error page, never a redirect.
    assert response.status_code == 400
    assert not response.has_header("Location")


def test_client_secret_is_stored_as_keyed_hash(machine):
    machine.client.refresh_from_db()
    stored = machine.client.client_secret
    assert stored != machine.secret
    assert machine.secret not in stored
    assert stored.startswith("hmac-sha256$")
    assert len(stored.split("$", 1)[1]) == 64
    assert machine.client.check_secret(machine.secret)
    assert not machine.client.check_secret(stored)


def test_stored_secret_value_is_useless_as_a_secret(machine):
    machine.client.refresh_from_db()
    stored = machine.client.client_secret
    for data, auth in (
        ({"grant_type": "client_credentials"}, basic(machine.client_id, stored)),
        ({"grant_type": "client_credentials"}, basic(machine.client_id, stored.split("$", 1)[1])),
        (
            {"grant_type": "client_credentials", "client_id": machine.client_id, "client_secret": stored},
            None,
        ),
    ):
        response = post_token(data, auth=auth)
        assert response.status_code == 401, response.content
        assert response.json()["error"] == "invalid_client"
