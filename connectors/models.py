"""The transactional outbox: every write that must reach a partner is a row here.

A message is written in the same database transaction as the change that caused it,
then delivered at least once by relay workers (`manage.py outbox_worker`), retried with
exponential backoff and jitter, and dead-lettered (visible, replayable) when it keeps
failing. Receivers must be idempotent: each message carries a stable idempotency key.
"""

from __future__ import annotations

import uuid

from django.conf import settings
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


class PartnerConnector(models.Model):
    """A connector configured for one partner client (docs/operators.md): its kind (a class of
    connectors.registry), its non-secret settings and its secrets, sealed with AES-256-GCM
    (common.crypto) bound to the row's id: a sealed value copied to another row does not open."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Named by string: connectors never imports identity.oidc (docs/architecture.md).
    client = models.ForeignKey(
        "identity.Client",
        on_delete=models.CASCADE,
        related_name="connectors",
        verbose_name=_("client partenaire"),
    )
    kind = models.CharField(_("type"), max_length=32)
    label = models.CharField(
        _("nom affiché aux usagers"), max_length=120, help_text=_("Par exemple « Bibliothèques de Nantes »")
    )
    enabled = models.BooleanField(_("activé"), default=True)
    config = models.JSONField(_("réglages (non secrets)"), default=dict, blank=True)
    secrets_sealed = models.BinaryField(default=b"", blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("connecteur partenaire")
        verbose_name_plural = _("connecteurs partenaires")
        ordering = ("label",)
        constraints = [
            models.UniqueConstraint(fields=("client", "kind"), name="connector_client_kind_unique")
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.kind})"


class PartnerLink(models.Model):
    """A resident's account at a partner (a library card), linked from Mon compte.

    The reference (card number) is sealed with AES-256-GCM bound to the row's id, and found
    again by its keyed hash (HMAC, common.crypto) within the connector: one card, one
    account. The secret that proved it (the PIN) is never stored."""

    class Status(models.TextChoices):
        VALID = "valid", _("valide")
        BLOCKED = "blocked", _("bloquée")
        EXPIRED = "expired", _("expirée")
        UNLINKED = "unlinked", _("inconnue du partenaire")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_links")
    connector = models.ForeignKey(PartnerConnector, on_delete=models.PROTECT, related_name="links")
    reference_sealed = models.BinaryField(editable=False)
    reference_hash = models.CharField(max_length=80, editable=False)
    masked_reference = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    expires_on = models.DateField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    last_checked_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("lien d'usager")
        verbose_name_plural = _("liens des usagers")
        ordering = ("created_at",)
        constraints = [
            models.UniqueConstraint(fields=("connector", "reference_hash"), name="link_reference_unique"),
            models.UniqueConstraint(fields=("user", "connector"), name="link_user_connector_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.connector_id} {self.masked_reference} ({self.status})"


class PartnerRightsAsk(models.Model):
    """A rights request sent to a partner that answers later (the email connector): the
    operators' work item until its answer is recorded (connectors/partner_answers.py, the
    admin). Written with the email, in the transaction of the rights handler. Holds ids, dates,
    states and the operator's note of a refusal's reason; never the resident's identifiers
    (they are only in the sealed email)."""

    class Kind(models.TextChoices):
        EXPORT = "export", _("copie des données")
        ERASURE = "erasure", _("effacement")

    class State(models.TextChoices):
        REQUESTED = "requested", _("demandée, sans réponse")
        ANSWERED = "answered", _("données reçues")
        NOTHING_HELD = "nothing_held", _("le partenaire ne détient rien")
        ERASED = "erased", _("effacement confirmé")
        REFUSED = "refused", _("refusée par le partenaire")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    connector = models.ForeignKey(
        PartnerConnector, on_delete=models.PROTECT, related_name="asks", verbose_name=_("connecteur")
    )
    request = models.ForeignKey(
        "consent.RightsRequest",
        on_delete=models.CASCADE,
        related_name="partner_asks",
        verbose_name=_("demande"),
    )
    kind = models.CharField(_("type"), max_length=16, choices=Kind.choices)
    state = models.CharField(_("état"), max_length=16, choices=State.choices, default=State.REQUESTED)
    sent_at = models.DateTimeField(_("envoyée le"), default=timezone.now)
    due_at = models.DateTimeField(_("réponse due le"))
    answered_at = models.DateTimeField(_("réponse enregistrée le"), null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(_("raison du refus"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("demande à un partenaire par e-mail")
        verbose_name_plural = _("demandes aux partenaires par e-mail")
        ordering = ("due_at",)
        constraints = [
            models.UniqueConstraint(fields=("connector", "request"), name="partner_ask_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.request_id} ({self.state})"

    @property
    def overdue(self) -> bool:
        return self.state == self.State.REQUESTED and timezone.now() > self.due_at


class ScimAccount(models.Model):
    """A resident's user at a partner provisioned over SCIM (connectors/scim_provisioning.py).

    Written once the partner answered. It says which residents a SCIM partner holds, so that a
    change of their details reaches those partners, and what the resident's export lists. The
    partner's user is still looked up by `externalId` before every write (the version it has
    now, for If-Match; a user the partner deleted or recreated meanwhile): this row is never
    trusted over the partner. The erasure deletes it; the partner is then asked by the
    resident's `sub`, which the erasure message carries (connectors.subjects)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scim_accounts")
    connector = models.ForeignKey(PartnerConnector, on_delete=models.CASCADE, related_name="scim_accounts")
    scim_id = models.CharField(_("identifiant chez le partenaire"), max_length=200)
    active = models.BooleanField(_("actif chez le partenaire"), default=True)
    last_action = models.CharField(max_length=16, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("compte SCIM d'usager")
        verbose_name_plural = _("comptes SCIM des usagers")
        ordering = ("created_at",)
        constraints = [
            models.UniqueConstraint(fields=("user", "connector"), name="scim_account_user_connector_unique")
        ]

    def __str__(self) -> str:
        return f"{self.connector_id} {self.scim_id}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of each outbox worker process, so that readiness can tell
    operators when nothing is relaying the outbox. One row per worker (host and pid);
    rows of workers gone for a day are removed by the live ones."""

    worker = models.CharField(max_length=200, primary_key=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("battement d'un processus de relais")
        verbose_name_plural = _("battements des processus de relais")

    def __str__(self) -> str:
        return self.worker
