"""The link between a resident's account and their FranceConnect identity.

Only FranceConnect's `sub` is kept: it is pairwise (FranceConnect computes it for our
service alone) and is all we need to recognise the resident next time. The identity
pivot (names, birth date and place, gender) is used once, to fill in the account's
names when FranceConnect creates the account, and is not stored here: keeping a birth
date or a birthplace would serve no purpose of this service (GDPR Art. 5(1)(c)).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class FranceConnectLink(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="franceconnect_link",
        verbose_name=_("résident"),
    )
    sub = models.CharField(_("identifiant FranceConnect (sub)"), max_length=255, unique=True)
    linked_at = models.DateTimeField(_("lié le"), default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(_("dernière connexion"), null=True, blank=True)

    class Meta:
        verbose_name = _("lien FranceConnect")
        verbose_name_plural = _("liens FranceConnect")

    def __str__(self) -> str:
        return f"FranceConnect link {self.pk}"
