"""The consent ledger's sequencer: integrate pending events into the Merkle tree in batches."""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from consent.selectors import LedgerTampered
from consent.services import ledger_integrate


class Command(BaseCommand):
    help = (
        "Integrate the pending consent-ledger events into the Merkle tree, one head update and one "
        "signed tree head per batch. The outbox worker runs the same step; several may run at once "
        "(they take turns on the head row)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Integrate what is pending now, then exit.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between polls when idle.")
        parser.add_argument("--batch-size", type=int, default=5_000)
        parser.add_argument("--max-seconds", type=float, default=0, help="Stop after this long (0 = never).")

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        started = time.monotonic()
        batch = max(1, options["batch_size"])
        self.stdout.write("ledger sequencer ready")
        self.stdout.flush()
        while True:
            close_old_connections()
            try:
                done = ledger_integrate(limit=batch)
            except LedgerTampered as exc:
                # Nothing integrated, nothing signed: run verify_ledger (docs/dpo.md).
                raise CommandError(f"nothing integrated: {exc}") from exc
            if done.integrated:
                self.stdout.write(f"integrated={done.integrated} size={done.size}")
                self.stdout.flush()
            if stopping or (options["once"] and done.integrated < batch):
                return
            if options["max_seconds"] and time.monotonic() - started > options["max_seconds"]:
                return
            if done.integrated < batch and not options["once"]:
                time.sleep(options["interval"])
