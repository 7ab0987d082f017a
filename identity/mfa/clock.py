"""The one clock of the MFA code (TOTP steps, throttling, half-authenticated expiry).

Read through these functions only, so that tests can move time without patching
Django's or Python's clocks for everyone else.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    return time.time()


def now_dt() -> datetime:
    return datetime.fromtimestamp(now(), tz=UTC)
