"""Personalisation data: what the resident declares, and interests inferred from browsing.

Everything here exists only by a consent (profiles.taxonomy.FIELD_PURPOSES; the browsing
purpose for interests) and is erased when it ends (consent.purpose_data holders registered
in profiles.apps). Reads go through profiles.selectors, which ask the consent gate first.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class DeclaredProfile(models.Model):
    """What the resident told us, one row per account. An empty value is "not declared"."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="declared_profile"
    )
    commune = models.CharField(_("commune (code INSEE)"), max_length=5, blank=True)
    quartier = models.CharField(_("quartier"), max_length=64, blank=True)
    themes = models.JSONField(_("thèmes suivis"), default=list, blank=True)
    taxonomy_version = models.PositiveIntegerField(_("version de la liste des thèmes"), default=1)
    language = models.CharField(_("langue du portail"), max_length=8, blank=True)
    accessibility = models.JSONField(_("préférences d'accessibilité"), default=list, blank=True)
    notification_frequency = models.CharField(_("fréquence des actualités"), max_length=16, blank=True)
    notification_themes = models.JSONField(_("thèmes des actualités"), default=list, blank=True)
    updated_at = models.DateTimeField(_("modifié le"), default=timezone.now)

    class Meta:
        verbose_name = _("profil déclaré")
        verbose_name_plural = _("profils déclarés")

    def __str__(self) -> str:
        return f"declared profile {self.pk}"


class SubjectOwned(models.Model):
    """Kept for an account (`user`) or for a browser without an account (`browser_hash`, the
    keyed hash of the cookie widget's browser id: consent.services.browser_id_hash)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    browser_hash = models.CharField(_("navigateur (empreinte)"), max_length=64, blank=True)

    class Meta:
        abstract = True


class Interest(SubjectOwned):
    """An interest inferred from page views of one theme, with decay and provenance.

    `score` is the decayed count of views at `score_at`: each view counts 1 when it happens and
    half as much every half-life after (profiles.decay). `sources` aggregates where the views
    came from: {site: {"views": n, "first": iso, "last": iso}}; raw page views are never kept.
    """

    theme = models.CharField(_("thème"), max_length=64)
    score = models.FloatField(_("poids"), default=0.0)
    score_at = models.DateTimeField(_("poids calculé le"))
    views = models.PositiveIntegerField(_("pages vues"), default=0)
    first_seen_at = models.DateTimeField(_("première visite"))
    last_seen_at = models.DateTimeField(_("dernière visite"))
    sources = models.JSONField(_("sources"), default=dict)

    class Meta:
        verbose_name = _("centre d'intérêt déduit")
        verbose_name_plural = _("centres d'intérêt déduits")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "theme"], condition=Q(user__isnull=False), name="interest_user_theme"
            ),
            models.UniqueConstraint(
                fields=["browser_hash", "theme"],
                condition=Q(user__isnull=True),
                name="interest_browser_theme",
            ),
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(browser_hash=""))
                | (Q(user__isnull=True) & ~Q(browser_hash="")),
                name="interest_one_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"interest {self.pk} ({self.theme})"


class InterestCorrection(SubjectOwned):
    """The resident's word on a theme, which wins over inference: "not interested" keeps the
    theme out of the inferred interests, whatever is browsed later."""

    NOT_INTERESTED = "not_interested"
    VERDICTS = [(NOT_INTERESTED, _("pas intéressé"))]

    theme = models.CharField(_("thème"), max_length=64)
    verdict = models.CharField(_("correction"), max_length=32, choices=VERDICTS, default=NOT_INTERESTED)
    created_at = models.DateTimeField(_("créée le"), default=timezone.now)

    class Meta:
        verbose_name = _("correction d'un centre d'intérêt")
        verbose_name_plural = _("corrections des centres d'intérêt")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "theme"], condition=Q(user__isnull=False), name="correction_user_theme"
            ),
            models.UniqueConstraint(
                fields=["browser_hash", "theme"],
                condition=Q(user__isnull=True),
                name="correction_browser_theme",
            ),
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(browser_hash=""))
                | (Q(user__isnull=True) & ~Q(browser_hash="")),
                name="correction_one_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"correction {self.pk} ({self.theme})"


class InferenceSettings(models.Model):
    """The DPO's settings of the inference (one row, id 1): how fast interests fade."""

    half_life_days = models.PositiveIntegerField(_("demi-vie (jours)"), default=30)
    updated_at = models.DateTimeField(_("modifié le"), default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("réglages de la déduction des centres d'intérêt")
        verbose_name_plural = _("réglages de la déduction des centres d'intérêt")

    def __str__(self) -> str:
        return f"half-life {self.half_life_days} days"
