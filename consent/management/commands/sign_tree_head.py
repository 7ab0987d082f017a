"""Sign a tree head over the current consent ledger (run from cron, e.g. hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.ledger import pending_count, read_head
from consent.selectors import LedgerTampered, latest_tree_head
from consent.services import tree_head_sign


class Command(BaseCommand):
    help = (
        "Sign and store a tree head (size, root, timestamp) of the consent ledger with the ES256 service key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-changed",
            action="store_true",
            help="do nothing if the latest signed head has the current size and nothing is pending",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_changed"]:
            latest = latest_tree_head()
            if latest is not None and latest.tree_size == read_head().size and not pending_count():
                self.stdout.write(f"unchanged: size {latest.tree_size}")
                return
        try:
            head = tree_head_sign()
        except LedgerTampered as exc:
            # The head row, nodes or history no longer agree: run verify_ledger (docs/dpo.md).
            raise CommandError(f"tree head NOT signed: {exc}") from exc
        self.stdout.write(
            f"signed tree head {head.pk}: size {head.tree_size}, root {bytes(head.root_hash).hex()}"
        )
