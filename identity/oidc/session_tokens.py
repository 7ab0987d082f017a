"""The tokens issued in a browser session die with it.

OpenID Back-Channel Logout 1.0 §2.7: refresh tokens issued without `offline_access`
SHOULD be revoked with the session; we offer no `offline_access`, so every token of the
session goes: access tokens, ID token records and refresh tokens carrying its `sid`.
Tokens from the resident's other sessions (another browser, another device) are untouched.

`revoke_for_ended_session` is a session-ended listener (identity.sessions), registered in
IdentityConfig.ready() before the back-channel logout one: it runs inside session_end's
transaction, so the session is never seen ended with its tokens still alive.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_id_token_model, get_refresh_token_model

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


def revoke_for_ended_session(session: Any, clients: list[Any]) -> None:
    """Session-ended listener: every token issued in the session, whichever client holds it."""
    session_tokens_revoke(sid=session.sid)


def register() -> None:
    register_session_ended_listener(revoke_for_ended_session)
