"""The consent gate's and the ledger's hot statements: prepared, on a kept cursor.

The mechanism lives in common/kept_cursor.py (the token endpoint's statements, in identity,
use it too, and identity may not import consent); its names are kept here for consent's
modules: `prepared_cursor()` (a Django cursor preparing its statements on PostgreSQL when
`DATABASE_PREPARED_STATEMENTS` allows it) and `prepared_fetch(sql, params)` (one statement on
the cursor kept per connection, `common.kept_cursor.kept_fetch`).
"""

from __future__ import annotations

from common.kept_cursor import kept_fetch as prepared_fetch
from common.kept_cursor import prepared_cursor

__all__ = ["prepared_cursor", "prepared_fetch"]
