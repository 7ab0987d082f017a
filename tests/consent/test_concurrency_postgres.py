"""Several OS processes append to the ledger at once (PostgreSQL): one consistent log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from consent import ledger, merkle
from consent.models import LedgerEvent, PrivacyNotice, Purpose
from consent.selectors import ledger_verify, verify_tree_head
from consent.services import notice_publish, purpose_create, tree_head_sign
from identity.keys import signing_keys_ensure

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
PER_WORKER = 60


def ensure_catalogue() -> None:
    """A transactional test may run after another one flushed the migration-seeded rows."""
    for code in ("personalisation-declared", "service-news-email", "personalisation-browsing"):
        if not Purpose.objects.filter(code=code).exists():
            purpose_create(
                code=code,
                title_fr=code,
                title_en=code,
                description_fr="-",
                description_en="-",
                consent_lifetime_days=183,
            )
    if not PrivacyNotice.objects.exists():
        notice_publish(purpose=None, text_fr="Notice", text_en="Notice", material=False)


def database_url() -> str:
    params = connection.settings_dict
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return f"postgres://{params['USER']}{password}@{host}:{port}/{params['NAME']}"


@pytest.mark.postgres
@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs PostgreSQL (on SQLite one writer at a time is enforced by the file lock)",
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_append_one_consistent_log(make_resident: Any) -> None:
    ensure_catalogue()
    signing_keys_ensure()
    residents = [make_resident() for _ in range(WORKERS * 2)]
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "consent" / "ledger_worker.py"),
                ",".join(str(r.pk) for r in residents[i * 2 : i * 2 + 2]),
                str(PER_WORKER),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    # A start barrier, not a wall-clock time: on a loaded machine a worker may take seconds
    # to start, and one that starts alone would append its whole share before the others.
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", (line, process.stderr.read() if process.stderr else "")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err[-3000:]
        assert "appended" in out

    total = WORKERS * PER_WORKER
    seqs = list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(total))
    # Appends really interleaved: the first 30 events come from more than one worker.
    first_owners = set(LedgerEvent.objects.filter(seq__lt=30).values_list("subject__user_id", flat=True))
    assert len(first_owners) > 2

    result = ledger_verify()
    assert result.ok, result.problems
    assert result.size == total
    head = tree_head_sign()
    assert verify_tree_head(head)
    recomputed = merkle.root_from_leaves(
        merkle.leaf_hash(ledger.event_entry_bytes(event)) for event in LedgerEvent.objects.order_by("seq")
    )
    assert bytes(head.root_hash) == recomputed == bytes.fromhex(result.root_hash)
