"""A real `manage.py outbox_worker` process beats, and readiness sees it (issue 16,
"/readyz reflects everything a request needs"): while it runs the outbox is "ok"; once it
stops cleanly (SIGTERM) it is no longer counted; a killed worker's beat simply ages."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from connectors.models import WorkerHeartbeat
from identity.keys import clear_key_cache, signing_keys_ensure

pytestmark = pytest.mark.django_db(transaction=True)


def _outbox_state(client) -> str:
    return client.get("/readyz").json()["checks"]["outbox_worker"]


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["terminated", "killed"])
def test_a_running_worker_makes_the_outbox_ready(client, settings, run_worker, stop):
    settings.REDIS_URL = ""
    signing_keys_ensure()
    clear_key_cache()
    assert _outbox_state(client) == "never_seen"

    worker = run_worker("--interval", "0.2", "--max-seconds", "60", wait=False)
    try:
        assert _wait_for(lambda: WorkerHeartbeat.objects.exists()), worker.stderr.read().decode()
        assert _outbox_state(client) == "ok"
        assert client.get("/readyz").json()["status"] == "ok"
        worker.send_signal(stop)
        worker.wait(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    if stop == signal.SIGTERM:
        assert not WorkerHeartbeat.objects.exists()
        assert _outbox_state(client) == "never_seen"
    else:
        # A killed worker leaves its last beat, which turns late once it is old enough.
        assert WorkerHeartbeat.objects.count() == 1
        settings.OUTBOX_HEARTBEAT_LATE_SECONDS = 20
        beat = WorkerHeartbeat.objects.get().beat_at
        WorkerHeartbeat.objects.update(beat_at=beat - timedelta(seconds=21))
        assert _outbox_state(client) == "late"
