"""The audit trail's writer: one AuditEvent row, in the caller's transaction, without personal data.

It lives in the accounts layer, not in common: the row (identity.models.AuditEvent) refers
to the acting and subject users. The client address is kept as a keyed fingerprint only
(common.audit.ip_fingerprint).
"""

from __future__ import annotations

from typing import Any

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
    return AuditEvent.objects.create(
        event=event,
        acting_user_id=acting_user.pk if acting_user else None,
        subject_user_id=subject_user.pk if subject_user else None,
        client_id=client_id,
        ip_hash=ip_fingerprint(ip),
        data=data or {},
    )
