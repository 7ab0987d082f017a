"""Reads of the MFA app, and its contract with the OIDC layer.

Contract for identity/oidc (the only things it should use from here):

- `user_has_mfa(user) -> bool`: the resident has at least one active second factor
  (an activated TOTP app or a passkey). Backup codes alone do not count: they only exist
  beside another factor and are removed with the last one.
- `session_acr(request) -> str`: the authentication level of this browser session:
  `ACR_MFA` ("https://refeds.org/profile/mfa") when the session's `amr` (RFC 8176, kept by
  identity.signin.session_login) contains "mfa", else `ACR_BASIC` ("eidas1"); both are
  defined in identity/levels.py.
- Step-up: send the browser to `step_up_url(next_url)`, i.e.
  `GET /connexion/verification/?next=<same-site relative URL>`. It works for a resident
  already signed in with the password only: they are asked for a second factor only (not
  the password again); on success `session_login` is called again with the stronger `amr`
  (so `auth_time` is refreshed) and the browser is redirected to `next`. A resident who has
  no second factor sees a page explaining how to add one (so the caller should check
  `user_has_mfa` first and answer the partner with an OIDC error when the level cannot be
  met). `next` must be a relative URL on this site, anything else is ignored.

`amr` values written by the MFA flows (RFC 8176):

| how the resident signed in                      | amr                                   |
| ----------------------------------------------- | ------------------------------------- |
| password only                                   | ["pwd"]                               |
| password + TOTP app                             | ["pwd", "otp", "mfa"]                 |
| password + backup code (a one-time password)    | ["pwd", "otp", "mfa"]                 |
| password + passkey                              | ["pwd", "hwk", "mfa"] or "swk"        |
| passkey alone, user verified (PIN, biometrics)  | ["hwk", "mfa"] or ["swk", "mfa"]      |
| passkey alone, user presence only               | ["hwk"] or ["swk"]                    |

`hwk` is a device-bound passkey, `swk` a synced one (WebAuthn "backup eligible": the
private key can leave the device). A passkey with user verification is two factors in one
gesture (possession + PIN/biometrics), so it reaches the MFA level; without, it is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest
from django.urls import reverse

from identity.levels import ACR_BASIC, ACR_MFA
from identity.mfa.models import BackupCodeDevice, Kind, Passkey, TOTPDevice
from identity.models import User
from identity.selectors import session_amr


def second_factor_exists() -> Q:
    """The condition "this account row has an active second factor (TOTP or passkey)", for a
    query on User: `user_has_mfa` filters with it, and the password sign-in reads it as an
    annotation of the account it looks up (identity.signin.user_for_sign_in)."""
    return Q(Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))) | Q(
        Exists(Passkey.objects.filter(user=OuterRef("pk")))
    )


def user_has_mfa(user: User) -> bool:
    """True when the resident has at least one active second factor (TOTP or passkey)."""
    if user is None or not getattr(user, "is_authenticated", False) or user.pk is None:
        return False
    # One statement: the account row with either factor.
    return User.objects.filter(pk=user.pk).filter(second_factor_exists()).exists()


def session_acr(request: HttpRequest) -> str:
    """The level of this session: ACR_MFA when its amr contains "mfa", else ACR_BASIC."""
    return ACR_MFA if "mfa" in session_amr(request) else ACR_BASIC


def step_up_url(next_url: str) -> str:
    """Where to send a signed-in resident who must add a second factor to this session."""
    return f"{reverse('identity:mfa:verify')}?{urlencode({'next': next_url})}"


@dataclass(frozen=True)
class FactorRow:
    kind: str
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @property
    def kind_label(self) -> str:
        return str(Kind(self.kind).label)


def factors_of(user: User) -> list[FactorRow]:
    """The resident's active factors (not the backup codes), oldest first."""
    rows = [
        FactorRow(Kind.TOTP, d.pk, d.name, d.created_at, d.last_used_at)
        for d in TOTPDevice.objects.filter(user=user, confirmed=True)
    ]
    rows += [
        FactorRow(Kind.PASSKEY, p.pk, p.name, p.created_at, p.last_used_at)
        for p in Passkey.objects.filter(user=user)
    ]
    return sorted(rows, key=lambda row: row.created_at)


def factor_of(user: User, kind: str, factor_id: int) -> FactorRow | None:
    return next((row for row in factors_of(user) if row.kind == kind and row.id == factor_id), None)


@dataclass(frozen=True)
class BackupStatus:
    exists: bool
    remaining: int
    created_at: datetime | None


def backup_codes_status(user: User) -> BackupStatus:
    device = BackupCodeDevice.objects.filter(user=user).first()
    if device is None:
        return BackupStatus(False, 0, None)
    return BackupStatus(True, device.codes.filter(used_at__isnull=True).count(), device.created_at)


def available_methods(user: User) -> dict[str, bool]:
    """Which second factors the resident can use at the verification step."""
    return {
        "totp": TOTPDevice.objects.filter(user=user, confirmed=True).exists(),
        "backup": BackupCodeDevice.objects.filter(user=user, codes__used_at__isnull=True).exists(),
        "passkey": Passkey.objects.filter(user=user).exists(),
    }


def passkey_descriptors(user: User) -> list[tuple[str, list[str]]]:
    return [(p.credential_id, list(p.transports or [])) for p in Passkey.objects.filter(user=user)]
