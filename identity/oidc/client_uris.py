"""The URIs a partner client registers (redirect, logout, JWKS, sector, logo, policy):
absolute https (http on loopback in development only), no fragment, no spaces.

Redirect URIs may also be those of native apps (RFC 8252), in production too:
- a private-use URI scheme in reverse-domain form, `fr.nantesmetropole.app:/callback`
  (§7.1): the scheme has at least two dot-separated labels (a domain the partner
  controls, reversed), and the URI has no authority (one slash after the colon);
- a claimed https URI (§7.2): an ordinary https redirect URI;
- a loopback IP redirect (§7.3): `http://127.0.0.1/callback` or `http://[::1]/callback`,
  registered WITHOUT a port; any port is accepted at request time
  (`redirect_uri_matches`), the rest of the URI exactly.
`localhost` is refused as a native app's loopback host (§8.3 prefers the IP literal: a
name can be resolved elsewhere); an http URI with a port on a loopback name stays the
development-only exception of `ALLOW_HTTP_LOOPBACK_REDIRECTS`, matched exactly.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOOPBACK_IPS = {"127.0.0.1", "::1"}
# RFC 3986 §3.1 scheme characters, in reverse-domain form: at least two labels.
_REVERSE_DOMAIN_SCHEME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")


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


def is_native_loopback(uri: str) -> bool:
    """An RFC 8252 §7.3 loopback redirect as registered: http, an IP literal, no port."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in LOOPBACK_IPS
        and port is None
        and "@" not in parts.netloc
        and not parts.netloc.endswith(":")
    )


def is_private_use(uri: str) -> bool:
    """A redirect URI with a scheme other than http(s): a native app's private-use scheme."""
    scheme, colon, _rest = uri.partition(":")
    return bool(colon) and scheme.lower() not in {"http", "https"} and "/" not in scheme


def validate_redirect_uri(uri: str, *, what: str = "redirect URI") -> str:
    """A web client's redirect URI (validate_client_uri) or a native app's (RFC 8252)."""
    if any(ch.isspace() for ch in uri):
        raise ClientConfigError(f"{what} {uri!r} must not contain spaces")
    if "#" in uri:
        raise ClientConfigError(f"{what} {uri!r} must not contain a fragment")
    if is_private_use(uri):
        scheme, _, rest = uri.partition(":")
        if scheme != scheme.lower() or not _REVERSE_DOMAIN_SCHEME.match(scheme):
            raise ClientConfigError(
                f"{what} {uri!r} must be an absolute https URL or, for a native app, use a "
                "private-use URI scheme: a domain name its publisher controls, reversed, in lower "
                "case (e.g. fr.nantesmetropole.app:/callback)"
            )
        if not rest.startswith("/") or rest.startswith("//"):
            raise ClientConfigError(
                f"{what} {uri!r}: a private-use URI has one slash after the scheme and no host "
                "(e.g. fr.nantesmetropole.app:/callback)"
            )
        return uri
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as exc:
        raise ClientConfigError(f"{what} {uri!r} is not a valid URL") from exc
    if parts.scheme == "http" and hostname == "localhost" and not _has_port(uri):
        raise ClientConfigError(
            f"{what} {uri!r}: a native app's loopback redirect uses the IP literal "
            "(http://127.0.0.1/… or http://[::1]/…), not localhost"
        )
    if is_native_loopback(uri):
        return uri
    return validate_client_uri(uri, what=what)


def _has_port(uri: str) -> bool:
    try:
        return urlsplit(uri).port is not None
    except ValueError:
        return False


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """RFC 9700 §4.1.3 exact comparison; for a registered native loopback redirect, any
    port (RFC 8252 §7.3), the scheme, host, path and query still compared exactly."""
    if registered == requested:
        return True
    if not is_native_loopback(registered):
        return False
    try:
        req = urlsplit(requested)
        port = req.port
    except ValueError:
        return False
    if port is None or "@" in req.netloc or req.fragment or "#" in requested:
        return False
    host = f"[{req.hostname}]" if req.hostname == "::1" else req.hostname
    reg = urlsplit(registered)
    return (
        req.scheme == "http"
        and req.netloc == f"{host}:{port}"
        and f"http://{host}" == f"{reg.scheme}://{reg.netloc}"
        and req.path == reg.path
        and req.query == reg.query
        and ("?" in requested) == ("?" in registered)
    )


def native_redirect_schemes(redirect_uris: list[str]) -> set[str]:
    """The URI schemes a native app's redirect URIs add to https (get_allowed_schemes)."""
    schemes = set()
    for uri in redirect_uris:
        if is_private_use(uri):
            schemes.add(uri.partition(":")[0].lower())
        elif is_native_loopback(uri):
            schemes.add("http")
    return schemes


def is_native_client(redirect_uris: list[str]) -> bool:
    """A native app on the resident's device: a private-use or loopback redirect URI."""
    return any(is_private_use(uri) or is_native_loopback(uri) for uri in redirect_uris)
