"""Purposes, privacy notices and the append-only consent ledger.

Other apps never use these models directly: they call `consent.services` (writes) and
`consent.selectors` (reads). The ledger tables (`LedgerEvent`, `MerkleNode`, `TreeHead`)
are append-only three times over: a database trigger refuses UPDATE and DELETE (migration
0003), the model and queryset refuse them, and the admin is read-only.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class LedgerImmutable(RuntimeError):
    """Someone tried to change or delete a row of the append-only ledger."""


class EventType(models.TextChoices):
    REQUESTED = "requested", _("demandé")
    GIVEN = "given", _("donné")
    REFUSED = "refused", _("refusé")
    WITHDRAWN = "withdrawn", _("retiré par le résident")
    REVOKED = "revoked", _("révoqué par un tiers")
    EXPIRED = "expired", _("expiré")
    RENEWED = "renewed", _("renouvelé")


# Only these states allow processing (W3C DPV: ConsentGiven, RenewedConsentGiven).
GRANTING_EVENTS = (EventType.GIVEN, EventType.RENEWED)
# For purposes that need no consent (exempt audience measurement), these record an objection.
OBJECTING_EVENTS = (EventType.REFUSED, EventType.WITHDRAWN, EventType.REVOKED)

DPV_CONSENT_STATUS = {
    EventType.REQUESTED: "dpv:ConsentRequested",
    EventType.GIVEN: "dpv:ConsentGiven",
    EventType.REFUSED: "dpv:ConsentRefused",
    EventType.WITHDRAWN: "dpv:ConsentWithdrawn",
    EventType.REVOKED: "dpv:ConsentRevoked",
    EventType.EXPIRED: "dpv:ConsentExpired",
    EventType.RENEWED: "dpv:RenewedConsentGiven",
}


class CollectionMethod(models.TextChoices):
    WEB_FORM = "web_form", _("formulaire du compte")
    OIDC_CONSENT = "oidc_consent", _("écran de consentement OpenID Connect")
    COOKIE_WIDGET = "cookie_widget", _("bandeau cookies")
    API = "api", _("API")
    STAFF_ON_BEHALF = "staff_on_behalf", _("agent pour le compte du résident")
    # Recorded by the service itself (expiry, attaching a browser's history to an account).
    SYSTEM = "system", _("service")


class ActorType(models.TextChoices):
    RESIDENT = "resident", _("résident")
    STAFF = "staff", _("agent")
    PARTNER = "partner", _("service partenaire")
    SYSTEM = "system", _("système")


class SubjectKind(models.TextChoices):
    ACCOUNT = "account", _("compte")
    BROWSER = "browser", _("navigateur anonyme")


class Purpose(models.Model):
    """A processing purpose of the catalogue (also the source of the Art. 30 register)."""

    code = models.CharField(_("code"), max_length=255, unique=True)
    title_fr = models.CharField(_("intitulé (fr)"), max_length=200)
    title_en = models.CharField(_("intitulé (en)"), max_length=200)
    description_fr = models.TextField(_("description (fr)"))
    description_en = models.TextField(_("description (en)"))
    gdpr_article = models.CharField(_("base légale (RGPD)"), max_length=40, help_text="e.g. Art. 6(1)(a)")
    dpv_legal_basis = models.CharField(_("base légale (W3C DPV)"), max_length=80)
    dpv_purpose = models.CharField(_("finalité (W3C DPV)"), max_length=80)
    # [{"code": "interests", "kind": "declared"|"inferred", "fr": "...", "en": "..."}]
    data_categories = models.JSONField(_("catégories de données"), default=list)
    special_categories = models.JSONField(_("catégories particulières (Art. 9)"), default=list, blank=True)
    recipients = models.JSONField(_("destinataires"), default=list)
    retention_days = models.PositiveIntegerField(
        _("durée de conservation (jours)"),
        null=True,
        blank=True,
        help_text=_("Vide : fixée par le destinataire."),
    )
    consent_lifetime_days = models.PositiveIntegerField(
        _("durée de validité du choix (jours)"), null=True, blank=True
    )
    requires_consent = models.BooleanField(_("soumise à consentement"), default=True)
    client = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        verbose_name=_("service partenaire"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="consent_purposes",
    )
    # What the purpose covers at its partner, in the partner's own words: identity.oidc keys a
    # sharing purpose by the sorted scope set. Consent stores the key and never reads it.
    client_key = models.CharField(_("clé chez le partenaire"), max_length=500, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("code",)
        verbose_name = _("finalité")
        verbose_name_plural = _("finalités")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "client_key"],
                condition=models.Q(client__isnull=False),
                name="consent_purpose_one_per_client_key",
            ),
            models.CheckConstraint(
                condition=models.Q(consent_lifetime_days__isnull=True)
                | models.Q(consent_lifetime_days__lte=395),
                name="consent_purpose_lifetime_at_most_13_months",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def title(self, language: str = "fr") -> str:
        return self.title_en if language == "en" else self.title_fr


class PrivacyNotice(models.Model):
    """One published version of a notice, for one purpose or (purpose empty) for all."""

    purpose = models.ForeignKey(
        Purpose, null=True, blank=True, on_delete=models.PROTECT, related_name="notices"
    )
    version = models.PositiveIntegerField()
    text_fr = models.TextField()
    text_en = models.TextField()
    content_sha256 = models.CharField(max_length=64)
    material = models.BooleanField(
        default=False, help_text=_("Changement substantiel : renouvellement requis.")
    )
    published_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-published_at",)
        verbose_name = _("notice d'information")
        verbose_name_plural = _("notices d'information")
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "version"],
                condition=models.Q(purpose__isnull=False),
                name="consent_notice_version_per_purpose",
            ),
            models.UniqueConstraint(
                fields=["version"],
                condition=models.Q(purpose__isnull=True),
                name="consent_notice_version_global",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose.code if self.purpose is not None else 'global'} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutable("a published notice is never changed: publish a new version")
        super().save(*args, **kwargs)


class Subject(models.Model):
    """A pseudonymous data subject of the ledger: the id is the pseudonym.

    The link to the account (`user`) lives only here, never in the ledger rows, and is
    cut at erasure together with the destruction of the wrapped data key.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # SHA-256 of the random browser id held in the visitor's cookie (browser subjects only).
    browser_id_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    # SHA-256 of the browser's secret, returned once to the widget that registered the
    # browser: the proof needed to attach the browser to an account (the id alone travels
    # in authorization URLs and proves nothing). Empty for browsers registered before it.
    browser_secret_hash = models.CharField(max_length=64, blank=True, default="")
    wrapped_key = models.BinaryField(null=True, blank=True)
    key_destroyed_at = models.DateTimeField(null=True, blank=True)
    linked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("sujet pseudonyme")
        verbose_name_plural = _("sujets pseudonymes")
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(kind=SubjectKind.ACCOUNT, user__isnull=False),
                name="consent_one_account_subject_per_user",
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)


class LedgerQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only")

    def delete(self) -> NoReturn:
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only")


class AppendOnly(models.Model):
    objects = LedgerQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutable(f"{type(self).__name__} rows are append-only")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise LedgerImmutable(f"{type(self).__name__} rows are append-only")


class LedgerEvent(AppendOnly):
    """One consent decision: a leaf of the Merkle log (`seq` = leaf index).

    Every column that enters the leaf hash is a plain value of this row (codes, versions
    and ids are copied, not joined), so that the hash can be recomputed from the row alone.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    seq = models.BigIntegerField(unique=True)
    event_type = models.CharField(max_length=16, choices=EventType.choices)
    # No index of their own: consent_event_subject_purpose and consent_event_purpose_time lead
    # with them (every append writes each index of this table: issue 14).
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="+", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    purpose_code = models.CharField(max_length=255)
    # No index of its own (migration 0014): no query looks events up by their notice, and
    # nothing deletes a notice (the only statement that would: its reference check).
    notice = models.ForeignKey(
        PrivacyNotice, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    notice_version = models.PositiveIntegerField(null=True, blank=True)
    notice_sha256 = models.CharField(max_length=64, blank=True)
    collection_method = models.CharField(max_length=20, choices=CollectionMethod.choices)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    # Resident: the subject pseudonym; staff: the staff user's id; partner: the client_id.
    actor_id = models.CharField(max_length=100, blank=True)
    # Indexed by consent_event_partner (Meta.indexes): a plain btree for the DPO's `=` filter,
    # without the "_like" pattern-ops twin `db_index=True` adds on PostgreSQL (migration 0014).
    partner_client_id = models.CharField(max_length=100, blank=True)
    occurred_at = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    # Event this one was copied from when a browser's history was attached to an account.
    linked_from = models.UUIDField(null=True, blank=True)
    # Personal details (free-text evidence...), AES-GCM under the subject's data key.
    details_ciphertext = models.BinaryField(null=True, blank=True)
    leaf_hash = models.BinaryField(max_length=32)

    class Meta:
        ordering = ("seq",)
        verbose_name = _("événement du registre")
        verbose_name_plural = _("événements du registre")
        indexes = [
            # The historical gate (`at=`) scans one subject's events for one purpose.
            models.Index(fields=["subject", "purpose", "seq"], name="consent_event_subject_purpose"),
            models.Index(fields=["purpose", "occurred_at"], name="consent_event_purpose_time"),
            models.Index(fields=["occurred_at"], name="consent_event_time"),
            models.Index(fields=["partner_client_id"], name="consent_event_partner"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} {self.purpose_code}"


class MerkleNode(AppendOnly):
    """Hash of a completed perfect subtree (level >= 1), so proofs cost O(log n) reads."""

    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["level", "index"], name="consent_merkle_node_unique")]

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"


class TreeHead(AppendOnly):
    """A signed tree head: (timestamp, size, root) signed as a JWS with the service key."""

    tree_size = models.BigIntegerField(db_index=True)
    root_hash = models.BinaryField(max_length=32)
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    kid = models.CharField(max_length=100)
    signature = models.TextField(help_text="JWS compact serialisation (ES256)")

    class Meta:
        ordering = ("-tree_size", "-timestamp")
        verbose_name = _("tête d'arbre signée")
        verbose_name_plural = _("têtes d'arbre signées")

    def __str__(self) -> str:
        return f"STH size={self.tree_size}"


class LedgerHead(models.Model):
    """The integrated tree: size, root and frontier of the events the sequencer has put into
    the Merkle tree (`consent.ledger.integrate`). Row locks on it: appends take FOR KEY SHARE
    (shared between writers, so they never wait for one another here), the sequencer FOR NO KEY
    UPDATE (compatible with the writers'), the rare operations that must exclude every append
    (notice publication, erasure, expiry, browser linking) FOR UPDATE."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    size = models.BigIntegerField(default=0)
    root_hash = models.BinaryField(max_length=32)
    # Concatenated roots of the perfect subtrees making up the tree (one per bit of size).
    frontier = models.BinaryField(default=b"")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="consent_ledger_head_singleton")]

    def __str__(self) -> str:
        return f"ledger size={self.size}"


