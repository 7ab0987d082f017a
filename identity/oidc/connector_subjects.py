"""The resolver of partners' subjects for the connectors (connectors.subjects): the `sub` a
partner client's ID tokens carry for a resident (identity.oidc.subjects.subject_for)."""

from __future__ import annotations

from typing import Any

from connectors.subjects import register_resolver
from identity.client_cache import client_by_client_id
from identity.oidc.subjects import subject_for


def partner_subject(client_id: str, user: Any) -> str:
    client = client_by_client_id(client_id)
    return subject_for(client, user) if client is not None else ""


def register() -> None:
    register_resolver(partner_subject)
