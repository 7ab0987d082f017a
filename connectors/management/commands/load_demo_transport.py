"""The demo's Naolib operator: a transport connector for the demo partner client, pointing at
the transport simulator that `python3 dev.py run` starts beside the web server (development
only).

    manage.py load_demo_transport --port 6002

Run by `load_demo --transport-port N`. Idempotent; prints the demo cards.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from connectors.management.demo import demo_connector_configure
from connectors.selectors import TRANSPORT_SCOPE
from connectors.transport import KIND
from connectors.transport_simulator import DEMO_API_KEY, DEMO_DESCRIPTIONS, demo_cards

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
        demo_connector_configure(
            kind=KIND,
            label=DEMO_TRANSPORT_LABEL,
            config={"base_url": f"http://127.0.0.1:{options['port']}"},
            secrets={"api_key": DEMO_API_KEY},
            scope=TRANSPORT_SCOPE,
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
