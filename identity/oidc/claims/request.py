"""The `claims` request parameter (OpenID Connect Core 1.0 §5.5)."""

from __future__ import annotations

from typing import Any

from common import json_input


def parse_claims_request(value: Any) -> dict[str, Any] | None:
    """The `claims` request parameter (OIDC Core §5.5) as a dict, or None if malformed.

    A JSON object whose optional `id_token` and `userinfo` members are objects mapping claim
    names to null or to an object (`essential`, `value`, `values`). The parameter never
    widens a release: a claim is only sent under a granted scope that covers it
    (identity.oidc.sharing.released_claims), whatever the parameter names.
    """
    if isinstance(value, dict):
        data = value
    else:
        try:
            data = json_input.loads(value)
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
