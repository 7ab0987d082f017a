"""SESSION_ENGINE without Redis: Django's database store, one write at sign-in (package docstring)."""

from __future__ import annotations

from django.contrib.sessions.backends import db

from identity.session_stores import OneWriteSignInMixin


class SessionStore(OneWriteSignInMixin, db.SessionStore):
    pass
