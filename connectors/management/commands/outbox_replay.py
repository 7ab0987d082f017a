"""Replay a partner's outbox messages once the partner is fixed (docs/operators.md):

    manage.py outbox_replay --partner CLIENT_ID [--kind KIND] [--dead-only]

Dead letters go back to the queue (pending, attempts 0, due now); without `--dead-only`
the partner's failing messages still pending are also made due now. Audited
(`outbox.replayed`). The admin's "Partenaires" page and the outbox's replay action do the same.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.models import OutboxMessage, PartnerConnector
from connectors.services import outbox_replay_partner


class Command(BaseCommand):
    help = "Put a partner's dead-lettered outbox messages back in the queue (and retry failing ones now)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partner", required=True, help="the partner client's client_id")
        parser.add_argument("--kind", default="", help="only messages of this kind")
        parser.add_argument("--dead-only", action="store_true", help="only dead letters")

    def handle(self, *args: Any, **options: Any) -> None:
        partner = options["partner"]
        known = (
            OutboxMessage.objects.filter(partner=partner).exists()
            or PartnerConnector.objects.filter(client__client_id=partner).exists()
        )
        if not known:
            raise CommandError(f"no outbox message or connector for partner {partner!r}")
        count = outbox_replay_partner(partner=partner, kind=options["kind"], dead_only=options["dead_only"])
        self.stdout.write(f"{count} message(s) of {partner} put back in the queue.")
