"""``manage.py reset_second_factor``: operator-assisted reset of a resident's lost second factor.

Removes every authenticator app, passkey and backup code of the resident, ends all
their sessions, emails them, and writes an audit event naming the operator
(identity.mfa.services.factors_reset). The operator must be an active staff account in
the "support" group. The reason is kept in the audit log: no personal data in it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.mfa.services import RESET_REASON_MAX, FactorError, factors_reset
from identity.selectors import user_by_email


class Command(BaseCommand):
    help = (
        "Remove every second factor and backup code of a resident who lost theirs (after "
        "checking their identity), end their sessions and email them. Audited with the operator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The resident's email address.")
        parser.add_argument(
            "--operator", required=True, help="Email address of the support operator doing the reset."
        )
        parser.add_argument(
            "--reason",
            required=True,
            help=f"Short reason kept in the audit log (≤ {RESET_REASON_MAX} characters, no personal data).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        operator = user_by_email(options["operator"])
        if operator is None:
            raise CommandError("no such operator account")
        resident = user_by_email(options["email"])
        if resident is None:
            raise CommandError("no resident with this email address")
        try:
            report = factors_reset(user=resident, operator=operator, reason=options["reason"])
        except PermissionDenied as exc:
            raise CommandError(
                "this operator may not reset second factors (active staff in the 'support' group only)"
            ) from exc
        except FactorError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Second factor reset for resident {resident.pk}: {report.totp} authenticator app(s), "
            f"{report.passkeys} passkey(s), backup codes {'removed' if report.backup_codes else 'none'}, "
            f"{report.sessions_ended} session(s) ended; the resident was emailed."
        )
