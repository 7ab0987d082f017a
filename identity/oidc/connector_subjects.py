"""What connectors need to know of a partner client's view of a resident, registered with
them at start-up (connectors never import identity.oidc):

- the resolver of partners' subjects (connectors.subjects): the `sub` a partner client's ID
  tokens carry for a resident (identity.oidc.subjects.subject_for);
- the release reader of SCIM provisioning (connectors.scim_provisioning): the claims the
  partner client may receive about the resident now, by the ID token's rule
  (identity.oidc.sharing.released_claims: each scope set the resident granted the client in
  the consent ledger, and the claim providers' own purposes), or None when the resident
  shares nothing with it (never granted, withdrawn, expired)."""

from __future__ import annotations

from typing import Any

from connectors.scim_provisioning import register_release_reader
from connectors.subjects import register_resolver
from consent.selectors import partner_consents_for_user
from identity.client_cache import client_by_client_id
from identity.oidc.sharing import released_claims, sharing_granted
from identity.oidc.subjects import subject_for


def partner_subject(client_id: str, user: Any) -> str:
    client = client_by_client_id(client_id)
    return subject_for(client, user) if client is not None else ""


def partner_release(client_id: str, user: Any) -> dict[str, Any] | None:
    client = client_by_client_id(client_id)
    if client is None:
        return None
    if client.is_internal:  # no consent asked (public task): what it may ask for, unless objected
        scope_sets = [client.allowed_scopes.split()]
    else:
        scope_sets = [
            consent.client_key.split()
            for consent in partner_consents_for_user(user=user)
            if consent.client_pk == client.pk and consent.granted and consent.client_key
        ]
    granted = [scopes for scopes in scope_sets if sharing_granted(user, client, scopes)]
    if not granted:
        return None
    claims: dict[str, Any] = {}
    for scopes in granted:
        claims.update(released_claims(client, user, scopes, granted=True))
    claims.pop("sub", None)
    return claims


def register() -> None:
    register_resolver(partner_subject)
    register_release_reader(partner_release)
