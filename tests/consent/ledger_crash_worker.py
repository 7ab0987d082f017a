"""A writer process that dies in the middle of an append (used by test_concurrency_postgres.py).

Usage: DATABASE_URL=... python tests/consent/ledger_crash_worker.py USER_ID COUNT
Records COUNT decisions (each committed), prints "appended", then records one more inside a
transaction it never commits (the leaf-index counter taken and locked, the event row written),
prints "holding" and waits to be killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402

from consent.services import consent_record  # noqa: E402
from identity.models import User  # noqa: E402


def record(user: User, i: int) -> None:
    consent_record(
        user=user,
        purpose_code=("personalisation-declared", "service-news-email")[i % 2],
        event_type=("given", "withdrawn")[(i // 2) % 2],
        collection_method="web_form",
        details={"crash": i} if i % 3 == 0 else None,
    )


def main() -> None:
    user, count = User.objects.get(pk=sys.argv[1]), int(sys.argv[2])
    for i in range(count):
        record(user, i)
    print("appended", flush=True)
    with transaction.atomic():
        record(user, count)
        print("holding", flush=True)
        time.sleep(600)  # killed here: the transaction never commits


if __name__ == "__main__":
    main()