class LedgerSequence(models.Model):
    """The leaf-index counter: the next sequence number to give an event. An append takes it
    at the very end of its transaction (one UPDATE ... RETURNING), so the row lock is held only
    while the event row is inserted and committed; the counter is transactional, so a rolled
    back append leaves no gap. Events therefore commit in sequence order and the committed ones
    are always a prefix #0..#k-1 that the sequencer can integrate."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    next_seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="consent_ledger_sequence_singleton")
        ]

    def __str__(self) -> str:
        return f"next leaf #{self.next_seq}"


class DailyCount(models.Model):
    """Ledger events per day (in the service's time zone, settings.TIME_ZONE), purpose and type,
    the copies made when a browser's choices join an account (`linked_from`) left out: the DPO
    statistics' pre-aggregated counts. Maintained by the sequencer (`consent.ledger.integrate`)
    in the transaction that integrates the events, so the counts always cover exactly the
    integrated events (#0..#size-1 of the ledger head); the statistics add the pending ones
    from the events themselves. Derived data, outside the Merkle log: compared with the
    events by `consent.ledger.daily_counts_differences` and rebuilt from them by
    `consent.ledger.daily_counts_rebuild` (after a change of TIME_ZONE, for instance)."""

    day = models.DateField()
    purpose_code = models.CharField(max_length=255)
    event_type = models.CharField(max_length=16)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "purpose_code", "event_type"], name="consent_daily_count_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.purpose_code} {self.event_type}: {self.count}"


class ConsentState(models.Model):
    """Current decision per (subject, purpose), updated with each event (same transaction)."""

    # The subject's own index is the unique pair's (subject, purpose). The event is never looked
    # up from here (events are never deleted): without an index on it, the update of a state by
    # each decision changes no indexed column and PostgreSQL can make it in place (HOT, issue 14).
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="states", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=EventType.choices)
    event = models.ForeignKey(LedgerEvent, on_delete=models.PROTECT, related_name="+", db_index=False)
    valid_until = models.DateTimeField(null=True, blank=True)
    # Set when a materially changed notice is published after this decision: the gate
    # then treats the consent as not granted until a new `given`/`renewed` event.
    renewal_required = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("état courant du consentement")
        verbose_name_plural = _("états courants des consentements")
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "purpose"], name="consent_state_one_per_subject_purpose"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject_id} {self.purpose_id} {self.status}"


class RightsRequestKind(models.TextChoices):
    EXPORT = "export", _("copie de mes données")
    ERASURE = "erasure", _("suppression du compte")


class RightsRequestState(models.TextChoices):
    WAITING = "waiting", _("en attente")
    RUNNING = "running", _("en cours")
    DONE = "done", _("terminée")
    CANCELLED = "cancelled", _("annulée")
    FAILED = "failed", _("échouée")


class RightsRequestOrigin(models.TextChoices):
    RESIDENT = "resident", _("le résident")
    OPERATOR = "operator", _("un opérateur")
    INACTIVITY = "inactivity", _("compte inactif")


# GDPR Art. 12(3): a rights request is answered within one month.
RIGHTS_REQUEST_DEADLINE_DAYS = 30


class RightsRequest(models.Model):
    """A resident's data-rights request (export today; erasure and the DPO's register next).

    Written by consent.rights_requests with the outbox message that carries it, in one
    transaction; the worker does the work. `user` is SET_NULL: the record outlives an erased
    account (the DPO's register keeps the request, its dates and state, no personal data).
    The export archive is stored encrypted (AES-256-GCM, common.crypto, bound to this row's
    id) in the database: the web nodes share nothing else. `token_hash` is the keyed hash of
    the secret of the link sent by email (never stored in clear). `progress` holds, per
    rights provider, its state (no personal data)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rights_requests",
    )
    kind = models.CharField(max_length=16, choices=RightsRequestKind.choices)
    state = models.CharField(
        max_length=16, choices=RightsRequestState.choices, default=RightsRequestState.WAITING
    )
    requested_at = models.DateTimeField(default=timezone.now)
    # Work starts no earlier than this (the erasure's grace period); an export starts at once.
    not_before = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    token_hash = models.CharField(max_length=128, blank=True, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    archive = models.BinaryField(null=True, blank=True, editable=False)
    archive_size = models.PositiveIntegerField(default=0)
    progress = models.JSONField(default=dict, blank=True)
    language = models.CharField(max_length=8, default="fr")
    # Erasure (consent.erasure): the keyed hash of the single-use cancel link's secret
    # (emptied once used or once the erasure ran), and who asked.
    cancel_token_hash = models.CharField(max_length=128, blank=True, db_index=True)
    origin = models.CharField(max_length=16, choices=RightsRequestOrigin.choices, default="resident")

    class Meta:
        ordering = ("-requested_at",)
        indexes = [models.Index(fields=("user", "kind", "state"), name="rights_request_user_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state})"

    @property
    def deadline(self) -> datetime:
        """When the answer is due (GDPR Art. 12(3): one month from the request)."""
        return self.requested_at + timedelta(days=RIGHTS_REQUEST_DEADLINE_DAYS)


class RightsPartnerData(models.Model):
    """What a partner sent for a resident's export (consent.rights_requests.partner_export_record):
    one row per partner client and source (the connector kind that brought it: "library",
    "email"…). `data` is the JSON encrypted at rest (AES-256-GCM, common.crypto) bound to the
    request, the partner and the source: a row copied elsewhere does not open. Kept while the
    archive may be rebuilt with it (docs/architecture.md, "Rights requests"), deleted with the
    archive's last version, and at the account's erasure."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="partner_data")
    client_id = models.CharField(max_length=100)
    source = models.CharField(max_length=32)
    data = models.BinaryField(editable=False)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("client_id", "source")
        constraints = [
            models.UniqueConstraint(
                fields=("request", "client_id", "source"), name="rights_partner_data_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.client_id} {self.source}"
