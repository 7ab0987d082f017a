"""The "Ce n'était pas vous ?" links of the security notifications: their tokens, and what a
token is worth now. Reading only: what using a link does to the account is
identity.services.account_not_me_confirm.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from enum import StrEnum

from django.core import signing
from django.urls import reverse
from django.utils.crypto import salted_hmac

from identity.emails import absolute_url
from identity.models import User

# Every security notification carries a link that lets the resident react even when they
# cannot sign in any more. The token is signed (django.core.signing.TimestampSigner, own
# salt), expires after NOT_ME_MAX_AGE, and embeds a keyed fingerprint of the password
# hash. Using it replaces the password, so the fingerprint no longer matches: the link is
# single-use without any stored state (the idea of Django's password-reset tokens). Any
# other password change also spends the links sent before it; the change's own email
# brings a fresh one.

NOT_ME_SALT = "identity.not-me"
NOT_ME_MAX_AGE = 7 * 24 * 60 * 60
NOT_ME_SOURCES = {
    "new_device",
    "password_changed",
    "mfa_factor_added",
    "mfa_factor_removed",
    "mfa_backup_code_used",
    "mfa_factors_reset",
    "email_change_requested",
}


def not_me_days() -> int:
    return max(1, NOT_ME_MAX_AGE // 86400)


def _not_me_fingerprint(user: User) -> str:
    value = f"{user.pk}:{user.password}:{int(user.is_active)}"
    return salted_hmac(NOT_ME_SALT, value, algorithm="sha256").hexdigest()[:32]


def not_me_token(*, user: User, source: str, factor: tuple[str, int] | None = None) -> str:
    """`factor` (kind, id): the second factor the email announced, removed if the link is used."""

    if source not in NOT_ME_SOURCES:
        raise ValueError(f"unknown notification {source!r}")
    value = f"{user.pk.hex}.{_not_me_fingerprint(user)}.{source}"
    if factor is not None:
        value += f".{factor[0]}-{int(factor[1])}"
    return signing.TimestampSigner(salt=NOT_ME_SALT).sign(value)


def not_me_url(*, user: User, source: str, factor: tuple[str, int] | None = None) -> str:
    token = not_me_token(user=user, source=source, factor=factor)
    return absolute_url(reverse("identity:not-me", kwargs={"token": token}))


class NotMeResult(StrEnum):
    VALID = "valid"
    DONE = "done"
    USED = "used"  # or the password changed since the email was sent
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass
class NotMeCheck:
    result: NotMeResult
    user: User | None = None
    source: str = ""
    sessions_ended: int = 0
    reset_sent: bool = False
    factor: tuple[str, int] | None = None
    factor_removed: bool = False


def not_me_check(*, token: str, lock: bool = False) -> NotMeCheck:
    """What a "this wasn't me" link is worth now. Changes nothing."""

    if not token or len(token) > 300:
        return NotMeCheck(NotMeResult.INVALID)
    signer = signing.TimestampSigner(salt=NOT_ME_SALT)
    try:
        value = signer.unsign(token, max_age=NOT_ME_MAX_AGE)
    except signing.SignatureExpired:
        return NotMeCheck(NotMeResult.EXPIRED)
    except signing.BadSignature:
        return NotMeCheck(NotMeResult.INVALID)
    parts = value.split(".")
    if len(parts) not in (3, 4) or parts[2] not in NOT_ME_SOURCES:
        return NotMeCheck(NotMeResult.INVALID)
    factor: tuple[str, int] | None = None
    if len(parts) == 4:
        kind, _sep, factor_id = parts[3].partition("-")
        if not factor_id.isdigit():
            return NotMeCheck(NotMeResult.INVALID)
        factor = (kind, int(factor_id))
    try:
        user_id = uuid.UUID(hex=parts[0])
    except ValueError:
        return NotMeCheck(NotMeResult.INVALID)
    users = User.objects.select_for_update() if lock else User.objects
    user = users.filter(pk=user_id).first()
    if user is None:
        return NotMeCheck(NotMeResult.INVALID)
    if not hmac.compare_digest(parts[1], _not_me_fingerprint(user)):
        return NotMeCheck(NotMeResult.USED)
    return NotMeCheck(NotMeResult.VALID, user=user, source=parts[2], factor=factor)
