"""The demo's SCIM partner: a SCIM connector for the demo partner client, pointing at the SCIM
simulator (scim2-server) that `python3 dev.py run` starts beside the web server (development
only).

    manage.py load_demo_scim --port 6003

Run by `load_demo --scim-port N`. Idempotent; says how to see the provisioned resident.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from connectors.management.demo import demo_connector_configure
from connectors.scim import KIND
from connectors.scim_simulator import DEMO_TOKEN, PREFIX

DEMO_SCIM_LABEL = "Annuaire des usagers du partenaire (SCIM, démo)"


class Command(BaseCommand):
    help = "Configure the demo partner's SCIM connector for the local SCIM simulator (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="the SCIM simulator's port on 127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = f"http://127.0.0.1:{options['port']}{PREFIX}"
        demo_connector_configure(
            kind=KIND,
            label=DEMO_SCIM_LABEL,
            config={"base_url": base_url},
            secrets={"bearer_token": DEMO_TOKEN},
        )
        self.stdout.write(f"  Demo SCIM partner (scim2-server on {base_url}):")
        self.stdout.write(
            f"    sign in at {settings.ISSUER}/demo/ and accept sharing: the outbox worker creates the "
            "resident there (externalId = the demo partner's sub); change your name in Mon compte, "
            "or withdraw access in Mon compte › Services connectés, and see it follow:"
        )
        self.stdout.write(f"    curl -H 'Authorization: Bearer {DEMO_TOKEN}' {base_url}/Users")
