"""Queue one convergent update per resident that a SCIM partner holds active (run daily, cron).

    manage.py scim_reconcile [--run 2026-12-05]

A consent that lapsed, or was withdrawn another way than from Mon compte › Services
connectés, queues nothing by itself: this run makes the partner's user follow
(connectors.scim_provisioning.scim_reconcile). `--run` names the run (default: today, UTC):
the same run queues once.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from connectors.scim_provisioning import scim_reconcile


class Command(BaseCommand):
    help = "Queue an update of every resident a SCIM partner holds active (consents that lapsed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", default="", help="the run's name (default: today's date, UTC)")

    def handle(self, *args: Any, **options: Any) -> None:
        run = options["run"] or timezone.now().date().isoformat()
        queued = scim_reconcile(run=run)
        self.stdout.write(f"{queued} SCIM update(s) queued (run {run}).")
