"""The identity app's data-rights provider: the account, its browser sessions, audit rows.

Registered from IdentityConfig.ready() into consent.rights (which this module does not
import: identity accounts sit below consent, so `erase` returns a plain mapping with the
fields of consent.rights.ErasureReport).

Export section "identity" (every value JSON, no secret):

- `account`: id, email, email_verified, given_name, family_name, preferred_language,
  phone_number, phone_number_verified, address {street_address, locality, postal_code,
  region, country}, is_active, is_staff, created_at, updated_at, last_login,
  has_password (whether a password is set; never its hash);
- `groups`, `permissions`: names of the staff groups and codenames of the direct
  permissions (empty for residents);
- `sessions`: the browser sessions, ended or not: id, created_at, auth_time, last_seen_at,
  ended_at, end_reason, amr, acr, device, user_agent (never the sid nor the session key);
- `email_verifications`: the verification links sent: email, created_at, expires_at,
  used_at (never the link's token or hash);
- `email_changes`: the changes of address asked: new_email, old_email, created_at,
  expires_at, used_at, cancelled_at (never the link's token or hash);
- `audit_events`: the security audit rows about the resident or by them: at, event,
  actor ("self", "other" — another account, e.g. staff — or "system"), about_self,
  client_id, data (ids and counts by convention; never the keyed IP fingerprint);
- `admin_log`: for staff, what they did in the admin: at, action, model (never which
  object, its text or the change message: those are about other people, Art. 15(4)).

Erasure (last of all providers, consent.rights.ORDER_ACCOUNT): every session still live is
ended (sign-out everywhere; normally identity.oidc's provider did it first), an
`account.erased` audit row is written, then the account row is deleted, and with it, by
the database's cascade, the ended session records and their partner lists, the email
verification and email-change links, group and permission memberships and, for staff,
their django.contrib.admin history. The email address can then be used for a new account.

Kept: the audit rows (AuditEvent). They carry ids and event names, never personal data
(no name, address, email or IP: the IP is a keyed fingerprint), and once the account row
is gone their account id points at nobody. They are the security log and the proof that
rights requests were honoured (GDPR Art. 5(2) accountability, Art. 17(3)(b) and (e)).
Their retention is the audit log's, not the account's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import LogEntry
from django.db import transaction
from django.db.models import Q

from identity.audit import audit_log
from identity.models import AuditEvent, BrowserSession, EmailChange, EmailVerification, User
from identity.sessions import sessions_end_all

NAME = "identity"
ORDER = 90  # consent.rights.ORDER_ACCOUNT: the account row goes last
MODELS = (
    "identity.User",
    "identity.User_groups",
    "identity.User_user_permissions",
    "identity.BrowserSession",
    "identity.SessionClient",
    "identity.EmailVerification",
    "identity.EmailChange",
    "identity.AuditEvent",
    "sessions.Session",  # no foreign key: ended (deleted) with the browser sessions
    "admin.LogEntry",
)

END_REASON = "account_erased"
_ADMIN_ACTIONS = {1: "addition", 2: "change", 3: "deletion"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _account(user: User) -> dict[str, Any]:
    return {
        "id": str(user.pk),
        "email": user.email,
        "email_verified": user.email_verified,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "preferred_language": user.preferred_language,
        "phone_number": user.phone_number,
        "phone_number_verified": user.phone_number_verified,
        "address": {
            "street_address": user.street_address,
            "locality": user.locality,
            "postal_code": user.postal_code,
            "region": user.region,
            "country": user.country,
        },
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "created_at": _iso(user.created_at),
        "updated_at": _iso(user.updated_at),
        "last_login": _iso(user.last_login),
        "has_password": user.has_usable_password(),
    }


def _actor(event: AuditEvent, user: User) -> str:
    if event.acting_user_id is None:
        return "system"
    return "self" if event.acting_user_id == user.pk else "other"


def export(user: User) -> dict[str, Any]:
    sessions = BrowserSession.objects.filter(user=user).order_by("created_at", "pk")
    events = AuditEvent.objects.filter(Q(subject_user_id=user.pk) | Q(acting_user_id=user.pk)).order_by(
        "created_at", "pk"
    )
    admin_log = LogEntry.objects.filter(user=user).select_related("content_type").order_by("action_time")
    return {
        "account": _account(user),
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(user.user_permissions.values_list("codename", flat=True)),
        "sessions": [
            {
                "id": session.pk,
                "created_at": _iso(session.created_at),
                "auth_time": _iso(session.auth_time),
                "last_seen_at": _iso(session.last_seen_at),
                "ended_at": _iso(session.ended_at),
                "end_reason": session.end_reason,
                "amr": list(session.amr or []),
                "acr": session.acr,
                "device": session.device,
                "user_agent": session.user_agent,
            }
            for session in sessions
        ],
        "email_verifications": [
            {
                "email": verification.email,
                "created_at": _iso(verification.created_at),
                "expires_at": _iso(verification.expires_at),
                "used_at": _iso(verification.used_at),
            }
            for verification in EmailVerification.objects.filter(user=user).order_by("created_at", "pk")
        ],
        "email_changes": [
            {
                "new_email": change.new_email,
                "old_email": change.old_email,
                "created_at": _iso(change.created_at),
                "expires_at": _iso(change.expires_at),
                "used_at": _iso(change.used_at),
                "cancelled_at": _iso(change.cancelled_at),
            }
            for change in EmailChange.objects.filter(user=user).order_by("created_at", "pk")
        ],
        "audit_events": [
            {
                "at": _iso(event.created_at),
                "event": event.event,
                "actor": _actor(event, user),
                "about_self": event.subject_user_id == user.pk,
                "client_id": event.client_id,
                "data": event.data,
            }
            for event in events
        ],
        "admin_log": [
            {
                "at": _iso(entry.action_time),
                "action": _ADMIN_ACTIONS.get(entry.action_flag, str(entry.action_flag)),
                # django-stubs leaves LogEntry.content_type's ForeignKey unparameterised.
                "model": f"{entry.content_type.app_label}.{entry.content_type.model}"  # type: ignore[attr-defined]
                if entry.content_type
                else None,
            }
            for entry in admin_log
        ],
    }


@transaction.atomic
def erase(user: User) -> dict[str, Any]:
    live = BrowserSession.objects.filter(user=user, ended_at__isnull=True).exists()
    ended = sessions_end_all(user=user, reason=END_REASON) if live else 0
    audit_log(event="account.erased", acting_user=user, subject_user=user, data={"sessions_ended": ended})
    details = {
        "sessions_ended": ended,
        "sessions": BrowserSession.objects.filter(user=user).count(),
        "email_verifications": EmailVerification.objects.filter(user=user).count(),
        "email_changes": EmailChange.objects.filter(user=user).count(),
        "admin_log": LogEntry.objects.filter(user=user).count(),
        "audit_events_kept": AuditEvent.objects.filter(
            Q(subject_user_id=user.pk) | Q(acting_user_id=user.pk)
        ).count(),
    }
    # Through a queryset: the caller's instance keeps its id (for its report), even if the
    # erasure is rolled back afterwards.
    User.objects.filter(pk=user.pk).delete()
    return {
        "erased": [
            "account (email, names, phone, address, password hash, language)",
            "browser sessions (records, Django sessions)",
            "email verification and email-change links",
            "group and permission memberships",
            "admin history of the account (staff only)",
        ],
        "kept": [
            "security audit rows (ids and event names, no personal data; the account id "
            "no longer points at anyone): GDPR Art. 5(2), 17(3)(b) and (e)",
        ],
        "details": details,
    }
