from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.keys import SUPPORTED_ALGORITHMS, signing_key_rotate, signing_keys_prune


class Command(BaseCommand):
    help = (
        "Rotate the signing keys: the new key is published in JWKS at once and starts signing "
        "after the publication delay; the old one stays published until every token it signed "
        "has expired. With --prune, destroy keys that have left JWKS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--algorithm",
            action="append",
            choices=SUPPORTED_ALGORITHMS,
            dest="algorithms",
            help="Algorithm to rotate (repeatable; default: all).",
        )
        parser.add_argument(
            "--publish-ahead-seconds",
            type=int,
            default=None,
            help=(
                "Seconds between publication and first signature "
                f"(default OIDC_KEY_PUBLISH_AHEAD_SECONDS = {settings.OIDC_KEY_PUBLISH_AHEAD_SECONDS}; "
                "keep it at least the JWKS max-age)."
            ),
        )
        parser.add_argument(
            "--prune", action="store_true", help="Only destroy keys whose tokens have all expired."
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["prune"]:
            if options["algorithms"] or options["publish_ahead_seconds"] is not None:
                raise CommandError("--prune takes no other option")
            kids = signing_keys_prune()
            self._out(options, {"pruned": kids}, f"pruned {len(kids)} key(s): {' '.join(kids) or '-'}")
            return
        ahead = options["publish_ahead_seconds"]
        if ahead is not None and ahead < 0:
            raise CommandError("--publish-ahead-seconds must not be negative")
        if ahead is not None and ahead < settings.OIDC_JWKS_MAX_AGE_SECONDS:
            self.stderr.write(
                f"warning: {ahead}s is shorter than the JWKS max-age "
                f"({settings.OIDC_JWKS_MAX_AGE_SECONDS}s): relying parties may see an unknown kid"
            )
        rotated = []
        for algorithm in options["algorithms"] or SUPPORTED_ALGORITHMS:
            key = signing_key_rotate(
                algorithm=algorithm, publish_ahead=None if ahead is None else timedelta(seconds=ahead)
            )
            rotated.append(
                {"algorithm": algorithm, "kid": key.kid, "active_from": key.active_from.isoformat()}
            )
        lines = "\n".join(f"{r['algorithm']} {r['kid']} signs from {r['active_from']}" for r in rotated)
        self._out(options, {"rotated": rotated}, lines)

    def _out(self, options: dict[str, Any], data: dict[str, Any], text: str) -> None:
        self.stdout.write(json.dumps(data) if options["json"] else text)
