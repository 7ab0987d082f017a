"""Throttling of sign-in attempts and of anonymous forms, in the "ratelimit" cache.

Sign-in (OWASP Authentication Cheat Sheet, "Slow down online guessing attacks with
device cookies"):

- Failures are counted per account (the normalised email, whether or not an account
  exists, so that the answer never reveals it) and per client IP, in fixed windows of
  `LOGIN_RATE_LIMIT["window_seconds"]`.
- When an account reaches `per_account` failures it is locked for untrusted browsers
  during `account_lock_seconds` only, so an attacker cannot keep a resident out for long.
  Until the window ends, each further failure locks it again: an attacker gets about
  one guess per lock period after the first `per_account`.
- A browser that signed in to that account before holds a signed "known device" cookie.
  For that account it is exempt from the account lock and from the per-IP limit (a
  shared network must not lock residents out) and gets its own per-device limit instead.
- Over a limit, the attempt is refused before the password is checked.
- A successful sign-in clears the account's counter and lock (not the IP counter,
  otherwise an attacker could reset it by signing in to an account of their own).

Anonymous forms (registration, verification resend, password reset) are limited per
client IP, and per target address where an email is sent, so nobody can flood a mailbox
(`FORM_RATE_LIMIT`, declared in config/settings.py).

Counters use `cache.add` then `cache.incr`: atomic on Redis (production). The database
cache has no atomic increment; there the read-modify-write runs in one transaction,
which SQLite (the embedded default, `BEGIN IMMEDIATE`) serialises. Keys carry a keyed
hash of the email or IP, never the value itself. Time is read through `_now()` only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import DatabaseCache
from django.db import router, transaction
from django.http import HttpRequest, HttpResponse

from identity.models import User, normalize_email

logger = logging.getLogger(__name__)

DEVICE_COOKIE_SALT = "identity.known-device"
DEVICE_COOKIE_MAX_AGE = 60 * 60 * 24 * 180
DEVICE_COOKIE_MAX_ENTRIES = 5


def _now() -> float:
    return time.time()


def _cache() -> BaseCache:
    return caches["ratelimit"]


def _login_settings() -> dict[str, int]:
    return dict(settings.LOGIN_RATE_LIMIT)


@dataclass(frozen=True)
class Block:
    """An attempt refused by a limit, and for how long."""

    scope: str  # "account", "device", "ip" or "form"
    retry_after: int  # seconds

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


def _ip_bucket(ip: str) -> str:
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


def _digest(kind: str, value: str) -> str:
    key = hashlib.sha256(("ratelimit:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def _window(window_seconds: int) -> tuple[int, float]:
    """Start of the current fixed window and the seconds left in it."""
    now = _now()
    start = int(now // window_seconds) * window_seconds
    return start, start + window_seconds - now


def _counter_key(kind: str, value: str, window_seconds: int) -> str:
    start, _left = _window(window_seconds)
    return f"rl:{kind}:{_digest(kind, value)}:{start}"


def _atomic_for(cache: BaseCache) -> Any:
    if isinstance(cache, DatabaseCache):
        return transaction.atomic(using=router.db_for_write(cache.cache_model_class))
    return nullcontext()


def _count(kind: str, value: str, window_seconds: int) -> int:
    return int(_cache().get(_counter_key(kind, value, window_seconds), 0) or 0)


def _hit(kind: str, value: str, window_seconds: int) -> int:
    """Add one to a windowed counter and return the new count."""
    cache = _cache()
    key = _counter_key(kind, value, window_seconds)
    _start, left = _window(window_seconds)
    timeout = max(1, math.ceil(left))
    with _atomic_for(cache):
        cache.add(key, 0, timeout=timeout)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=timeout)
            count = 1
        if type(cache).incr is BaseCache.incr:
            # The generic incr() re-sets the value with the default timeout.
            cache.touch(key, timeout=timeout)
    return int(count)


def _clear(kind: str, value: str, window_seconds: int) -> None:
    _cache().delete(_counter_key(kind, value, window_seconds))


# --- known devices ------------------------------------------------------------------------


def device_cookie_name() -> str:
    return "__Host-cum_device" if settings.SESSION_COOKIE_SECURE else "cum_device"


def _device_entries(request: HttpRequest) -> list[list[str]]:
    raw = request.COOKIES.get(device_cookie_name())
    if not raw:
        return []
    try:
        entries = signing.loads(raw, salt=DEVICE_COOKIE_SALT, max_age=DEVICE_COOKIE_MAX_AGE)
    except signing.BadSignature:
        return []
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, list) and len(entry) == 2][
        :DEVICE_COOKIE_MAX_ENTRIES
    ]


def known_device(request: HttpRequest, user: User | None) -> str | None:
    """The device nonce if this browser holds a valid known-device cookie for `user`."""
    if user is None:
        return None
    for user_id, nonce in _device_entries(request):
        if user_id == user.pk.hex and nonce:
            return str(nonce)
    return None


def remember_device(request: HttpRequest, response: HttpResponse, user: User) -> None:
    """Issue (or renew, with a fresh nonce) the known-device cookie after a sign-in."""
    entries = [entry for entry in _device_entries(request) if entry[0] != user.pk.hex]
    entries.insert(0, [user.pk.hex, secrets.token_urlsafe(16)])
    value = signing.dumps(entries[:DEVICE_COOKIE_MAX_ENTRIES], salt=DEVICE_COOKIE_SALT, compress=True)
    response.set_cookie(
        device_cookie_name(),
        value,
        max_age=DEVICE_COOKIE_MAX_AGE,
        path="/",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


# --- sign-in ----------------------------------------------------------------------------


class LoginThrottle:
    """Limits for one sign-in attempt: `check()` before the password, then `failed()` or `succeeded()`."""

    def __init__(self, request: HttpRequest, email: str, user: User | None) -> None:
        self.request = request
        self.email = normalize_email(email)
        self.user = user
        self.ip = client_ip(request)
        self.device = known_device(request, user)
        self.limits = _login_settings()

    @property
    def _window_seconds(self) -> int:
        return int(self.limits["window_seconds"])

    def _lock_key(self) -> str:
        return f"rl:login-lock:{_digest('login-account', self.email)}"

    def _device_value(self) -> str:
        return f"{self.user.pk.hex if self.user else ''}:{self.device}"

    def check(self) -> Block | None:
        window = self._window_seconds
        _start, left = _window(window)
        if self.device:
            if _count("login-device", self._device_value(), window) >= self.limits["per_account"]:
                return Block("device", math.ceil(left))
            return None
        if _count("login-ip", _ip_bucket(self.ip), window) >= self.limits["per_ip"]:
            return Block("ip", math.ceil(left))
        locked_until = _cache().get(self._lock_key())
        if locked_until is not None and float(locked_until) > _now():
            return Block("account", math.ceil(float(locked_until) - _now()))
        return None

    def failed(self) -> Block | None:
        """Count a failed attempt; returns the block it triggered, if any."""
        from identity.services import login_record_failure, login_record_lockout

        window = self._window_seconds
        _start, left = _window(window)
        if self.user is not None:
            login_record_failure(user=self.user, ip=self.ip, known_device=bool(self.device))
        if self.device:
            count = _hit("login-device", self._device_value(), window)
            if count >= self.limits["per_account"]:
                if count == self.limits["per_account"]:
                    login_record_lockout(user=self.user, ip=self.ip, scope="device")
                return Block("device", math.ceil(left))
            return None

        ip_count = _hit("login-ip", _ip_bucket(self.ip), window)
        account_count = _hit("login-account", self.email, window)
        block = None
        if account_count >= self.limits["per_account"]:
            lock_seconds = int(self.limits["account_lock_seconds"])
            _cache().set(self._lock_key(), _now() + lock_seconds, timeout=lock_seconds)
            login_record_lockout(user=self.user, ip=self.ip, scope="account")
            block = Block("account", lock_seconds)
        if ip_count >= self.limits["per_ip"]:
            if ip_count == self.limits["per_ip"]:
                login_record_lockout(user=None, ip=self.ip, scope="ip")
            if block is None:
                block = Block("ip", math.ceil(left))
        return block

    def succeeded(self) -> None:
        clear_account(self.email)
        if self.device:
            _clear("login-device", self._device_value(), self._window_seconds)


def clear_account(email: str) -> None:
    """Forget an account's failures and lock (successful sign-in or password reset)."""
    email = normalize_email(email)
    window = int(_login_settings()["window_seconds"])
    _clear("login-account", email, window)
    _cache().delete(f"rl:login-lock:{_digest('login-account', email)}")


