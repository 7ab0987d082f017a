"""Operator commands: create_resident and register_client."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client as BrowserClient
from jwcrypto import jwk
from oauth2_provider.models import get_application_model

from identity.models import AuditEvent, User
from tests.oidc.conftest import SectorDocumentServer

STRONG = "une phrase de passe assez longue"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- create_resident -----------------------------------------------------------------------


def test_create_resident_prints_the_id_and_the_resident_can_sign_in(db: Any) -> None:
    out, _ = run(
        "create_resident",
        "--email",
        "  Camille@Example.ORG ",
        "--password",
        STRONG,
        "--given-name",
        "Camille",
        "--family-name",
        "Martin",
    )
    user = User.objects.get()
    assert out.strip() == str(user.pk)
    assert user.email == "camille@example.org"
    assert (user.given_name, user.family_name, user.email_verified) == ("Camille", "Martin", False)
    assert user.password.startswith("argon2$argon2id$")
    assert authenticate(email="camille@example.org", password=STRONG) == user
    assert AuditEvent.objects.filter(event="account.created", subject_user_id=user.pk).count() == 1


def test_create_resident_json_output(db: Any) -> None:
    out, _ = run(
        "create_resident", "--email", "dominique@example.org", "--password", STRONG, "--verified", "--json"
    )
    payload = json.loads(out)
    user = User.objects.get()
    assert payload == {"id": str(user.pk), "email": "dominique@example.org", "email_verified": True}
    assert user.email_verified is True


def test_create_resident_password_from_stdin(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG + "\n"))
    run("create_resident", "--email", "stdin@example.org", "--password-stdin")
    assert authenticate(email="stdin@example.org", password=STRONG) is not None


def test_create_resident_duplicate_email_is_one_line_error(db: Any) -> None:
    run("create_resident", "--email", "camille@example.org", "--password", STRONG)
    with pytest.raises(CommandError) as excinfo:
        run("create_resident", "--email", "CAMILLE@example.org", "--password", "une autre phrase de passe")
    message = str(excinfo.value)
    assert "already exists" in message and "\n" not in message
    assert User.objects.count() == 1
    assert authenticate(email="camille@example.org", password=STRONG) is not None  # untouched


@pytest.mark.parametrize("password", ["court", "motdepasse", "password123"])
def test_create_resident_weak_password_creates_nothing(db: Any, password: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("create_resident", "--email", "weak@example.org", "--password", password)
    assert "\n" not in str(excinfo.value)
    assert str(excinfo.value).startswith("refused:")
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("email", ["not-an-email", "a@b@example.org", "", "camille@"])
def test_create_resident_malformed_email(db: Any, email: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("create_resident", "--email", email, "--password", STRONG)
    assert "malformed email" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert not User.objects.exists()


# --- register_client -----------------------------------------------------------------------


def test_confidential_client_secret_is_stored_keyed_hash_and_authenticates(signing_keys: Any) -> None:
    out, _ = run(
        "register_client",
        "--name",
        "Réseau des bibliothèques",
        "--grant",
        "client_credentials",
        "--scope",
        "openid",
        "--json",
    )
    payload = json.loads(out)
    client_id, secret = payload["client_id"], payload["client_secret"]
    assert client_id and len(secret) >= 32

    client = get_application_model().objects.get(client_id=client_id)
    assert client.client_type == "confidential"
    assert client.client_secret != secret
    assert secret not in client.client_secret
    assert client.client_secret.startswith("hmac-sha256$")

    auth = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = BrowserClient().post("/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=auth)
    assert response.status_code == 200, response.content
    assert response.json()["access_token"]

    wrong = "Basic " + base64.b64encode(f"{client_id}:{secret}x".encode()).decode()
    response = BrowserClient().post("/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=wrong)
    assert response.status_code == 401


def test_confidential_client_text_output_shows_secret_once(db: Any) -> None:
    out, _ = run("register_client", "--name", "Billetterie", "--redirect-uri", "https://rp.example.org/cb")
    assert "client_id: " in out and "client_secret: " in out
    secret = out.split("client_secret: ", 1)[1].split()[0]
    client = get_application_model().objects.get()
    assert client.client_secret.startswith("hmac-sha256$") and secret not in client.client_secret


def test_public_client_has_no_secret(db: Any) -> None:
    out, _ = run(
        "register_client",
        "--name",
        "Appli mobile",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--json",
    )
    payload = json.loads(out)
    assert "client_secret" not in payload
    client = get_application_model().objects.get(client_id=payload["client_id"])
    assert client.client_type == "public"
    assert client.client_secret == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--grant", "password"], "unknown grant"),
        (["--grant", "implicit"], "unknown grant"),
        (["--redirect-uri", "not a url"], "redirect URI"),
        (["--redirect-uri", "https://[::1"], "not a valid URL"),
        (["--redirect-uri", "ftp://rp.example.org/cb"], "https"),
        (["--redirect-uri", "http://rp.example.org/cb"], "http is allowed only on loopback"),
        (["--redirect-uri", "https://rp.example.org/cb#frag"], "fragment"),
        (["--public", "--grant", "client_credentials"], "public client cannot use the client_credentials"),
        (["--redirect-uri", "https://rp.example.org/cb", "--scope", "admin"], "unknown scope"),
        (["--grant", "authorization_code"], "at least one redirect URI"),
    ],
)
def test_register_client_refusals_create_nothing(db: Any, args: list[str], expected: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("register_client", "--name", "Partenaire", *args)
    assert expected in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert not get_application_model().objects.exists()
    assert not AuditEvent.objects.filter(event="client.registered").exists()


# --- register_client: subjects, signing algorithm, logout options (issue 4) ----------------------


def test_register_client_with_sector_signing_alg_and_logout_uris(db: Any) -> None:
    # The sector identifier document is fetched at registration (tests/oidc/test_sector_identifier.py).
    server = SectorDocumentServer()
    sector = server.serve_json(
        "/redirects.json", ["https://culture.example.org/cb", "https://www.culture.example.net/cb"]
    )
    try:
        out, _ = run(
            "register_client",
            "--name",
            "Portail culture",
            "--redirect-uri",
            "https://culture.example.org/cb",
            "--redirect-uri",
            "https://www.culture.example.net/cb",
            "--sector",
            sector,
            "--signing-alg",
            "ES256",
            "--backchannel-logout-uri",
            "https://culture.example.org/oidc/backchannel",
            "--frontchannel-logout-uri",
            "https://culture.example.org/oidc/frontchannel",
            "--json",
        )
    finally:
        server.close()
    payload = json.loads(out)
    client = get_application_model().objects.get(client_id=payload["client_id"])
    assert client.algorithm == "ES256" and payload["id_token_signed_response_alg"] == "ES256"
    assert client.sector_identifier_uri == sector
    assert client.subject_sector == payload["sector"] == "127.0.0.1"  # the sector URI's host
    assert payload["subject_type"] == "pairwise"
    assert client.backchannel_logout_uri == "https://culture.example.org/oidc/backchannel"
    assert client.frontchannel_logout_uri == "https://culture.example.org/oidc/frontchannel"
    assert client.is_internal is False


def test_register_client_defaults_es256_redirect_host_sector(db: Any) -> None:
    payload = json.loads(
        run(
            "register_client",
            "--name",
            "Billetterie",
            "--redirect-uri",
            "https://rp.example.org/cb",
            "--json",
        )[0]
    )
    client = get_application_model().objects.get(client_id=payload["client_id"])
    assert (client.algorithm, client.subject_sector, payload["subject_type"]) == (
        "ES256",
        "rp.example.org",
        "pairwise",
    )


def test_register_client_rs256_stays_selectable(db: Any) -> None:
    payload = json.loads(
        run(
            "register_client",
            "--name",
            "Billetterie",
            "--redirect-uri",
            "https://rp.example.org/cb",
            "--signing-alg",
            "RS256",
            "--json",
        )[0]
    )
    assert payload["id_token_signed_response_alg"] == "RS256"
    assert get_application_model().objects.get(client_id=payload["client_id"]).algorithm == "RS256"


def test_register_internal_client_gets_public_subjects(db: Any) -> None:
    payload = json.loads(
        run(
            "register_client",
            "--name",
            "Démarches",
            "--redirect-uri",
            "https://demarches.example.fr/cb",
            "--internal",
            "--json",
        )[0]
    )
    assert payload["subject_type"] == "public"
    assert get_application_model().objects.get(client_id=payload["client_id"]).is_internal is True


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--signing-alg", "HS256"], "unknown signing algorithm"),
        (["--signing-alg", "none"], "unknown signing algorithm"),
        (["--redirect-uri", "https://other.example.net/cb"], "sector identifier"),
        (["--sector", "http://sector.example.org/"], "https"),
        (["--sector", "not a url"], "sector identifier URI"),
        (["--frontchannel-logout-uri", "http://rp.example.org/fcl"], "front-channel logout URI"),
        (["--frontchannel-logout-uri", "https://rp.example.org/fcl#x"], "fragment"),
        (["--backchannel-logout-uri", "ftp://rp.example.org/bcl"], "back-channel logout URI"),
    ],
)
def test_register_client_new_option_refusals_create_nothing(db: Any, args: list[str], expected: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("register_client", "--name", "Partenaire", "--redirect-uri", "https://rp.example.org/cb", *args)
    assert expected in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert not get_application_model().objects.exists()
    assert not AuditEvent.objects.filter(event="client.registered").exists()


def test_register_client_refusal_exits_non_zero_with_one_line(tmp_path: Any) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}

    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "register_client",
            "--name",
            "Partenaire",
            "--redirect-uri",
            "https://rp.example.org/cb",
            "--signing-alg",
            "HS256",
        ],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "unknown signing algorithm" in result.stderr


# --- register_client: authentication method, keys, PAR and MFA requirements (issue 4/5) ---------


def test_register_client_private_key_jwt_from_a_jwks_file(db: Any, tmp_path: Any) -> None:
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [json.loads(key.export_public())]}))
    out, _ = run(
        "register_client",
        "--name=Billetterie",
        "--redirect-uri=https://rp.example.org/cb",
        "--auth-method=private_key_jwt",
        f"--jwks-file={jwks_file}",
        "--require-par",
        "--require-mfa",
        "--json",
    )
    result = json.loads(out)
    assert "client_secret" not in result
    assert result["token_endpoint_auth_method"] == "private_key_jwt"
    assert result["require_pushed_authorization_requests"] is True and result["require_mfa"] is True
    client = get_application_model().objects.get(client_id=result["client_id"])
    assert client.jwks["keys"][0]["crv"] == "P-256" and client.client_secret == ""
    assert client.require_par and client.require_mfa


def test_register_client_secret_post_and_jwks_uri(db: Any) -> None:
    out, _ = run(
        "register_client", "--name=Médiathèques", "--redirect-uri=https://m.example.org/cb",
        "--auth-method=client_secret_post", "--json",
    )  # fmt: skip
    assert json.loads(out)["token_endpoint_auth_method"] == "client_secret_post"
    assert json.loads(out)["client_secret"]
    out, _ = run(
        "register_client", "--name=Transport", "--redirect-uri=https://t.example.org/cb",
        "--auth-method=private_key_jwt", "--jwks-uri=https://t.example.org/jwks.json", "--json",
    )  # fmt: skip
    client = get_application_model().objects.get(client_id=json.loads(out)["client_id"])
    assert client.jwks_uri == "https://t.example.org/jwks.json"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--auth-method=private_key_jwt"], "JWKS"),
        (["--auth-method=none"], "public"),
        (["--public", "--auth-method=client_secret_basic"], "public"),
        (["--jwks-uri=https://t.example.org/jwks.json"], "private_key_jwt"),
        (["--auth-method=private_key_jwt", "--jwks-uri=http://t.example.org/jwks.json"], "https"),
    ],
)
def test_register_client_auth_method_refusals_create_nothing(db: Any, args: list[str], expected: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        run("register_client", "--name=X", "--redirect-uri=https://x.example.org/cb", *args)
    assert expected in str(excinfo.value)
    assert not get_application_model().objects.exists()
