"""The demo's cultural-ticketing platform: a ticketing connector for the demo partner client,
pointing at the ticketing simulator that `python3 dev.py run` starts beside the web server
(development only).

    manage.py load_demo_ticketing --port 6003

Run by `load_demo --ticketing-port N`. Idempotent; prints the demo Carte Blanche cards.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from connectors.management.demo import demo_connector_configure
from connectors.selectors import ELIGIBILITY_SCOPE
from connectors.ticketing import KIND
from connectors.ticketing_simulator import DEMO_API_KEY, DEMO_BIRTH_DATE, DEMO_DESCRIPTIONS, demo_cards

DEMO_TICKETING_LABEL = "Billetterie culturelle — Carte Blanche (démo)"


class Command(BaseCommand):
    help = "Configure the demo partner's ticketing connector for the local simulator (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, required=True, help="the ticketing simulator's port on 127.0.0.1"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo_connector_configure(
            kind=KIND,
            label=DEMO_TICKETING_LABEL,
            config={"base_url": f"http://127.0.0.1:{options['port']}"},
            secrets={"api_key": DEMO_API_KEY},
            scope=ELIGIBILITY_SCOPE,
        )
        self.stdout.write(f"  Demo ticketing platform (simulator on 127.0.0.1:{options['port']}):")
        self.stdout.write(
            f"    link a Carte Blanche in {settings.ISSUER}/compte/cartes/ "
            f"(holder born {DEMO_BIRTH_DATE.isoformat()}):"
        )
        for card in demo_cards():
            self.stdout.write(f"    {card.card}  {DEMO_DESCRIPTIONS.get(card.card, '')}")
        self.stdout.write(
            f"    then see the eligibility claim in {settings.ISSUER}/demo/ (Carte Blanche sign-in)"
        )
