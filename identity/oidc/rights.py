"""identity.oidc's data-rights provider: what partners received, tokens, grants, notices.

Registered from IdentityConfig.ready() (identity.oidc is a package of the identity app).

Export section "oidc" (JSON, no secret: never a code, token, token hash or jti):

- `session_clients`: per browser session (its id in the "identity" section), the
  partners that received tokens in it: session, client_id, client_name,
  first_issued_at, last_issued_at;
- `authorization_codes`: client_id, scope, created, expires, redeemed_at, acr;
- `access_tokens`: client_id, scope, created, expires;
- `refresh_tokens`: client_id, created, revoked;
- `id_tokens`: client_id, scope, created, expires;
- `device_grants`: client_id, scope, status, expires (django-oauth-toolkit's device flow,
  which no client of ours uses: normally empty);
- `internal_service_notices`: the internal services the resident was told about (public
  task, no consent): client_id, client_name, scopes, first_shown_at, last_shown_at;
- `owned_clients`: partner clients registered with this account as owner (staff):
  client_id, name.

What the resident allowed each partner is consent, in the "consent" section (ledger
events with their `partner_client_id`).

Erasure (first of all providers, consent.rights.ORDER_PARTNERS, so partners are told
while the sessions still name them): every live session is ended (identity.sessions: its
tokens revoked, and through the session-ended listener a back-channel logout queued in
the outbox for each partner of the session, delivered after the erasure commits); then
every authorization code, access, refresh and ID token and device grant of the resident
is deleted (userinfo and introspection refuse a token whose row is gone, at once; a JWT
access token a resource server checks alone stays valid there until it expires, minutes);
the internal-service notices are deleted; owned partner clients are detached from the
account (the client stays: it belongs to the partner, and the account's deletion would
otherwise cascade to it). The partner lists of the sessions go with the session records,
deleted with the account by the "identity" provider. Kept: nothing here (the outbox
messages are the "connectors" provider's).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from oauth2_provider.models import DeviceGrant

from consent.rights import ORDER_PARTNERS, ErasureReport
from identity.models import (
    AccessToken,
    AuthorizationCode,
    BrowserSession,
    Client,
    IDToken,
    InternalServiceNotice,
    RefreshToken,
    SessionClient,
    User,
)
from identity.sessions import sessions_end_all

NAME = "oidc"
ORDER = ORDER_PARTNERS
MODELS = (
    "identity.AuthorizationCode",
    "identity.AccessToken",
    "identity.RefreshToken",
    "identity.IDToken",
    "identity.InternalServiceNotice",
    "identity.Client",  # the owner column only: owned clients are detached, never deleted
    "oauth2_provider.DeviceGrant",
)

END_REASON = "account_erased"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _deleted(queryset: Any) -> int:
    """Delete the rows of `queryset`; how many of its own model went (not the cascade's)."""
    return queryset.delete()[1].get(queryset.model._meta.label, 0)


def _client_id(client: Client | None) -> str | None:
    return client.client_id if client is not None else None


def export(user: User) -> dict[str, Any]:
    session_clients = (
        SessionClient.objects.filter(session__user=user)
        .select_related("client")
        .order_by("session_id", "first_issued_at", "pk")
    )
    notices = InternalServiceNotice.objects.filter(user=user).select_related("client").order_by("pk")
    return {
        "session_clients": [
            {
                "session": link.session_id,
                "client_id": link.client.client_id,
                "client_name": link.client.name,
                "first_issued_at": _iso(link.first_issued_at),
                "last_issued_at": _iso(link.last_issued_at),
            }
            for link in session_clients
        ],
        "authorization_codes": [
            {
                "client_id": _client_id(code.application),
                "scope": code.scope,
                "created": _iso(code.created),
                "expires": _iso(code.expires),
                "redeemed_at": _iso(code.redeemed_at),
                "acr": code.acr,
            }
            for code in AuthorizationCode.objects.filter(user=user)
            .select_related("application")
            .order_by("pk")
        ],
        "access_tokens": [
            {
                "client_id": _client_id(token.application),
                "scope": token.scope,
                "created": _iso(token.created),
                "expires": _iso(token.expires),
            }
            for token in AccessToken.objects.filter(user=user).select_related("application").order_by("pk")
        ],
        "refresh_tokens": [
            {
                "client_id": _client_id(token.application),
                "created": _iso(token.created),
                "revoked": _iso(token.revoked),
            }
            for token in RefreshToken.objects.filter(user=user).select_related("application").order_by("pk")
        ],
        "id_tokens": [
            {
                "client_id": _client_id(token.application),
                "scope": token.scope,
                "created": _iso(token.created),
                "expires": _iso(token.expires),
            }
            for token in IDToken.objects.filter(user=user).select_related("application").order_by("pk")
        ],
        "device_grants": [
            {
                "client_id": grant.client_id,
                "scope": grant.scope,
                "status": grant.status,
                "expires": _iso(grant.expires),
            }
            for grant in DeviceGrant.objects.filter(user=user).order_by("pk")
        ],
        "internal_service_notices": [
            {
                "client_id": notice.client.client_id,
                "client_name": notice.client.name,
                "scopes": sorted(notice.scope_set),
                "first_shown_at": _iso(notice.first_shown_at),
                "last_shown_at": _iso(notice.last_shown_at),
            }
            for notice in notices
        ],
        "owned_clients": [
            {"client_id": client.client_id, "name": client.name}
            for client in Client.objects.filter(user=user).order_by("client_id")
        ],
    }


@transaction.atomic
def erase(user: User) -> ErasureReport:
    live = BrowserSession.objects.filter(user=user, ended_at__isnull=True).exists()
    ended = sessions_end_all(user=user, reason=END_REASON) if live else 0
    details = {
        "sessions_ended": ended,
        "refresh_tokens": _deleted(RefreshToken.objects.filter(user=user)),
        "access_tokens": _deleted(AccessToken.objects.filter(user=user)),
        "id_tokens": _deleted(IDToken.objects.filter(user=user)),
        "authorization_codes": _deleted(AuthorizationCode.objects.filter(user=user)),
        "device_grants": _deleted(DeviceGrant.objects.filter(user=user)),
        "internal_service_notices": _deleted(InternalServiceNotice.objects.filter(user=user)),
        "owned_clients_detached": Client.objects.filter(user=user).update(user=None),
    }
    return ErasureReport(
        provider=NAME,
        erased=[
            "live browser sessions ended; back-channel logout queued for their partners",
            "authorization codes, access, refresh and ID tokens, device grants",
            "internal-service information records",
            "ownership of partner clients (the clients stay)",
        ],
        kept=[],
        details=details,
    )
