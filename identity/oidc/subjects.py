"""Subject identifiers (OpenID Connect Core 1.0 §8): pairwise per sector, public for internal services.

A partner's sector is the host of its `sector_identifier_uri` when it has one, otherwise
the single host of its redirect URIs. Partners of one sector see the same `sub` for a
resident; partners of different sectors see unrelated values, so they cannot correlate
residents by `sub`. The value is

    sub = base64url(HMAC-SHA-256(PAIRWISE_SUBJECT_KEY, sector || 0x0A || user id))

(no padding, 43 characters): stable for the life of the account, not reversible without
the key. The sector is fixed on the client at registration (`Client.subject_sector`) so
that editing redirect URIs later never changes residents' subjects.

The JSON document at a `sector_identifier_uri` is fetched when the client is registered
or its redirect URIs / sector identifier URI are edited (identity/oidc/sector.py): it must
be a JSON array listing every redirect URI of the client (OIDC Core §8.1, Registration
§5), otherwise the registration is refused. It is never fetched at sign-in, and the
sector stays the URI's host (the document's contents never change anyone's `sub`).

Clients the operator marks as internal metropolitan services get the public subject:
the account id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from identity.oidc.client_uris import LOOPBACK_HOSTS, is_native_loopback


class SectorError(ValueError):
    """A client's redirect URIs / sector identifier do not define one sector."""


@lru_cache(maxsize=4)
def _key(configured: str, secret_key: str) -> bytes:
    if configured:
        return configured.encode("utf-8")
    # Local runs only (settings refuse production without PAIRWISE_SUBJECT_KEY).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cum pairwise subject key").derive(
        secret_key.encode("utf-8")
    )


def pairwise_key() -> bytes:
    return _key(settings.PAIRWISE_SUBJECT_KEY, settings.SECRET_KEY)


def pairwise_subject(sector: str, user_id: Any) -> str:
    message = sector.lower().encode("utf-8") + b"\n" + str(user_id).encode("utf-8")
    digest = hmac.new(pairwise_key(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_hosts(redirect_uris: list[str]) -> set[str]:
    """The hosts of the redirect URIs. A native app's loopback redirect (RFC 8252 §7.3)
    names no one's host: every app on every device shares 127.0.0.1, so it never makes a
    sector (an app with only loopback or private-use redirects is a sector of its own)."""
    hosts = set()
    for uri in redirect_uris:
        if is_native_loopback(uri):
            continue
        try:
            host = urlsplit(uri).hostname
        except ValueError:
            host = None
        if host:
            hosts.add(host.lower())
    return hosts


def _loopback_http_allowed(scheme: str, hostname: str) -> bool:
    """http on loopback, where client URIs may use it (development, tests, RFC 8252 apps)."""

    return scheme == "http" and hostname in LOOPBACK_HOSTS and bool(settings.ALLOW_HTTP_LOOPBACK_REDIRECTS)


def sector_for(*, redirect_uris: list[str], sector_identifier_uri: str = "") -> str:
    """The sector a client belongs to; raises SectorError when it is ambiguous."""
    if sector_identifier_uri:
        try:
            parts = urlsplit(sector_identifier_uri)
            hostname = parts.hostname
        except ValueError:
            hostname = None
        if not hostname or not (parts.scheme == "https" or _loopback_http_allowed(parts.scheme, hostname)):
            raise SectorError(f"sector identifier URI {sector_identifier_uri!r} must be an https URL")
        return hostname.lower()
    hosts = redirect_hosts(redirect_uris)
    if len(hosts) > 1:
        raise SectorError(
            "redirect URIs on several hosts ("
            + ", ".join(sorted(hosts))
            + ") need a sector identifier URI (--sector)"
        )
    return next(iter(hosts), "")


def client_sector(client: Any) -> str:
    if client.subject_sector:
        return str(client.subject_sector)
    try:
        return sector_for(
            redirect_uris=client.redirect_uris.split(), sector_identifier_uri=client.sector_identifier_uri
        )
    except SectorError:
        # Registered before sectors existed (or edited by hand): fall back on the client
        # itself, which at least never links two partners.
        return "client:" + str(client.client_id)


def subject_for(client: Any, user: Any) -> str:
    """The `sub` this client receives for this resident."""
    if client is None or client.is_internal:
        return str(user.pk)
    sector = client_sector(client) or "client:" + str(client.client_id)
    return pairwise_subject(sector, user.pk)
