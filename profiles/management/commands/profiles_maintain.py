"""``manage.py profiles_maintain``: erase the personalisation data that must not be kept any
more (run daily from cron: docs/operators.md).

What it erases (profiles.services.profiles_maintain, one transaction): declared fields whose
purpose is no longer granted (expired, or waiting for renewal after a material notice change:
a withdrawal erased them already); inferred interests and corrections of residents and
browsers that no longer grant `personalisation-browsing`; interests faded below the threshold
or not seen within the purpose's retention; the sources older than the retention. Prints the
counts, one `name=count` per line.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from profiles.services import profiles_maintain


class Command(BaseCommand):
    help = (
        "Erase personalisation data no longer allowed: declared fields and interests of purposes no "
        "longer granted, faded interests, interests and sources older than the retention. Run daily."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = profiles_maintain()
        for name, count in sorted(counts.items()):
            self.stdout.write(f"{name}={count}")
