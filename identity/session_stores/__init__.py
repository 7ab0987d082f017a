"""Django session stores (settings.SESSION_ENGINE) that open a signed-in session with one write.

Django's stores, at `login()`'s key rotation (`cycle_key`, against session fixation), check
that a fresh random key is unused (a read of the table, and of the cache), INSERT an empty
session row at once, and UPDATE it with the session's data at the end of the request: three
statements and their savepoints, plus two cache writes, for every sign-in.

Here the rotation draws the new key and forgets the old session as before, but the row is
written once, by the end of the request's save, as an INSERT that must create it (Django's
`must_create`): a key that somehow exists already is refused by the table's primary key,
never taken over. With 32 characters of 36 (165 random bits), that never happens in
practice; were it to, the request answers the session-interrupted page (Django's
`SessionInterrupted`, a 400), not a 500, and the browser signs in again. No existence check
either when a key is drawn elsewhere: the same INSERT decides.

`db` is the store without Redis, `cached_db` the one with it (config/settings.py chooses);
the session rows, their cache keys and their encoding are Django's own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.utils.crypto import get_random_string

SESSION_KEY_LENGTH = 32


class OneWriteSignInMixin:
    """Put before a database-backed Django SessionStore (db or cached_db)."""

    _create_pending = False

    def _get_new_session_key(self) -> str:
        # No existence check: the INSERT with must_create refuses a key already in use.
        return get_random_string(SESSION_KEY_LENGTH, VALID_KEY_CHARS)

    def cycle_key(self) -> None:
        """A new key for the same data, the old session deleted (as Django's), the row
        written by the next save instead of now."""
        store: Any = self
        data = store._session
        key = store.session_key
        store._session_key = self._get_new_session_key()
        self._create_pending = True
        store._session_cache = data
        store.modified = True
        if key:
            store.delete(key)

    def save(self, must_create: bool = False) -> None:
        store: Any = self
        if self._create_pending and store.session_key is not None:
            try:
                super().save(must_create=True)  # type: ignore[misc]
            except CreateError:
                # The new key is taken (never in practice: 165 random bits). Not taken over:
                # the middleware answers SessionInterrupted and the browser signs in again.
                raise UpdateError from None
            self._create_pending = False
            return
        super().save(must_create=must_create)  # type: ignore[misc]

    def flush(self) -> None:
        self._create_pending = False
        super().flush()  # type: ignore[misc]
