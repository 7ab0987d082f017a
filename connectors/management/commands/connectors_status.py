"""The operators' table of partners (docs/operators.md, "Watching partners"):

    manage.py connectors_status [--check]

One line per partner client with outbox messages or a connector: queue depth, age of the
oldest pending message, failing messages and their error types, dead letters, delivered,
and each connector's last health check (`--check`: ask each enabled connector now, each
bounded by connectors.monitoring.HEALTH_CHECK_TIMEOUT_SECONDS).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from connectors import monitoring


def _age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def _health(item: monitoring.ConnectorHealth) -> str:
    if not item.connector.enabled:
        return f"{item.connector.kind}: disabled"
    if item.health is None:
        return f"{item.connector.kind}: not checked"
    state = "ok" if item.health.ok else "DOWN"
    return f"{item.connector.kind}: {state} ({item.health.detail}, {item.health.checked_at:%H:%M:%S})"


class Command(BaseCommand):
    help = "Per partner: queue depth, oldest pending message, failures, dead letters, connector health."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="Run each enabled connector's health check now."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            for row in monitoring.partner_rows():
                for item in row.connectors:
                    if item.connector.enabled:
                        monitoring.health_check(item.connector)
        now = timezone.now()
        header = ("partner", "pending", "oldest", "failing", "dead", "delivered", "errors", "health")
        lines = [header]
        for row in monitoring.partner_rows():
            lines.append(
                (
                    row.partner,
                    str(row.pending),
                    _age(row.oldest_pending_age(now)),
                    str(row.failing),
                    str(row.dead),
                    str(row.delivered),
                    ", ".join(f"{kind} x{count}" for kind, count in row.error_types.items()) or "-",
                    "; ".join(_health(item) for item in row.connectors) or "no connector",
                )
            )
        if len(lines) == 1:
            self.stdout.write("No partner has outbox messages or a connector.")
            return
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        for line in lines:
            cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
            self.stdout.write("  ".join([*cells, line[-1]]).rstrip())
