"""A separate OS process appending consent events (used by test_concurrency_postgres.py).

Usage: DATABASE_URL=... python tests/consent/ledger_worker.py START_AT USER_IDS COUNT
Waits until the wall-clock START_AT (so that every worker appends at the same time), then
records COUNT decisions for the given residents, alternating purposes and event types.
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

from consent.services import consent_record  # noqa: E402
from identity.models import User  # noqa: E402

PURPOSES = ("personalisation-declared", "service-news-email", "personalisation-browsing")


def main() -> None:
    start_at, user_ids, count = float(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
    users = list(User.objects.filter(pk__in=user_ids))
    while time.time() < start_at:
        time.sleep(0.005)
    for i in range(count):
        consent_record(
            user=users[i % len(users)],
            purpose_code=PURPOSES[i % len(PURPOSES)],
            event_type=("given", "refused", "withdrawn", "given")[i % 4],
            collection_method="web_form",
            details={"worker": os.getpid(), "i": i} if i % 5 == 0 else None,
        )
    print(f"{os.getpid()} appended {count}")


if __name__ == "__main__":
    main()
