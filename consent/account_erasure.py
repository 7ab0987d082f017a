"""consent's part of Mon compte for the erasure: the "Suppression du compte" section
(identity.account_sections) and the notice shown at sign-in while a deletion is pending."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from consent.erasure import erasure_pending
from identity.account_sections import AccountSection, register
from identity.models import User


def erasure_summary(user: User) -> list[str]:
    pending = erasure_pending(user=user)
    if pending is None:
        return [_("Vous pouvez demander la suppression de votre compte et de vos données.")]
    return [
        _("La suppression de votre compte est prévue le %(date)s. Vous pouvez encore l'annuler.")
        % {"date": formats.date_format(timezone.localtime(pending.not_before), "DATETIME_FORMAT")}
    ]


def register_section() -> None:
    register(
        AccountSection(
            "erasure",
            gettext_lazy("Suppression du compte"),
            "consent:erasure",
            90,
            erasure_summary,
            gettext_lazy("Supprimer mon compte, ou annuler une suppression demandée"),
        )
    )


def erasure_sign_in_notice(
    sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any
) -> None:
    """`user_logged_in` receiver: a pending deletion is shown on the next page, with the
    cancel button (templates/base.html). Presentation only: it reads, writes nothing."""
    if request is None or not isinstance(user, User):
        return
    pending = erasure_pending(user=user)
    if pending is not None:
        messages.warning(
            request,
            _(
                "La suppression de votre compte est prévue le %(date)s. Pour garder votre compte, "
                "annulez-la depuis Mon compte, rubrique « Suppression du compte »."
            )
            % {"date": formats.date_format(timezone.localtime(pending.not_before), "DATETIME_FORMAT")},
            extra_tags="erasure-pending",  # base.html shows the cancel button under it
        )
