"""The transactional outbox: every write that must reach a partner is a row here.

A message is written in the same database transaction as the change that caused it,
then delivered at least once by relay workers (`manage.py outbox_worker`), retried with
exponential backoff and jitter, and dead-lettered (visible, replayable) when it keeps
failing. Receivers must be idempotent: each message carries a stable idempotency key.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("en attente")
        DELIVERED = "delivered", _("livré")
        DEAD = "dead", _("abandonné")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=64, db_index=True)
    destination = models.CharField(
        max_length=500, help_text=_("Point d'accès du partenaire ou nom du connecteur.")
    )
    partner = models.CharField(
        max_length=100, blank=True, help_text=_("client_id du partenaire, s'il y en a un.")
    )
    idempotency_key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=12)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at",)
        indexes = [
            models.Index(
                fields=("next_attempt_at",),
                name="outbox_due_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=("partner", "status"), name="outbox_partner_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"
