"""The demo's Naolib operator: a transport connector for the demo partner client, pointing at
the transport simulator that `python3 dev.py run` starts beside the web server (development
only).

    manage.py load_demo_transport --port 6002

Run by `load_demo --transport-port N`. Idempotent; prints the demo cards.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from oauth2_provider.models import get_application_model

from connectors.selectors import TRANSPORT_SCOPE
from connectors.services import partner_connector_configure
from connectors.transport import KIND
from connectors.transport_simulator import DEMO_API_KEY, DEMO_DESCRIPTIONS, demo_cards
from identity.demo import DEMO_CLIENT_NAME

DEMO_TRANSPORT_LABEL = "Naolib — carte Libertan (démo)"


class Command(BaseCommand):
    help = (
        "Configure the demo partner's transport connector for the local Naolib simulator (development only)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, required=True, help="the transport simulator's port on 127.0.0.1"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo data is never loaded in production")
        client = get_application_model().objects.filter(name=DEMO_CLIENT_NAME).first()
        if client is None:
            raise CommandError("run load_demo first: the demo partner client does not exist")
        with transaction.atomic():
            scopes = client.allowed_scopes.split()
            if TRANSPORT_SCOPE not in scopes:
                client.allowed_scopes = " ".join([*scopes, TRANSPORT_SCOPE])
                client.save(update_fields=["allowed_scopes"])
            partner_connector_configure(
                client=client,
                kind=KIND,
                label=DEMO_TRANSPORT_LABEL,
                config={"base_url": f"http://127.0.0.1:{options['port']}"},
                secrets={"api_key": DEMO_API_KEY},
            )
        cards = demo_cards()
        self.stdout.write(f"  Demo Naolib operator (transport simulator on 127.0.0.1:{options['port']}):")
        self.stdout.write(
            f"    link a Libertan card in {settings.ISSUER}/compte/cartes/ "
            f"(family name {cards[0].family_name}, born {cards[0].birth_date.isoformat()}):"
        )
        for card in cards:
            self.stdout.write(f"    {card.card}  {DEMO_DESCRIPTIONS.get(card.card, '')}")
        self.stdout.write(
            f"    then see the transport_subscription claim in {settings.ISSUER}/demo/ (Naolib sign-in)"
        )
