"""SESSION_ENGINE with Redis: Django's cached_db store, one write at sign-in (package docstring).

Same cache keys as Django's (`cache_key_prefix` is inherited), so sessions opened before the
change stay valid."""

from __future__ import annotations

from django.contrib.sessions.backends import cached_db

from identity.session_stores import OneWriteSignInMixin


class SessionStore(OneWriteSignInMixin, cached_db.SessionStore):
    pass
