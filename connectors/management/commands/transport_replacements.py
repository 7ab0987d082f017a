"""Follow Naolib's card replacement notices (docs/connectors/transport.md, section 6): each
linked Libertan card the operator replaced is marked so, with the new card's masked number;
the resident links the new card from Mon compte. Daily (cron), for every enabled transport
connector:

    manage.py transport_replacements [--since CURSOR]

A partner that does not answer is reported and skipped (exit status 1); marking twice is
harmless.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.links import links_replacements_apply
from connectors.models import PartnerConnector
from connectors.protocol import ConnectorError
from connectors.transport import KIND


class Command(BaseCommand):
    help = "Mark the linked Libertan cards that Naolib replaced (its replacement notices)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", default="", help="the operator's cursor (default: its last 30 days)")

    def handle(self, *args: Any, **options: Any) -> None:
        failed = []
        for partner_connector in PartnerConnector.objects.filter(kind=KIND, enabled=True).select_related(
            "client"
        ):
            try:
                marked, cursor = links_replacements_apply(
                    partner_connector=partner_connector, since=options["since"]
                )
            except ConnectorError as exc:
                failed.append(partner_connector.label)
                self.stderr.write(f"{partner_connector.label}: {exc.code}")
                continue
            self.stdout.write(
                f"{partner_connector.label}: {marked} link(s) marked replaced; next cursor {cursor!r}"
            )
        if failed:
            raise CommandError(f"not answering: {', '.join(failed)}")
