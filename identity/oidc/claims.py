"""Standard claims of a resident (OpenID Connect Core 1.0 §5.1), empty ones omitted."""

from __future__ import annotations

from typing import Any


def address_claim(user: Any) -> dict[str, str] | None:
    """The `address` claim (§5.1.1), or None when the resident gave no address."""
    parts = {
        "street_address": user.street_address,
        "locality": user.locality,
        "postal_code": user.postal_code,
        "region": user.region,
        "country": user.country,
    }
    parts = {key: value for key, value in parts.items() if value}
    if not parts:
        return None
    lines = [
        parts.get("street_address", ""),
        " ".join(value for value in (parts.get("postal_code", ""), parts.get("locality", "")) if value),
        parts.get("region", ""),
        parts.get("country", ""),
    ]
    parts["formatted"] = "\n".join(line for line in lines if line)
    return parts


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
    if user.phone_number:
        claims["phone_number"] = user.phone_number
        claims["phone_number_verified"] = bool(user.phone_number_verified)
    address = address_claim(user)
    if address is not None:
        claims["address"] = address
    return claims


def parse_claims_request(value: Any) -> dict[str, Any] | None:
    """The `claims` request parameter (OIDC Core §5.5) as a dict, or None if malformed.

    A JSON object whose optional `id_token` and `userinfo` members are objects mapping claim
    names to null or to an object (`essential`, `value`, `values`).
    """
    import json

    if isinstance(value, dict):
        data = value
    else:
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            return None
    if not isinstance(data, dict):
        return None
    for member in ("id_token", "userinfo"):
        requested = data.get(member)
        if requested is None:
            continue
        if not isinstance(requested, dict):
            return None
        for name, spec in requested.items():
            if not isinstance(name, str) or not (spec is None or isinstance(spec, dict)):
                return None
            if isinstance(spec, dict):
                if "essential" in spec and not isinstance(spec["essential"], bool):
                    return None
                if "values" in spec and not isinstance(spec["values"], list):
                    return None
    return data
