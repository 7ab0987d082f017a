"""The audit trail's writer: one AuditEvent row, in the caller's transaction, without personal data.

It lives in the accounts layer, not in common: the row (identity.models.AuditEvent) refers
to the acting and subject users. The client address is kept as a keyed fingerprint only
(common.audit.ip_fingerprint).
"""

from __future__ import annotations

from typing import Any

from common import metrics
from common.audit import ip_fingerprint
from identity.models import AuditEvent, User


def audit_log(
    *,
    event: str,
    acting_user: User | None = None,
    subject_user: User | None = None,
    client_id: str = "",
    ip: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    _count(event, data or {})
    return AuditEvent.objects.create(
        event=event,
        acting_user_id=acting_user.pk if acting_user else None,
        subject_user_id=subject_user.pk if subject_user else None,
        client_id=client_id,
        ip_hash=ip_fingerprint(ip),
        data=data or {},
    )


# Sign-ins by method and outcome (a success's method is in its audit data); second-factor
# checks by kind.
_SIGNIN_METHODS = frozenset({"password", "passkey", "franceconnect"})
_SIGNIN_FAILURES = {
    "login.failed": ("password", "failed"),
    "login.passkey_failed": ("passkey", "failed"),
    "franceconnect.login_failed": ("franceconnect", "failed"),
    "login.blocked": ("password", "refused"),
    "login.locked": ("password", "locked"),
}
_MFA_OUTCOMES = {
    "mfa.verify_succeeded": "succeeded",
    "mfa.verify_failed": "failed",
    "mfa.throttled": "refused",
}


def _count(event: str, data: dict[str, Any]) -> None:
    metrics.AUDIT_EVENTS.labels(event).inc()
    if event == "login.succeeded":
        method = data.get("method")
        metrics.SIGNINS.labels(method if method in _SIGNIN_METHODS else "other", "succeeded").inc()
    elif event in _SIGNIN_FAILURES:
        metrics.SIGNINS.labels(*_SIGNIN_FAILURES[event]).inc()
    elif event in _MFA_OUTCOMES:
        kind = data.get("kind")
        metrics.MFA_CHALLENGES.labels(kind if kind in _MFA_KINDS else "other", _MFA_OUTCOMES[event]).inc()


_MFA_KINDS = frozenset({"totp", "backup", "passkey"})  # identity.mfa.models.Kind's values
