from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connections

from connectors.heartbeat import Heart
from connectors.outbox import relay_once
from consent.selectors import LedgerTampered
from consent.services import ledger_integrate

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Relay outbox messages to partners (at least once, retried with backoff, dead-lettered). "
        "Run one or more of these beside the web nodes; they coordinate through row leases. "
        "Each poll also runs the consent ledger's sequencer (pending events into the Merkle tree)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Relay what is due now, then exit.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between polls when idle.")
        parser.add_argument("--batch-size", type=int, default=50)
        parser.add_argument("--max-seconds", type=float, default=0, help="Stop after this long (0 = never).")
        parser.add_argument(
            "--no-ledger-sequencer",
            action="store_true",
            help="Do not integrate pending consent-ledger events (run `manage.py ledger_sequencer` instead).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        started = time.monotonic()
        heart = Heart()
        try:
            self._relay(heart, started, options, lambda: stopping)
        finally:
            if not options["once"]:
                try:
                    heart.stop()
                except DatabaseError:  # the database is gone: the beat simply ages
                    log.warning("could not remove this worker's heartbeat", exc_info=True)

    def _relay(
        self, heart: Heart, started: float, options: dict[str, Any], stopping: Callable[[], bool]
    ) -> None:
        while True:
            try:
                busy = self._poll(heart, options)
            except (OperationalError, InterfaceError) as exc:
                if options["once"]:
                    raise
                # The database restarts or fails over: keep polling until it is back (a lease
                # taken before stays until it expires, so nothing is delivered twice at once).
                log.warning("outbox worker: database unreachable (%s), retrying", type(exc).__name__)
                connections.close_all()
                busy = False
            if options["once"] or stopping():
                return
            if options["max_seconds"] and time.monotonic() - started > options["max_seconds"]:
                return
            if not busy:
                time.sleep(options["interval"])

    def _poll(self, heart: Heart, options: dict[str, Any]) -> bool:
        """One round: heartbeat, due deliveries, the ledger's sequencer. True if it did work."""
        close_old_connections()
        if not options["once"]:
            heart.beat()
        result = relay_once(batch_size=options["batch_size"])
        integrated = 0 if options["no_ledger_sequencer"] else self.integrate()
        if result.processed:
            self.stdout.write(
                f"delivered={result.delivered} retried={result.retried} dead={result.dead}", ending="\n"
            )
            self.stdout.flush()
        return bool(result.processed or integrated)

    def integrate(self) -> int:
        """One batch of the consent ledger's sequencer; a ledger altered in the database stops
        the integration (nothing signed over it) but not the relay of outbox messages."""
        try:
            done = ledger_integrate()
        except LedgerTampered:
            log.error(
                "consent ledger: pending events NOT integrated, a stored row was altered (run verify_ledger)"
            )
            return 0
        if done.integrated:
            self.stdout.write(f"ledger integrated={done.integrated} size={done.size}", ending="\n")
            self.stdout.flush()
        return done.integrated
