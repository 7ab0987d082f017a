"""The SIP2 simulator on a free port of 127.0.0.1, client configurations, and a test CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.sip2.client import Sip2Client, Sip2Config
from connectors.sip2.simulator import Sip2Simulator

VALID = ("29000000000001", "1234")
BLOCKED = ("29000000000002", "2345")
EXPIRED = ("29000000000003", "3456")
LAST_ATTEMPT = ("29000000000004", "4567")
UNKNOWN = ("29999999999999", "0000")


@pytest.fixture
def simulator() -> Iterator[Sip2Simulator]:
    with Sip2Simulator() as sim:
        yield sim


def make_config(sim: Sip2Simulator, **overrides: Any) -> Sip2Config:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sim.port,
        "institution_id": sim.institution,
        "login_user": sim.login_user,
        "login_password": sim.login_password,
        "location_code": "BM-TEST",
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "pool_wait": 2.0,
    }
    values.update(overrides)
    return Sip2Config(**values)


@pytest.fixture
def client_of() -> Iterator[Any]:
    """`client_of(sim, **config)`: a client closed at the end of the test."""
    clients: list[Sip2Client] = []

    def build(sim: Sip2Simulator, **overrides: Any) -> Sip2Client:
        client = Sip2Client(make_config(sim, **overrides))
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@dataclass
class Authority:
    """A certificate authority made for one test, and a server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_authority(directory: Path, label: str) -> Authority:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Test CA {label}"))
        .issuer_name(_name(f"Test CA {label}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sip2.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("sip2.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / f"ca-{label}.pem"
    cert_file = directory / f"server-{label}.pem"
    key_file = directory / f"server-{label}.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Authority(ca_file, cert_file, key_file)
