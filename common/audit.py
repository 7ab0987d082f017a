"""What an audit row may hold about the client: a keyed fingerprint of its address, never the address.

The rows themselves (identity.models.AuditEvent) point at users, so they and their writer
(identity.audit.audit_log) belong to the accounts layer; only this hash is plumbing.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def ip_fingerprint(ip: str) -> str:
    """Keyed hash of a client IP: lets audits correlate events without storing the address."""
    if not ip:
        return ""
    key = hashlib.sha256(("ip:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]
