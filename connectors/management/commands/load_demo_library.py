"""The demo's library: a library connector for the demo partner client, pointing at the SIP2
simulator that `python3 dev.py run` starts beside the web server (development only).

    manage.py load_demo_library --port 6001

Run by `load_demo --sip2-port N`. Idempotent; prints the demo cards and PINs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from oauth2_provider.models import get_application_model

from connectors.library import KIND
from connectors.selectors import LIBRARY_CARD_SCOPE
from connectors.services import partner_connector_configure
from connectors.sip2.simulator import DEMO_DESCRIPTIONS, Sip2Simulator, demo_patrons
from identity.demo import DEMO_CLIENT_NAME

DEMO_LIBRARY_LABEL = "Bibliothèques de Nantes Métropole (démo)"


class Command(BaseCommand):
    help = "Configure the demo partner's library connector for the local SIP2 simulator (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="the SIP2 simulator's port on 127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo data is never loaded in production")
        client = get_application_model().objects.filter(name=DEMO_CLIENT_NAME).first()
        if client is None:
            raise CommandError("run load_demo first: the demo partner client does not exist")
        simulator = Sip2Simulator()  # its defaults: the institution and SIP account it serves
        with transaction.atomic():
            scopes = client.allowed_scopes.split()
            if LIBRARY_CARD_SCOPE not in scopes:
                client.allowed_scopes = " ".join([*scopes, LIBRARY_CARD_SCOPE])
                client.save(update_fields=["allowed_scopes"])
            partner_connector_configure(
                client=client,
                kind=KIND,
                label=DEMO_LIBRARY_LABEL,
                config={
                    "host": "127.0.0.1",
                    "port": options["port"],
                    "institution_id": simulator.institution,
                    "login_user": simulator.login_user,
                },
                secrets={"login_password": simulator.login_password},
            )
        self.stdout.write(f"  Demo library (SIP2 simulator on 127.0.0.1:{options['port']}):")
        self.stdout.write(f"    link a card in {settings.ISSUER}/compte/cartes/ (card number / PIN):")
        for patron in demo_patrons():
            self.stdout.write(f"    {patron.card} / {patron.pin}  {DEMO_DESCRIPTIONS.get(patron.card, '')}")
        self.stdout.write(
            f"    then see the library_card claim in {settings.ISSUER}/demo/ (library card sign-in)"
        )
