"""The subject a partner client knows a resident by, for connectors that name the resident by
it rather than by a card: the SSO id of a ticketing account, the SCIM `externalId`.

It is the `sub` of the partner's ID tokens (pairwise per sector, or the account id for
internal services). identity.oidc computes subjects and stands above connectors (the import
contracts of pyproject.toml): it registers the resolver here at start-up
(identity/oidc/connector_subjects.py). A subject is pseudonymous: it may travel in outbox
payloads (an erasure message carries it past the account's deletion) but is never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from connectors.models import PartnerConnector

# (client_id, user) -> the `sub` that client receives for that resident ("" for an unknown client).
SubjectResolver = Callable[[str, Any], str]
_resolver: SubjectResolver | None = None


def register_resolver(resolver: SubjectResolver) -> None:
    global _resolver
    _resolver = resolver


def partner_subject(client_id: str, user: Any) -> str:
    if _resolver is None:
        raise ImproperlyConfigured("no subject resolver registered: is identity.oidc installed?")
    return _resolver(client_id, user)


def erasure_subjects(user: Any) -> dict[str, dict[str, Any]]:
    """consent.erasure's partner details: client_id → {"subject": sub} for every partner with a
    connector, read before the account is erased (the partner is asked by it afterwards)."""
    client_ids = set(PartnerConnector.objects.values_list("client__client_id", flat=True))
    return {client_id: {"subject": partner_subject(client_id, user)} for client_id in sorted(client_ids)}
