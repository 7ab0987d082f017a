"""The demo's library: a library connector for the demo partner client, pointing at the SIP2
simulator that `python3 dev.py run` starts beside the web server (development only).

    manage.py load_demo_library --port 6001

Run by `load_demo --sip2-port N`. Idempotent; prints the demo cards and PINs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from connectors.library import KIND
from connectors.management.demo import demo_connector_configure
from connectors.selectors import LIBRARY_CARD_SCOPE
from connectors.sip2.simulator import DEMO_DESCRIPTIONS, Sip2Simulator, demo_patrons

DEMO_LIBRARY_LABEL = "Bibliothèques de Nantes Métropole (démo)"


class Command(BaseCommand):
    help = "Configure the demo partner's library connector for the local SIP2 simulator (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="the SIP2 simulator's port on 127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        simulator = Sip2Simulator()  # its defaults: the institution and SIP account it serves
        demo_connector_configure(
            kind=KIND,
            label=DEMO_LIBRARY_LABEL,
            config={
                "host": "127.0.0.1",
                "port": options["port"],
                "institution_id": simulator.institution,
                "login_user": simulator.login_user,
            },
            secrets={"login_password": simulator.login_password},
            scope=LIBRARY_CARD_SCOPE,
        )
        self.stdout.write(f"  Demo library (SIP2 simulator on 127.0.0.1:{options['port']}):")
        self.stdout.write(f"    link a card in {settings.ISSUER}/compte/cartes/ (card number / PIN):")
        for patron in demo_patrons():
            self.stdout.write(f"    {patron.card} / {patron.pin}  {DEMO_DESCRIPTIONS.get(patron.card, '')}")
        self.stdout.write(
            f"    then see the library_card claim in {settings.ISSUER}/demo/ (library card sign-in)"
        )
