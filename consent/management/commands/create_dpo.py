"""Give an account the data-protection officer's role: staff, member of the "dpo" group.

    python manage.py create_dpo --email dpo@nantesmetropole.fr
    python manage.py create_dpo --email former.dpo@nantesmetropole.fr --remove

Creates the group on first use (no migration needed) and the account if it does not exist
(without a password: the DPO sets one with "Mot de passe oublié"). Audited.

Staff work with two factors (identity.reauth): at the first sign-in, a DPO without a second
factor is sent to enrol one (authenticator app or passkey) and reaches the console only
after signing in with it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from consent.dpo.access import DPO_GROUP
from identity.audit import audit_log
from identity.models import normalize_email
from identity.selectors import user_by_email
from identity.services import user_create


class Command(BaseCommand):
    help = "Make an account the DPO (staff + 'dpo' group), creating the account if needed; --remove revokes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="the DPO's email address")
        parser.add_argument("--remove", action="store_true", help="take the DPO role away instead")

    def handle(self, *args: Any, **options: Any) -> None:
        email = normalize_email(options["email"])
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError("invalid email address") from exc
        with transaction.atomic():
            group, _created = Group.objects.get_or_create(name=DPO_GROUP)
            user = user_by_email(email)
            if options["remove"]:
                if user is None:
                    raise CommandError("no account with this email address")
                user.groups.remove(group)
                audit_log(event="dpo.role_removed", subject_user=user)
                self.stdout.write(self.style.SUCCESS(f"DPO role removed from account {user.pk}."))
                return
            created = user is None
            if user is None:
                user = user_create(email=email, password=None, email_verified=True)
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff", "updated_at"])
            user.groups.add(group)
            audit_log(event="dpo.role_granted", subject_user=user, data={"account_created": created})
        self.stdout.write(self.style.SUCCESS(f"Account {user.pk} is the DPO (group '{DPO_GROUP}')."))
        if created:
            self.stdout.write(
                "The account has no password yet: set one with 'Mot de passe oublié' on the sign-in page."
            )
        self.stdout.write(
            "A second factor is required: at the first sign-in the DPO enrols an authenticator "
            "app or a passkey, then signs in with it."
        )
        self.stdout.write("Console: /dpo/")
