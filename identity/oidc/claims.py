"""Standard claims of a resident (OpenID Connect Core 1.0 §5.1)."""

from __future__ import annotations

from typing import Any


def standard_claims(user: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "email": user.email,
        "email_verified": bool(user.email_verified),
        "locale": user.preferred_language,
        "updated_at": int(user.updated_at.timestamp()),
    }
    if user.given_name:
        claims["given_name"] = user.given_name
    if user.family_name:
        claims["family_name"] = user.family_name
    if user.full_name:
        claims["name"] = user.full_name
    return claims
