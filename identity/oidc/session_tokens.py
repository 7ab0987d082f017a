"""The tokens issued in a browser session die with it.

OpenID Back-Channel Logout 1.0 §2.7: refresh tokens issued without `offline_access`
SHOULD be revoked with the session; we offer no `offline_access`, so every token of the
session goes: access tokens, ID token records and refresh tokens carrying its `sid`.
Tokens from the resident's other sessions (another browser, another device) are untouched.

`client_tokens_revoke` is the other cut: every token one partner holds for one resident,
across sessions, when the resident withdraws that partner's access from "Mon compte".

`revoke_for_ended_session` is a session-ended listener (identity.sessions), registered in
IdentityConfig.ready() before the back-channel logout one: it runs inside session_end's
transaction, so the session is never seen ended with its tokens still alive.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from identity.sessions import register_session_ended_listener


def session_tokens_revoke(*, sid: str) -> None:
    """Revoke every access token, ID token record and refresh token carrying this sid."""
    if not sid:
        return
    now = timezone.now()
    get_refresh_token_model().objects.filter(sid=sid, revoked__isnull=True).update(revoked=now)
    access_tokens = get_access_token_model().objects.filter(sid=sid)
    id_token_ids = [pk for pk in access_tokens.values_list("id_token_id", flat=True) if pk]
    access_tokens.delete()
    if id_token_ids:
        get_id_token_model().objects.filter(pk__in=id_token_ids).delete()


def client_tokens_revoke(*, user: Any, client: Any) -> dict[str, int]:
    """Revoke everything `client` holds for `user`, whichever session it came from (a resident
    withdrawing a partner's access: identity.oidc.sharing.sharing_withdraw).

    Refresh tokens are marked revoked (kept, so that presenting one again is recognised as
    a replay), access tokens and ID token records deleted (userinfo and introspection refuse
    a resident token whose row is gone), codes not yet redeemed deleted. The caller's
    transaction. Returns how many of each went.
    """
    now = timezone.now()
    refresh = (
        get_refresh_token_model()
        .objects.filter(user=user, application=client, revoked__isnull=True)
        .update(revoked=now, updated=now)
    )
    access_tokens = get_access_token_model().objects.filter(user=user, application=client)
    access = access_tokens.count()
    access_tokens.delete()
    id_tokens = get_id_token_model().objects.filter(user=user, application=client).delete()[0]
    codes = (
        get_grant_model().objects.filter(user=user, application=client, redeemed_at__isnull=True).delete()[0]
    )
    return {"refresh_tokens": refresh, "access_tokens": access, "id_tokens": id_tokens, "codes": codes}


def revoke_for_ended_session(session: Any, clients: list[Any]) -> None:
    """Session-ended listener: every token issued in the session, whichever client holds it."""
    session_tokens_revoke(sid=session.sid)


def register() -> None:
    register_session_ended_listener(revoke_for_ended_session)
