from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections

from connectors.heartbeat import Heart
from connectors.outbox import relay_once

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Relay outbox messages to partners (at least once, retried with backoff, dead-lettered). "
        "Run one or more of these beside the web nodes; they coordinate through row leases."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Relay what is due now, then exit.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between polls when idle.")
        parser.add_argument("--batch-size", type=int, default=50)
        parser.add_argument("--max-seconds", type=float, default=0, help="Stop after this long (0 = never).")

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
            close_old_connections()
            if not options["once"]:
                heart.beat()
            result = relay_once(batch_size=options["batch_size"])
            if result.processed:
                self.stdout.write(
                    f"delivered={result.delivered} retried={result.retried} dead={result.dead}", ending="\n"
                )
                self.stdout.flush()
            if options["once"] or stopping():
                return
            if options["max_seconds"] and time.monotonic() - started > options["max_seconds"]:
                return
            if not result.processed:
                time.sleep(options["interval"])