def password_check_block(user: User) -> Block | None:
    """Current-password checks by a signed-in session (password change) have their own limit,
    so a stolen session cannot be used to guess the password."""
    limits = _login_settings()
    window = int(limits["window_seconds"])
    if _count("password-check", user.pk.hex, window) >= limits["per_account"]:
        _start, left = _window(window)
        return Block("account", math.ceil(left))
    return None


def password_check_failed(user: User) -> Block | None:
    limits = _login_settings()
    window = int(limits["window_seconds"])
    if _hit("password-check", user.pk.hex, window) >= limits["per_account"]:
        _start, left = _window(window)
        return Block("account", math.ceil(left))
    return None


# --- anonymous forms ----------------------------------------------------------------------


def _form_limits(action: str) -> dict[str, int]:
    return dict(settings.FORM_RATE_LIMIT[action])


def ip_block(
    request: HttpRequest, kind: str, *, per_ip: int, window_seconds: int, scope: str = "ip"
) -> Block | None:
    """Count one request of `kind` from this client address (an IPv6 /64 counts as one);
    a Block once more than `per_ip` fall in the current window of `window_seconds`."""
    count = _hit(kind, _ip_bucket(client_ip(request)), window_seconds)
    if count > per_ip:
        _start, left = _window(window_seconds)
        return Block(scope, math.ceil(left))
    return None


def form_ip_block(request: HttpRequest, action: str) -> Block | None:
    """Count one submission of `action` from this IP; a Block once over the limit."""
    limits = _form_limits(action)
    return ip_block(
        request,
        f"form-{action}-ip",
        per_ip=limits["per_ip"],
        window_seconds=int(limits["window_seconds"]),
        scope="form",
    )


def form_email_allowed(action: str, email: str) -> bool:
    """Count one email sent to `email` for `action`; False once over the limit (silently skipped)."""
    limits = _form_limits(action)
    count = _hit(f"form-{action}-email", normalize_email(email), int(limits["window_seconds"]))
    return count <= limits["per_email"]
