"""The reader of partner access tokens for profiles' partner API (profiles.partner_tokens).

profiles cannot import the protocol layer, so `IdentityConfig.ready()` registers
`read_partner_token` with profiles' registry. It validates a token the way userinfo does
(identity/oidc/views/userinfo.py): one of our RFC 9068 JWTs, unexpired, issued to a resident
(not a client's own token), for this provider (its audience includes our issuer: a token
for another resource server is refused), of a known client; then one indexed read of its
SHA-256 proves we issued exactly this string, that it was not revoked (sign-out, RFC 7009,
a withdrawal from Mon compte) and that the resident is active
(identity.oidc.access_tokens.resident_of). The ledger then says, per scope, whether the
partner may receive its data now (identity.oidc.sharing.scope_release). A DPoP-bound token
(RFC 9449, `cnf`) is refused here: this API reads Bearer tokens only and cannot check a proof.
"""

from __future__ import annotations

from django.conf import settings

from identity.client_cache import client_by_client_id
from identity.oidc.access_tokens import decode, is_client_token, resident_of
from identity.oidc.sharing import scope_release, sharing_purpose_code
from profiles.partner_tokens import PartnerToken, register_token_reader


def _for_us(claims: dict) -> bool:
    audience = claims.get("aud")
    values = audience if isinstance(audience, list) else [audience]
    return settings.ISSUER in values


def read_partner_token(raw: str) -> PartnerToken | None:
    claims = decode(raw, verify=False)
    if claims is None or is_client_token(claims) or not _for_us(claims):
        return None
    if "cnf" in claims:
        return None  # DPoP-bound (RFC 9449 §7.2): this API takes Bearer tokens only
    client = client_by_client_id(claims["client_id"])
    if client is None:
        return None
    user = resident_of(raw, claims)  # also proves the token is ours and live
    if user is None:
        return None
    scopes = frozenset(claims["scope"].split())
    granted, release = scope_release(client, user, scopes) if scopes else (False, {})
    return PartnerToken(
        user=user,
        client_id=client.client_id,
        client_name=client.name,
        scopes=scopes,
        sharing_granted=granted,
        sharing_purpose=sharing_purpose_code(client, set(scopes)) if scopes else None,
        release=release,
    )


def register() -> None:
    register_token_reader(read_partner_token)
