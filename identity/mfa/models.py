"""Second factors of a resident, on django-otp's `Device`.

- `TOTPDevice`: RFC 6238 codes. Unlike django-otp's own TOTP plugin, the shared secret is
  stored encrypted at rest (common.crypto, AES-256-GCM, bound to the device id), and
  the last accepted time step is kept so that a code is never accepted twice.
- `BackupCodeDevice` + `BackupCode`: ten single-use recovery codes, stored as keyed
  hashes only. One device row per resident carries the throttling state.
- `Passkey`: a WebAuthn credential (public key only; nothing secret is stored).

Verification always happens in identity.mfa.services, on a row locked with
`select_for_update()`, so that concurrent attempts cannot both succeed nor escape the
throttle.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import MAX_THROTTLE_DELAY_SECONDS, Device, ThrottlingMixin, VerifyNotAllowed

from common.crypto import decrypt_at_rest, encrypt_at_rest
from identity.mfa import clock


class Kind(models.TextChoices):
    TOTP = "totp", _("Application d'authentification")
    BACKUP = "backup", _("Codes de secours")
    PASSKEY = "passkey", _("Clé d'accès")


class ClockThrottlingMixin(ThrottlingMixin):
    """django-otp's exponential throttle (c·2^(n-1) seconds after n failures), read through
    identity.mfa.clock so that tests can move time without touching Django's clock."""

    # django-otp's fields (no stubs: mypy cannot see them).
    throttling_failure_timestamp: datetime | None
    throttling_failure_count: int

    class Meta:
        abstract = True

    def get_throttle_factor(self) -> int:
        return int(settings.MFA_THROTTLE_FACTOR)

    def verify_is_allowed(self) -> tuple[bool, dict[str, Any] | None]:
        if (
            self.throttling_enabled
            and self.throttling_failure_count > 0
            and self.throttling_failure_timestamp is not None
        ):
            delay_required = min(
                self.get_throttle_factor() * (2 ** (self.throttling_failure_count - 1)),
                MAX_THROTTLE_DELAY_SECONDS,
            )
            locked_until = self.throttling_failure_timestamp + timedelta(seconds=delay_required)
            if clock.now_dt() < locked_until:
                return False, {
                    "reason": VerifyNotAllowed.N_FAILED_ATTEMPTS,
                    "failure_count": self.throttling_failure_count,
                    "locked_until": locked_until,
                }
        return True, None

    def retry_after_seconds(self) -> int:
        allowed, info = self.verify_is_allowed()
        if allowed or not info:
            return 0
        return max(1, math.ceil((info["locked_until"] - clock.now_dt()).total_seconds()))

    def throttle_increment(self, commit: bool = True) -> None:
        self.throttling_failure_timestamp = clock.now_dt()
        self.throttling_failure_count += 1
        if commit:
            self.save(update_fields=["throttling_failure_timestamp", "throttling_failure_count"])


class TOTPDevice(ClockThrottlingMixin, Device):
    # Not usable until the resident has typed a first valid code.
    confirmed: models.BooleanField[bool, bool] = models.BooleanField(_("activé"), default=False)
    # AES-256-GCM(secret) with the device id as associated data (common.crypto).
    secret_encrypted: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField(
        _("secret chiffré"), default=b"", editable=False
    )
    digits: models.PositiveSmallIntegerField[int, int] = models.PositiveSmallIntegerField(
        _("chiffres"), default=6
    )
    step: models.PositiveSmallIntegerField[int, int] = models.PositiveSmallIntegerField(
        _("pas (secondes)"), default=30
    )
    # The time step of the last accepted code: that code and older ones are refused.
    last_used_step: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(
        _("dernier pas utilisé"), null=True, blank=True
    )
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        _("créé le"), default=timezone.now, editable=False
    )
    last_used_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        _("dernière utilisation"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("application d'authentification")
        verbose_name_plural = _("applications d'authentification")

    kind = Kind.TOTP

    def secret_context(self) -> bytes:
        if self.pk is None:
            raise ValueError("the device must be saved before its secret is set")
        return f"mfa.totp:{self.pk}".encode()

    def set_secret(self, key: bytes) -> None:
        self.secret_encrypted = encrypt_at_rest(key, context=self.secret_context())

    def secret(self) -> bytes:
        return decrypt_at_rest(bytes(self.secret_encrypted), context=self.secret_context())


class BackupCodeDevice(ClockThrottlingMixin, Device):
    """The resident's set of backup codes (one per resident); the codes are its children."""

    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        _("créé le"), default=timezone.now, editable=False
    )
    last_used_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        _("dernière utilisation"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("codes de secours")
        verbose_name_plural = _("codes de secours")
        constraints = [models.UniqueConstraint(fields=["user"], name="mfa_one_backup_set_per_user")]

    kind = Kind.BACKUP


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    # common.crypto.keyed_hash of the normalised code; the code itself is shown once.
    code_hash = models.CharField(max_length=100)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "code_hash"], name="mfa_backup_code_unique"),
        ]

    def __str__(self) -> str:
        return f"backup code {self.pk}"  # never the hash


class Passkey(Device):
    """A WebAuthn public-key credential registered by the resident."""

    # base64url of the credential id (at most 1023 bytes → 1364 characters).
    credential_id: models.CharField[str, str] = models.CharField(
        _("identifiant de la clé"), max_length=1400, unique=True
    )
    public_key: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField(_("clé publique (COSE)"))
    sign_count: models.BigIntegerField[int, int] = models.BigIntegerField(
        _("compteur de signatures"), default=0
    )
    transports = models.JSONField(_("transports"), default=list, blank=True)
    # The WebAuthn user handle (random, base64url): the same for all of a resident's passkeys.
    user_handle: models.CharField[str, str] = models.CharField(
        _("identifiant WebAuthn du résident"), max_length=128, db_index=True
    )
    backup_eligible: models.BooleanField[bool, bool] = models.BooleanField(_("synchronisable"), default=False)
    aaguid: models.CharField[str, str] = models.CharField(max_length=36, blank=True)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        _("créée le"), default=timezone.now, editable=False
    )
    last_used_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        _("dernière utilisation"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("clé d'accès")
        verbose_name_plural = _("clés d'accès")

    kind = Kind.PASSKEY

    @property
    def amr_method(self) -> str:
        """RFC 8176: a passkey that may be synced between devices (backup eligible) is a
        software-secured key (`swk`); a device-bound one is hardware-secured (`hwk`)."""
        return "swk" if self.backup_eligible else "hwk"
