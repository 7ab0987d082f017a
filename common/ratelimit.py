"""Windowed counters in the "ratelimit" cache, and the client address they count.

The policies built on them live with their apps: sign-in and anonymous forms in
identity.ratelimit, the consent cookie endpoint in consent.api.views.

Counters use `cache.add` then `cache.incr`: atomic on Redis (production). The database
cache has no atomic increment; there the read-modify-write runs in one transaction,
which SQLite (the embedded default, `BEGIN IMMEDIATE`) serialises. Keys carry a keyed
hash of the counted value (an email, an IP), never the value itself. Time is read
through `now()` only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import DatabaseCache
from django.db import router, transaction
from django.http import HttpRequest

from common import metrics


def now() -> float:
    return time.time()


def counter_cache() -> BaseCache:
    return caches["ratelimit"]


@dataclass(frozen=True)
class Block:
    """An attempt refused by a limit, and for how long."""

    scope: str  # "account", "device", "ip" or "form"
    retry_after: int  # seconds

    def __post_init__(self) -> None:
        metrics.RATE_LIMIT_REFUSALS.labels(self.scope).inc()  # each Block is one refusal

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))


# --- client address ---------------------------------------------------------------------


def _valid_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


def client_ip(request: HttpRequest) -> str:
    """The client address, trusting X-Forwarded-For only as far as our own proxies.

    Each of the TRUSTED_PROXY_COUNT proxies appends the address it received the
    connection from, so the client is the N-th entry from the right; anything left of
    it was written by the client and is ignored.
    """
    remote = _valid_ip(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        # The request did not come through every proxy we expect: use what we can see.
        return remote
    return _valid_ip(forwarded[-proxies]) or remote


def ip_bucket(ip: str) -> str:
    """An IPv6 client usually holds a whole /64: count it as one address."""
    if not ip:
        return "unknown"
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(address)


# --- counters -----------------------------------------------------------------------------


def digest(kind: str, value: str) -> str:
    """Keyed hash of a counted value: cache keys never hold an email or an address."""
    key = hashlib.sha256(("ratelimit:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def window(window_seconds: int) -> tuple[int, float]:
    """Start of the current fixed window and the seconds left in it."""
    current = now()
    start = int(current // window_seconds) * window_seconds
    return start, start + window_seconds - current


def counter_key(kind: str, value: str, window_seconds: int) -> str:
    start, _left = window(window_seconds)
    return f"rl:{kind}:{digest(kind, value)}:{start}"


def _atomic_for(cache: BaseCache) -> Any:
    if isinstance(cache, DatabaseCache):
        return transaction.atomic(using=router.db_for_write(cache.cache_model_class))
    return nullcontext()


def count(kind: str, value: str, window_seconds: int) -> int:
    return int(counter_cache().get(counter_key(kind, value, window_seconds), 0) or 0)


def hit(kind: str, value: str, window_seconds: int) -> int:
    """Add one to a windowed counter and return the new count."""
    cache = counter_cache()
    key = counter_key(kind, value, window_seconds)
    _start, left = window(window_seconds)
    timeout = max(1, math.ceil(left))
    with _atomic_for(cache):
        cache.add(key, 0, timeout=timeout)
        try:
            total = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=timeout)
            total = 1
        if type(cache).incr is BaseCache.incr:
            # The generic incr() re-sets the value with the default timeout.
            cache.touch(key, timeout=timeout)
    return int(total)


def clear(kind: str, value: str, window_seconds: int) -> None:
    counter_cache().delete(counter_key(kind, value, window_seconds))
