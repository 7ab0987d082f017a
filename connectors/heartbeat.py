"""Outbox workers' heartbeats: each worker records that it is alive, readiness reads it.

A worker beats at most every HEARTBEAT_SECONDS (one UPDATE, or one INSERT the first
time), from its relay loop, so a worker stuck in a delivery stops beating. Readiness
(`config.health`) reports the outbox as late, not failed, when the newest beat is older
than OUTBOX_HEARTBEAT_LATE_SECONDS: web requests still work, partners' messages wait.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from connectors.models import WorkerHeartbeat

HEARTBEAT_SECONDS = 10.0
FORGET_AFTER = timedelta(days=1)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


class Heart:
    """Beats for one worker process; cheap to call on every loop."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or worker_name()
        self.started_at = timezone.now()
        self._next = 0.0

    def beat(self, *, force: bool = False) -> bool:
        monotonic = time.monotonic()
        if not force and monotonic < self._next:
            return False
        now = timezone.now()
        updated = WorkerHeartbeat.objects.filter(worker=self.name).update(beat_at=now)
        if not updated:
            WorkerHeartbeat.objects.update_or_create(
                worker=self.name, defaults={"beat_at": now, "started_at": self.started_at}
            )
            WorkerHeartbeat.objects.filter(beat_at__lt=now - FORGET_AFTER).delete()
        self._next = monotonic + HEARTBEAT_SECONDS
        return True

    def stop(self) -> None:
        """A worker that stops cleanly says so: it no longer counts as alive."""
        WorkerHeartbeat.objects.filter(worker=self.name).delete()


@dataclass(frozen=True)
class WorkersState:
    state: str  # "ok", "late" or "never_seen"
    last_beat: datetime | None
    alive: int


def workers_state(now: datetime | None = None) -> WorkersState:
    now = now or timezone.now()
    late_after = timedelta(seconds=settings.OUTBOX_HEARTBEAT_LATE_SECONDS)
    beats = list(WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True)[:50])
    if not beats:
        return WorkersState("never_seen", None, 0)
    alive = sum(1 for when in beats if now - when <= late_after)
    return WorkersState("ok" if alive else "late", beats[0], alive)
