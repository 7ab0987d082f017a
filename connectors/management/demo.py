"""What the demo commands `load_demo_library`, `load_demo_transport`, `load_demo_ticketing` and
`load_demo_scim` share: giving the demo partner client a connector of a kind (development only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction
from oauth2_provider.models import get_application_model

from connectors.services import partner_connector_configure
from identity.demo import DEMO_CLIENT_NAME


def demo_connector_configure(
    *, kind: str, label: str, config: Mapping[str, Any], secrets: Mapping[str, str], scope: str = ""
) -> None:
    """Configure (idempotently) the demo partner's connector of `kind`, and allow it `scope`
    (the claim the connector offers) when given. CommandError in production, or when the demo
    partner client does not exist yet (`load_demo` creates it)."""
    if settings.PRODUCTION:
        raise CommandError("demo data is never loaded in production")
    client = get_application_model().objects.filter(name=DEMO_CLIENT_NAME).first()
    if client is None:
        raise CommandError("run load_demo first: the demo partner client does not exist")
    with transaction.atomic():
        scopes = client.allowed_scopes.split()
        if scope and scope not in scopes:
            client.allowed_scopes = " ".join([*scopes, scope])
            client.save(update_fields=["allowed_scopes"])
        partner_connector_configure(
            client=client, kind=kind, label=label, config=dict(config), secrets=dict(secrets)
        )
