"""The demo's cultural-ticketing platform: a ticketing connector for the demo partner client,
pointing at the ticketing simulator that `python3 dev.py run` starts beside the web server
(development only).

    manage.py load_demo_ticketing --port 6003

Run by `load_demo --ticketing-port N`. Idempotent; prints the demo Carte Blanche cards.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from oauth2_provider.models import get_application_model

from connectors.selectors import ELIGIBILITY_SCOPE
from connectors.services import partner_connector_configure
from connectors.ticketing import KIND
from connectors.ticketing_simulator import DEMO_API_KEY, DEMO_BIRTH_DATE, DEMO_DESCRIPTIONS, demo_cards
from identity.demo import DEMO_CLIENT_NAME

DEMO_TICKETING_LABEL = "Billetterie culturelle — Carte Blanche (démo)"


class Command(BaseCommand):
    help = "Configure the demo partner's ticketing connector for the local simulator (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, required=True, help="the ticketing simulator's port on 127.0.0.1"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo data is never loaded in production")
        client = get_application_model().objects.filter(name=DEMO_CLIENT_NAME).first()
        if client is None:
            raise CommandError("run load_demo first: the demo partner client does not exist")
        with transaction.atomic():
            scopes = client.allowed_scopes.split()
            if ELIGIBILITY_SCOPE not in scopes:
                client.allowed_scopes = " ".join([*scopes, ELIGIBILITY_SCOPE])
                client.save(update_fields=["allowed_scopes"])
            partner_connector_configure(
                client=client,
                kind=KIND,
                label=DEMO_TICKETING_LABEL,
                config={"base_url": f"http://127.0.0.1:{options['port']}"},
                secrets={"api_key": DEMO_API_KEY},
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
