"""``manage.py import_accounts FILE``: migrate accounts of the legacy metropolitan account.

Formats, validation and idempotency are described in identity.importing.

Output: rejected rows (line number and reason) and progress on stderr, the summary on
stdout. No email address or hash is printed; ``--report`` writes the rejected lines
themselves (created readable by the owner only).

Exit status: 0 when every row was imported or already present; 1 when at least one row
was rejected (all valid rows are imported nonetheless); 2 when the input or the report
file cannot be opened (nothing imported).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.hashers import PASSWORD_THEN_SALT, SALT_THEN_PASSWORD
from identity.importing import AccountImporter, ImportStats

EXIT_REJECTED_ROWS = 1
EXIT_UNREADABLE = 2


class Command(BaseCommand):
    help = (
        "Import accounts of the legacy metropolitan account from a JSON-lines FILE ('-' = stdin). "
        "One object a line: email, email_verified (true/false), password_hash, given_name, "
        "family_name, optional preferred_language (fr/en) and legacy_id. password_hash may be "
        "pbkdf2_sha256$…, pbkdf2_sha1$…, bcrypt_sha256$…, argon2$…, bcrypt$…, raw bcrypt "
        "$2a$/$2b$/$2y$…, sha1$<salt>$<hex> or sha256$<salt>$<hex> (salted digests, see "
        "--digest-order) or our legacy_sha1/legacy_sha256$sp|ps$<salt>$<hex>; hashes are stored "
        "as they are and upgraded to Argon2id at the resident's next sign-in. A row whose email "
        "already has an account is skipped and reported (never overwritten), so re-running a "
        "file is safe. Exit status: 0 all rows imported or already present; 1 some rows "
        "rejected (the valid ones are imported); 2 input or report file unreadable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSON-lines file, or '-' for standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report; write nothing.")
        parser.add_argument(
            "--report",
            metavar="REPORT",
            help="Write rejected rows as JSON lines {line, reason, row} to this file.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows per transaction (default 1000)."
        )
        parser.add_argument(
            "--progress-every",
            type=int,
            default=10_000,
            help="Print progress on stderr every N rows read (default 10000; 0 = never).",
        )
        parser.add_argument(
            "--digest-order",
            choices=(SALT_THEN_PASSWORD, PASSWORD_THEN_SALT),
            default=SALT_THEN_PASSWORD,
            help="How sha1$/sha256$ salted digests were made: sp = H(salt+password) (default), "
            "ps = H(password+salt).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["batch_size"] <= 10_000:
            raise CommandError("--batch-size must be between 1 and 10000", returncode=EXIT_UNREADABLE)
        verbosity = int(options["verbosity"])
        dry_run = bool(options["dry_run"])

        with contextlib.ExitStack() as stack:
            stream = self._open_input(options["file"], stack)
            report = self._open_report(options["report"], stack) if options["report"] else None

            def on_reject(line: int, reason: str, raw: bytes | None) -> None:
                self.stderr.write(f"line {line}: rejected: {reason}")
                if report is not None:
                    row = None if raw is None else raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    report.write(
                        json.dumps({"line": line, "reason": reason, "row": row}, ensure_ascii=False) + "\n"
                    )

            def on_skip(line: int, reason: str) -> None:
                if verbosity >= 2:
                    self.stderr.write(f"line {line}: skipped: {reason}")

            def on_progress(stats: ImportStats) -> None:
                if verbosity >= 1:
                    self.stderr.write(self._progress(stats, dry_run))

            importer = AccountImporter(
                batch_size=options["batch_size"],
                dry_run=dry_run,
                digest_order=options["digest_order"],
                progress_every=options["progress_every"],
                on_reject=on_reject,
                on_skip=on_skip,
                on_progress=on_progress,
            )
            stats = importer.run(stream)

        self.stdout.write(self._summary(stats, dry_run))
        if stats.rejected:
            raise CommandError(
                f"{stats.rejected} row(s) rejected; see the messages above"
                + (f" and {options['report']}" if options["report"] else ""),
                returncode=EXIT_REJECTED_ROWS,
            )

    def _open_input(self, path: str, stack: contextlib.ExitStack) -> IO[Any]:
        if path == "-":
            return getattr(sys.stdin, "buffer", sys.stdin)
        try:
            return stack.enter_context(open(path, "rb"))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}", returncode=EXIT_UNREADABLE) from exc

    def _open_report(self, path: str, stack: contextlib.ExitStack) -> IO[str]:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}", returncode=EXIT_UNREADABLE) from exc
        return stack.enter_context(open(fd, "w", encoding="utf-8"))

    @staticmethod
    def _progress(stats: ImportStats, dry_run: bool) -> str:
        return (
            f"{stats.read} rows read, {stats.imported} {'valid' if dry_run else 'imported'}, "
            f"{stats.skipped} already present, {stats.rejected} rejected ({stats.rate:,.0f} rows/s)"
        )

    @staticmethod
    def _summary(stats: ImportStats, dry_run: bool) -> str:
        imported = "would be imported (dry run, nothing written)" if dry_run else "imported"
        return (
            f"{stats.read} rows read: {stats.imported} {imported}, "
            f"{stats.skipped} skipped (already present), {stats.rejected} rejected "
            f"in {stats.elapsed:.1f} s ({stats.rate:,.0f} rows/s)."
        )
