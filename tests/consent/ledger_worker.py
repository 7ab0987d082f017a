"""A separate OS process appending consent events (used by test_concurrency_postgres.py).

Usage: DATABASE_URL=... python tests/consent/ledger_worker.py USER_IDS COUNT [batch]
Once set up (Django, the residents read, the database connection open), prints "ready" and
waits for a line on stdin: the test sends it to every worker once all are ready, so that they
append at the same time however long each took to start. Then records COUNT decisions for
the given residents, alternating purposes and event types; with `batch`, COUNT batches of
three decisions (`consent_record_many`, one purpose each), printing the events appended.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from consent.services import consent_record, consent_record_many  # noqa: E402
from identity.models import User  # noqa: E402

PURPOSES = ("personalisation-declared", "service-news-email", "personalisation-browsing")


def main() -> None:
    user_ids, count = sys.argv[1].split(","), int(sys.argv[2])
    users = list(User.objects.filter(pk__in=user_ids))
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal
    if sys.argv[3:] == ["batch"]:
        for i in range(count):
            kinds = ("given", "refused", "withdrawn", "given")
            consent_record_many(
                user=users[i % len(users)],
                decisions=[(code, kinds[(i + k) % 4]) for k, code in enumerate(PURPOSES)],
                collection_method="web_form",
                details={"worker": os.getpid(), "i": i} if i % 5 == 0 else None,
            )
        print(f"{os.getpid()} appended {count * len(PURPOSES)}")
        return
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
