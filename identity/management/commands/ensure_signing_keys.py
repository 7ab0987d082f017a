from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from identity.keys import signing_keys_ensure


class Command(BaseCommand):
    help = "Create the ID-token signing keys (RS256, ES256) if none can sign yet. Idempotent."

    def handle(self, *args: Any, **options: Any) -> None:
        created = signing_keys_ensure()
        for key in created:
            self.stdout.write(f"created {key.algorithm} signing key {key.kid}")
        if not created:
            self.stdout.write("signing keys present")
