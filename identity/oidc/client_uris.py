"""The URIs a partner client registers (redirect, logout, JWKS, sector, logo, policy):
absolute https (http on loopback in development only), no fragment, no spaces.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ClientConfigError(ValueError):
    """An operator-facing reason why a client registration was refused; `field` names the setting."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def validate_client_uri(uri: str, *, what: str) -> str:
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ClientConfigError(f"{what} {uri!r} is not a valid URL") from exc
    if parts.scheme not in {"https", "http"} or not hostname:
        raise ClientConfigError(f"{what} {uri!r} must be an absolute https URL")
    if parts.fragment or "#" in uri:
        raise ClientConfigError(f"{what} {uri!r} must not contain a fragment")
    if parts.scheme == "http" and (
        hostname not in LOOPBACK_HOSTS or not settings.ALLOW_HTTP_LOOPBACK_REDIRECTS
    ):
        raise ClientConfigError(f"{what} {uri!r} must use https (http is allowed only on loopback)")
    if any(ch.isspace() for ch in uri):
        raise ClientConfigError(f"{what} {uri!r} must not contain spaces")
    return uri
