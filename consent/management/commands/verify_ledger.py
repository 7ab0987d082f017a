"""Recompute the whole consent ledger and check every signed tree head.

Exit status 0 when everything verifies, 1 (with the first altered or missing event named
on stderr) otherwise. Progress goes to stderr every --every events. On PostgreSQL, --jobs
threads (2 by default) scan ranges of the log in parallel, each on its own connection; any
doubt and the row-by-row verifier writes the report (the same whatever --jobs is). SQLite: one.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.selectors import VERIFY_JOBS, ledger_verify


class Command(BaseCommand):
    help = "Verify the consent ledger: leaf hashes, sequence, Merkle root and signed tree heads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=int, default=10_000, help="progress line every N events")
        parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        parser.add_argument(
            "--jobs",
            type=int,
            default=VERIFY_JOBS,
            help=f"threads scanning the log in parallel on PostgreSQL (default {VERIFY_JOBS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every = max(1, options["every"])

        def progress(done: int, total: int) -> None:
            share = f" ({100 * done // total}%)" if total else ""
            self.stderr.write(f"verify_ledger: {done}/{total} events{share}")

        result = ledger_verify(progress=progress, progress_every=every, jobs=max(1, options["jobs"]))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": result.ok,
                        "size": result.size,
                        "pending": result.pending,
                        "root_hash": result.root_hash,
                        "tree_heads_checked": result.tree_heads_checked,
                        "problems": [problem.__dict__ for problem in result.problems],
                        "warnings": result.warnings,
                        "seconds": round(result.seconds, 3),
                    }
                )
            )
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if not result.ok:
            first = result.first_problem
            assert first is not None
            for problem in result.problems[1:10]:
                self.stderr.write(f"also: {problem.detail}")
            where = ""
            if first.seq is not None:
                where = f" (seq {first.seq}" + (f", event {first.event_id}" if first.event_id else "") + ")"
            raise CommandError(f"ledger verification FAILED: {first.detail}{where}")
        if not options["json"]:
            self.stdout.write(
                f"ledger OK: {result.size} events, root {result.root_hash}, "
                f"{result.tree_heads_checked} signed tree heads checked in {result.seconds:.2f}s"
                + (
                    f"; {result.pending} appended events pending integration by the sequencer"
                    if result.pending
                    else ""
                )
            )
