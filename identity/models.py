"""Accounts, browser sessions, signing keys, email links and the audit trail.

The OAuth/OIDC records (partner clients, codes, tokens, PAR, ...) are identity's models
too (app label, tables, migrations) but their code lives with the protocol, in
identity.oidc.models, registered by IdentityConfig.import_models(). This module never
imports them: it names the client model by its string, "identity.Client".

The django-oauth-toolkit models are swapped for ours from the first migration so that
we can store what the library does not (hashed codes, keyed client-secret hashes,
authentication time, partner metadata) without fighting it later.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def normalize_email(email: str) -> str:
    """Emails are case-insensitive logins: stored trimmed and lower-cased."""
    return (email or "").strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email(username or ""))

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=normalize_email(email), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("email_verified", True)
        return self.create_user(email, password, **extra)


# The reverse managers of the models built on django-oauth-toolkit's and django-otp's
# abstract models (no stubs: mypy sees Any bases) cannot be resolved by django-stubs.
class User(AbstractBaseUser, PermissionsMixin):  # type: ignore[django-manager-missing]
    LANGUAGES = (("fr", "Français"), ("en", "English"))

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(_("adresse e-mail"), max_length=254, unique=True)
    email_verified = models.BooleanField(_("adresse e-mail vérifiée"), default=False)
    given_name = models.CharField(_("prénom"), max_length=150, blank=True)
    family_name = models.CharField(_("nom"), max_length=150, blank=True)
    preferred_language = models.CharField(_("langue préférée"), max_length=8, choices=LANGUAGES, default="fr")
    # Optional contact details (OIDC Core §5.1 `phone` and `address` scopes): blank unless
    # the resident gives them; an empty claim is never sent.
    phone_number = models.CharField(_("numéro de téléphone"), max_length=32, blank=True)
    phone_number_verified = models.BooleanField(_("numéro de téléphone vérifié"), default=False)
    street_address = models.CharField(_("adresse (rue)"), max_length=255, blank=True)
    locality = models.CharField(_("commune"), max_length=120, blank=True)
    postal_code = models.CharField(_("code postal"), max_length=16, blank=True)
    region = models.CharField(_("région"), max_length=120, blank=True)
    country = models.CharField(_("pays"), max_length=80, blank=True)
    is_active = models.BooleanField(_("actif"), default=True)
    is_staff = models.BooleanField(_("équipe"), default=False)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("modifié le"), auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("résident")
        verbose_name_plural = _("résidents")
        constraints = [
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="user_email_lowercase"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


class HashedValue(str):
    """A value read back from a hashed column: already hashed, never hashed again."""


class HashedTokenField(models.CharField):
    """Stores SHA-256 of a single-use, high-entropy value (authorization codes).

    Plain strings are hashed both when saved and when used in a lookup, so
    `Model.objects.get(code=presented_code)` works unchanged while the database only
    ever sees digests. Values loaded from the database are `HashedValue`s and are
    passed through as they are, so re-saving a row does not hash twice. A digest
    presented from outside is a plain string and gets hashed, so it never matches.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> HashedValue | None:
        return None if value is None else HashedValue(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or isinstance(value, HashedValue):
            return value
        return hashlib.sha256(str(value).encode("utf-8")).hexdigest()


class BrowserSession(models.Model):
    """A resident's sign-in on one browser: the OP session that `sid` names (OIDC Session 1.0).

    Bound to the Django session (which holds the sid); ended by sign-out, by "sign out
    everywhere", by revocation from the account pages or by a later sign-in of another
    resident on the same browser. Ending it revokes the tokens issued in it and notifies
    the partners that received them (identity/sessions.py).
    """

    id = models.BigAutoField(primary_key=True)
    sid = models.CharField(_("identifiant de session"), max_length=64, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="browser_sessions")
    created_at = models.DateTimeField(_("créée le"), default=timezone.now, editable=False)
    auth_time = models.DateTimeField(_("heure d'authentification"), default=timezone.now)
    amr = models.JSONField(_("méthodes d'authentification"), default=list, blank=True)
    acr = models.CharField(_("niveau d'authentification"), max_length=100, blank=True)
    user_agent = models.CharField(_("navigateur (user agent)"), max_length=200, blank=True)
    device = models.CharField(_("appareil"), max_length=64, blank=True)
    last_seen_at = models.DateTimeField(_("vue pour la dernière fois"), default=timezone.now)
    ended_at = models.DateTimeField(_("terminée le"), null=True, blank=True)
    end_reason = models.CharField(_("motif de fin"), max_length=32, blank=True)
    # The Django session key, encrypted (common.crypto): lets "sign out everywhere" end
    # a session from another browser.
    session_key_encrypted = models.BinaryField(null=True, blank=True, editable=False)
    # The client model derives from django-oauth-toolkit, which mypy cannot see (no stubs).
    clients: models.ManyToManyField[Any, Any] = models.ManyToManyField(
        "identity.Client", through="SessionClient", related_name="browser_sessions", blank=True
    )

    class Meta:
        verbose_name = _("session de navigateur")
        verbose_name_plural = _("sessions de navigateur")
        ordering = ("-last_seen_at",)
        indexes = [models.Index(fields=("user", "ended_at"), name="browsersession_user_active")]

    def __str__(self) -> str:
        return f"session {self.pk}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None


class SessionClient(models.Model):
    """A partner client that received tokens in a browser session."""

    session = models.ForeignKey(BrowserSession, on_delete=models.CASCADE, related_name="session_clients")
    client = models.ForeignKey("identity.Client", on_delete=models.CASCADE, related_name="+")
    first_issued_at = models.DateTimeField(default=timezone.now)
    last_issued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("session", "client"), name="sessionclient_unique")]

    def __str__(self) -> str:
        return f"session {self.session_id} client {self.client_id}"


class SigningKey(models.Model):
    """A JWS signing key. Private half encrypted at rest (common.crypto)."""

    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=10, choices=(("RS256", "RS256"), ("ES256", "ES256")))
    private_key_encrypted = models.BinaryField()
    public_jwk = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # Published in JWKS from creation; signs from `active_from`; stops signing at
    # `retired_at`; leaves JWKS at `expires_at` (after every token it signed expired).
    # `rotate_keys --prune` then destroys the private half; the public half stays for
    # verifying historical signatures (it is never published again).
    active_from = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-active_from",)
        indexes = [models.Index(fields=("algorithm", "active_from"))]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid}"


class EmailVerification(models.Model):
    """A single-use, expiring email verification link (token stored as keyed hash)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_verifications")
    token_hash = models.CharField(max_length=80, unique=True)
    email = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"verification {self.pk}"


class EmailChange(models.Model):
    """A resident's request to sign in with another address: a single-use, expiring link sent
    to the new address (token stored as keyed hash). The account keeps its current address
    until the link is used; a newer request, or a "this wasn't me" from the old address,
    cancels it (and, once used, that "this wasn't me" puts the old address back)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_changes")
    token_hash = models.CharField(max_length=80, unique=True)
    new_email = models.EmailField(max_length=254)
    # The address the notice went to: a "this wasn't me" from it puts the address back.
    old_email = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=("user", "used_at", "cancelled_at"), name="emailchange_user_pending")]

    def __str__(self) -> str:
        return f"email change {self.pk}"


class AuditEvent(models.Model):
    """Security audit trail: ids and event names, never personal data."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=64, db_index=True)
    acting_user_id = models.UUIDField(null=True, blank=True)
    subject_user_id = models.UUIDField(null=True, blank=True, db_index=True)
    client_id = models.CharField(max_length=100, blank=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.event} {self.created_at:%Y-%m-%d %H:%M:%S}"
