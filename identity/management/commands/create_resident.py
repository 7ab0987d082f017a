"""``manage.py create_resident``: create one resident account (support desk, demos, tests).

The password goes through the same rules as the sign-up form (identity.password_rules). A
password given with ``--password`` is visible to other local users in the process list;
``--password-stdin`` reads it from the first line of standard input instead.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import IntegrityError

from identity.models import User, normalize_email
from identity.services import AccountError, user_create


def _one_line(error: ValidationError) -> str:
    return " ".join(" ".join(str(message).split()) for message in error.messages)


class Command(BaseCommand):
    help = (
        "Create a resident account; prints its id (or JSON {id, email, email_verified} with --json). "
        "Exits non-zero, creating nothing, on a malformed or already used email or a weak password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        secret = parser.add_mutually_exclusive_group(required=True)
        secret.add_argument("--password")
        secret.add_argument(
            "--password-stdin", action="store_true", help="Read the password from the first line of stdin."
        )
        parser.add_argument("--given-name", default="")
        parser.add_argument("--family-name", default="")
        parser.add_argument("--language", choices=[code for code, _ in User.LANGUAGES], default="fr")
        parser.add_argument("--verified", action="store_true", help="Mark the email address as verified.")
        parser.add_argument("--json", action="store_true", help="Print {id, email, email_verified} as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        email = normalize_email(options["email"])
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"malformed email address: {_one_line(exc)}") from exc
        password = options["password"]
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("the password is empty")
        try:
            user = user_create(
                email=email,
                password=password,
                given_name=options["given_name"],
                family_name=options["family_name"],
                email_verified=options["verified"],
                preferred_language=options["language"],
            )
        except AccountError as exc:
            raise CommandError(f"{email}: {exc}") from exc
        except IntegrityError as exc:  # created concurrently between the check and the insert
            raise CommandError(f"{email}: an account already exists for this email address") from exc
        except ValidationError as exc:
            raise CommandError(f"refused: {_one_line(exc)}") from exc
        if options["json"]:
            self.stdout.write(
                json.dumps({"id": str(user.pk), "email": user.email, "email_verified": user.email_verified})
            )
        else:
            self.stdout.write(str(user.pk))
