"""RFC 8707 resource indicators: which resources a token may be meant for, and who reads it.

A resource is named by an absolute URI, compared exactly (no normalisation: send the
identifier as registered). The targets we issue tokens for are:
- our issuer identifier (settings.ISSUER): userinfo, the default when no `resource` is
  asked (the access token's `aud`, RFC 9068 §3, is then the issuer);
- the `resource_identifier` of a registered resource server (Client.resource_identifier).
Anything else is `invalid_target` (RFC 8707 §2), at the authorization endpoint (and PAR)
and at the token endpoint. Any client may ask for any registered resource server: the
audience only says which server may accept (and introspect) the token; what the token
grants (scopes, consent) is decided as without `resource`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from oauth2_provider.models import get_application_model

from identity.oidc.client_uris import ClientConfigError, validate_client_uri


class ResourceIdentifierError(ValueError):
    """A resource identifier that cannot be registered (the message says why)."""


def resource_identifier_check(value: str) -> str:
    """A resource server's identifier, as it may be registered; raises ResourceIdentifierError.

    RFC 8707 §2: an absolute URI without fragment (and, as SHOULD, without query); https
    (http on loopback in development, like redirect URIs), no user information, no spaces.
    Never our issuer nor a URL under it: those are ours (userinfo).
    """

    value = (value or "").strip()
    try:
        validate_client_uri(value, what="resource identifier")
    except ClientConfigError as exc:
        raise ResourceIdentifierError(str(exc)) from exc
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ResourceIdentifierError(f"resource identifier {value!r} must not contain user information")
    if parts.query or "?" in value:
        raise ResourceIdentifierError(f"resource identifier {value!r} must not contain a query")
    issuer = settings.ISSUER.rstrip("/")
    if value.rstrip("/") == issuer or value.startswith(issuer + "/"):
        raise ResourceIdentifierError("the issuer and URLs under it are this provider's own resources")
    return value


def unknown_targets(values: Iterable[Any]) -> list[Any]:
    """The values that are neither our issuer nor a registered resource server (in order)."""

    candidates = [value for value in values if not (isinstance(value, str) and value == settings.ISSUER)]
    strings = {value for value in candidates if isinstance(value, str) and value}
    registered = (
        set(
            get_application_model()
            .objects.filter(resource_identifier__in=strings)
            .values_list("resource_identifier", flat=True)
        )
        if strings
        else set()
    )
    return [value for value in candidates if value not in registered]


def audience_list(audience: Any) -> list[str]:
    """`aud` (a string or an array, RFC 7519 §4.1.3) as a list of strings."""
    values = audience if isinstance(audience, list) else [audience]
    return [value for value in values if isinstance(value, str)]


def meant_for(audience: Any, client: Any) -> bool:
    """Whether `client`, as a resource server, is named in `audience`."""
    identifier = getattr(client, "resource_identifier", None)
    return bool(identifier) and identifier in audience_list(audience)
