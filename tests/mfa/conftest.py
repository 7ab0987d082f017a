"""MFA fixtures: a movable clock, an independent RFC 6238 implementation, a software
WebAuthn authenticator, and residents with factors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.core import mail
from django.test import Client

from identity.mfa import services
from tests.conftest import PASSWORD, deliver_emails

ISSUER = "https://compte.nantesmetropole.example"
RP_ID = "compte.nantesmetropole.example"


# --- time -------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        # Start on a fresh 30 s step boundary (+1 s) so "this step" is unambiguous in tests.
        self.value = (int(time.time()) // 30) * 30 + 1.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("identity.mfa.clock.now", fake)
    return fake


# --- RFC 6238, written from the RFC (not from our code) ------------------------------------------


def rfc6238(key: bytes, at: float, step: int = 30, digits: int = 6) -> str:
    counter = int(at // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def key_from_page(html: str) -> bytes:
    """The secret as a resident reads it on the enrolment page (groups of 4, base32)."""
    match = re.search(r'id="totp-secret">.*?<code>([A-Z2-7 ]+)</code>', html, re.S)
    assert match, "the secret is shown as text"
    text = match.group(1).replace(" ", "")
    return base64.b32decode(text + "=" * (-len(text) % 8))


# --- residents --------------------------------------------------------------------------------


def sign_in_password(client: Client, email: str, next_url: str | None = None) -> Any:
    path = "/connexion/" + (f"?next={next_url}" if next_url else "")
    return client.post(path, {"username": email, "password": PASSWORD})


@dataclass
class TotpResident:
    user: Any
    key: bytes
    device_id: int


@pytest.fixture
def totp_resident(resident: Any, clock: FakeClock) -> TotpResident:
    device, key = services.totp_enrolment_start(user=resident)
    outcome = services.totp_enrolment_confirm(
        user=resident, device_id=device.pk, code=rfc6238(key, clock() - 30), name="Téléphone"
    )
    assert outcome.ok
    deliver_emails()  # the "factor added" email of the set-up is not any test's subject
    mail.outbox.clear()
    return TotpResident(resident, key, device.pk)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- a software WebAuthn authenticator --------------------------------------------------------

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


@dataclass
class SoftAuthenticator:
    """Builds real WebAuthn answers (attestation "none", ES256) like a browser + authenticator.

    Signatures are over authenticatorData || SHA-256(clientDataJSON) (WebAuthn L2 §6.3.3),
    authenticator data is rpIdHash || flags || signCount (|| attested credential data).
    """

    rp_id: str = RP_ID
    origin: str = ISSUER
    backup_eligible: bool = False
    user_verification: bool = True
    key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0
    user_handle: str = ""

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def _flags(self, attested: bool) -> int:
        flags = UP
        if self.user_verification:
            flags |= UV
        if self.backup_eligible:
            flags |= BE
        if attested:
            flags |= AT
        return flags

    def _auth_data(self, *, attested: bool, sign_count: int, rp_id: str | None = None) -> bytes:
        data = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        data += bytes([self._flags(attested)]) + struct.pack(">I", sign_count)
        if attested:
            data += b"\x00" * 16 + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self._cose_key()
        return data

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def create(
        self, options: dict[str, Any], *, origin: str | None = None, challenge: str | None = None
    ) -> dict:
        assert options["rp"]["id"] == self.rp_id
        self.user_handle = options["user"]["id"]
        client_data = self._client_data("webauthn.create", challenge or options["challenge"], origin)
        attestation = cbor2.dumps(
            {
                "fmt": "none",
                "attStmt": {},
                "authData": self._auth_data(attested=True, sign_count=self.sign_count),
            }
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        sign_count: int | None = None,
        rp_id: str | None = None,
    ) -> dict:
        allowed = [entry["id"] for entry in options.get("allowCredentials") or []]
        if allowed:
            assert b64url(self.credential_id) in allowed, (
                "this authenticator holds none of the allowed credentials"
            )
        if sign_count is None:
            self.sign_count += 1
            sign_count = self.sign_count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._auth_data(attested=False, sign_count=sign_count, rp_id=rp_id)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": self.user_handle or None,
            },
        }


def post_json(client: Client, path: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(path, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def rp_settings(settings: Any) -> Any:
    settings.ISSUER = ISSUER
    return settings


def register_passkey(client: Client, authenticator: SoftAuthenticator, name: str = "Ordinateur") -> Any:
    options = post_json(client, "/compte/securite/cles/options/").json()
    return post_json(
        client,
        "/compte/securite/cles/enregistrer/",
        {"credential": authenticator.create(options), "name": name},
    )
