"""The MFA app's data-rights provider: second factors, metadata only.

Registered from MfaConfig.ready() into consent.rights (not imported here: identity
accounts sit below consent, so `erase` returns a mapping with ErasureReport's fields).

Export section "mfa" (JSON, no secret):

- `totp`: authenticator apps: name, confirmed, created_at, last_used_at (never the
  shared secret, encrypted or not, nor the last accepted time step);
- `backup_codes`: null, or created_at, last_used_at, total, unused, used_at (the dates
  codes were used) (never a code nor its keyed hash);
- `passkeys`: name, created_at, last_used_at, synced (backup eligible), transports,
  aaguid (the authenticator's model) (never the credential id, public key, user handle
  or signature counter).

Erasure: every factor is deleted (authenticator apps with their encrypted secrets,
backup codes, passkeys). Nothing is kept.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from identity.mfa.models import BackupCode, BackupCodeDevice, Passkey, TOTPDevice
from identity.models import User

NAME = "mfa"
ORDER = 20  # consent.rights.ORDER_FACTORS
MODELS = ("mfa.TOTPDevice", "mfa.BackupCodeDevice", "mfa.BackupCode", "mfa.Passkey")


def _deleted(queryset: Any) -> int:
    """Delete the rows of `queryset`; how many of its own model went (not the cascade's)."""
    return queryset.delete()[1].get(queryset.model._meta.label, 0)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def export(user: User) -> dict[str, Any]:
    backup = BackupCodeDevice.objects.filter(user=user).first()
    backup_section = None
    if backup is not None:
        codes = list(
            BackupCode.objects.filter(device=backup).order_by("pk").values_list("used_at", flat=True)
        )
        backup_section = {
            "created_at": _iso(backup.created_at),
            "last_used_at": _iso(backup.last_used_at),
            "total": len(codes),
            "unused": sum(1 for used_at in codes if used_at is None),
            "used_at": sorted(used_at.isoformat() for used_at in codes if used_at is not None),
        }
    return {
        "totp": [
            {
                "name": device.name,
                "confirmed": device.confirmed,
                "created_at": _iso(device.created_at),
                "last_used_at": _iso(device.last_used_at),
            }
            for device in TOTPDevice.objects.filter(user=user).order_by("created_at", "pk")
        ],
        "backup_codes": backup_section,
        "passkeys": [
            {
                "name": passkey.name,
                "created_at": _iso(passkey.created_at),
                "last_used_at": _iso(passkey.last_used_at),
                "synced": passkey.backup_eligible,
                "transports": list(passkey.transports or []),
                "aaguid": passkey.aaguid,
            }
            for passkey in Passkey.objects.filter(user=user).order_by("created_at", "pk")
        ],
    }


@transaction.atomic
def erase(user: User) -> dict[str, Any]:
    details = {
        "totp": _deleted(TOTPDevice.objects.filter(user=user)),
        "backup_codes": _deleted(BackupCode.objects.filter(device__user=user)),
        "backup_code_sets": _deleted(BackupCodeDevice.objects.filter(user=user)),
        "passkeys": _deleted(Passkey.objects.filter(user=user)),
    }
    return {
        "erased": [
            "authenticator apps (with their encrypted secrets)",
            "backup codes (keyed hashes)",
            "passkeys (public keys)",
        ],
        "kept": [],
        "details": details,
    }
