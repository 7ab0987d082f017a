"""The document at a client's `sector_identifier_uri`, checked when the client is registered or edited.

OpenID Connect Core 1.0 §8.1 and Dynamic Client Registration 1.0 §5: the URI points to a
JSON array of redirect URIs, and every redirect URI of the client must be in it. That is
how the owner of the sector host vouches that the client belongs to its sector (the
sector being that host: identity/oidc/subjects.py). The OP fetches it at registration:

- https only; http only on loopback (127.0.0.1, localhost, ::1) where the settings allow
  loopback http URIs (`ALLOW_HTTP_LOOPBACK_REDIRECTS`, development and tests), as for the
  other URIs of a client (identity.oidc.client_uris.validate_client_uri);
- a short timeout, a size limit, and no redirects (a redirect is answered with an error:
  the operator registers the final URL), like the client JWKS fetch
  (identity/oidc/client_auth.py);
- the body must be a JSON array of strings containing, exactly (string comparison, as for
  redirect URIs themselves), each redirect URI of the client.

It is fetched when a client is registered (`register_client --sector`, the admin's add
page) and when the admin changes its sector identifier URI or its redirect URIs; never at
sign-in, so a partner's document being down never stops residents. The network call is
made before any database transaction is opened.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable

from common import json_input
from common.outbound import open_without_redirects
from identity.oidc.client_uris import ClientConfigError, validate_client_uri

SECTOR_FETCH_TIMEOUT = 3.0
SECTOR_MAX_BYTES = 64 * 1024


class SectorDocumentError(ClientConfigError):
    """The sector identifier document is unreachable, malformed, or does not list a redirect URI."""


def fetch_sector_document(uri: str) -> list[str]:
    """GET the JSON array at a sector identifier URI; SectorDocumentError says what is wrong."""
    try:
        validate_client_uri(uri, what="sector identifier URI")
    except ClientConfigError as exc:
        raise SectorDocumentError(str(exc)) from exc
    request = urllib.request.Request(uri, headers={"Accept": "application/json"})  # noqa: S310 - checked above
    where = f"sector identifier URI {uri!r}"
    try:
        with open_without_redirects(request, timeout=SECTOR_FETCH_TIMEOUT) as response:
            body = response.read(SECTOR_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise SectorDocumentError(
                f"{where} answered with a redirect (HTTP {exc.code}); redirects are not followed: "
                "register the final URL"
            ) from exc
        raise SectorDocumentError(f"{where} answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise SectorDocumentError(f"{where} is not reachable ({type(exc).__name__})") from exc
    if len(body) > SECTOR_MAX_BYTES:
        raise SectorDocumentError(f"{where}: the document is larger than {SECTOR_MAX_BYTES // 1024} KiB")
    try:
        document = json_input.loads(body)
    except ValueError as exc:
        raise SectorDocumentError(f"{where}: the document is not JSON") from exc
    if not isinstance(document, list) or not all(isinstance(item, str) for item in document):
        raise SectorDocumentError(f"{where}: the document must be a JSON array of redirect URIs (strings)")
    return document


def sector_document_check(*, sector_identifier_uri: str, redirect_uris: Iterable[str]) -> list[str]:
    """Fetch the document and check that it lists every redirect URI; returns the document."""
    document = fetch_sector_document(sector_identifier_uri)
    listed = set(document)
    missing = [uri for uri in dict.fromkeys(redirect_uris) if uri not in listed]
    if missing:
        raise SectorDocumentError(
            f"the document at sector identifier URI {sector_identifier_uri!r} does not list the "
            f"redirect URI{'s' if len(missing) > 1 else ''} {', '.join(repr(uri) for uri in missing)} "
            "(OpenID Connect Core §8.1: every redirect URI of the client must be in it)"
        )
    return document
