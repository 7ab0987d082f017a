"""Cron (daily): warn, then ask the erasure of, accounts with no sign-in for
ERASURE_INACTIVE_AFTER_DAYS (consent.erasure.inactive_accounts_process; docs/operators.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from consent.erasure import inactive_accounts_process


class Command(BaseCommand):
    help = (
        "Warn the accounts unused for ERASURE_INACTIVE_AFTER_DAYS minus ERASURE_INACTIVE_WARNING_DAYS, "
        "then request the erasure of those still unused (grace period applies). Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        outcome = inactive_accounts_process(dry_run=dry_run)
        prefix = "would " if dry_run else ""
        self.stdout.write(f"{prefix}warn {len(outcome.warned)} account(s)")
        for user_id in outcome.warned:
            self.stdout.write(f"  {prefix}warn {user_id}")
        self.stdout.write(f"{prefix}request the erasure of {len(outcome.requested)} account(s)")
        for user_id in outcome.requested:
            self.stdout.write(f"  {prefix}request erasure {user_id}")
