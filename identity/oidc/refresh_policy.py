"""Refresh tokens of public clients (single-page and mobile apps): a short idle lifetime.

RFC 9700 §4.14.2 and the "OAuth 2.0 for Browser-Based Applications" BCP: a public client's
refresh token must be sender-constrained (DPoP, RFC 9449) or rotated; we always rotate
(`ROTATE_REFRESH_TOKEN`, no grace period, replay revokes the family) and in addition a
public client's refresh token expires when it has not been used for
`OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS`. Under rotation every refresh issues a new token,
so a token's idle time is the time since it was issued (`created`). Confidential clients
keep the sliding `REFRESH_TOKEN_EXPIRE_SECONDS` only.

The request validator calls `public_refresh_idle_error` when a refresh token is presented
(identity/oidc/request_validator.py, validate_refresh_token). When DPoP binds refresh
tokens, a bound token may be exempted here (pass `sender_constrained=True`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone


def public_refresh_idle_error(
    *, client: Any, refresh_token: Any, now: datetime | None = None, sender_constrained: bool = False
) -> str | None:
    """The invalid_grant description when a public client's refresh token has been idle too
    long, else None. `refresh_token` is the presented row (its `created`)."""
    if client is None or client.client_type != client.CLIENT_PUBLIC or sender_constrained:
        return None
    idle = settings.OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS
    issued = refresh_token.created
    if not idle or issued is None:
        return None
    if (now or timezone.now()) - issued < timedelta(seconds=idle):
        return None
    return (
        "The refresh token expired: a public client's refresh token is valid for "
        f"{idle} seconds after it was issued; sign the resident in again."
    )
