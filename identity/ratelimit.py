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

The windowed counters and the client address come from common.ratelimit (keys carry a
keyed hash of the email or IP, never the value itself).
"""

from __future__ import annotations

import logging
import math
import secrets

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

from common import ratelimit as counters
from common.ratelimit import Block, client_ip
from identity.models import User, normalize_email
from identity.signin import login_record_failure, login_record_lockout

logger = logging.getLogger(__name__)

DEVICE_COOKIE_SALT = "identity.known-device"
DEVICE_COOKIE_MAX_AGE = 60 * 60 * 24 * 180
DEVICE_COOKIE_MAX_ENTRIES = 5


def _login_settings() -> dict[str, int]:
    return dict(settings.LOGIN_RATE_LIMIT)


# --- known devices ------------------------------------------------------------------------


def device_cookie_name() -> str:
    return "__Host-known_device" if settings.SESSION_COOKIE_SECURE else "known_device"


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
        return f"rl:login-lock:{counters.digest('login-account', self.email)}"

    def _device_value(self) -> str:
        return f"{self.user.pk.hex if self.user else ''}:{self.device}"

    def check(self) -> Block | None:
        window = self._window_seconds
        _start, left = counters.window(window)
        if self.device:
            if counters.count("login-device", self._device_value(), window) >= self.limits["per_account"]:
                return Block("device", math.ceil(left))
            return None
        # The address's counter and the account's lock in one round trip.
        ip_key = counters.counter_key("login-ip", counters.ip_bucket(self.ip), window)
        lock_key = self._lock_key()
        found = counters.counter_cache().get_many([ip_key, lock_key])
        if int(found.get(ip_key) or 0) >= self.limits["per_ip"]:
            return Block("ip", math.ceil(left))
        locked_until = found.get(lock_key)
        if locked_until is not None and float(locked_until) > counters.now():
            return Block("account", math.ceil(float(locked_until) - counters.now()))
        return None

    def failed(self) -> Block | None:
        """Count a failed attempt; returns the block it triggered, if any."""
        window = self._window_seconds
        _start, left = counters.window(window)
        if self.user is not None:
            login_record_failure(user=self.user, ip=self.ip, known_device=bool(self.device))
        if self.device:
            count = counters.hit("login-device", self._device_value(), window)
            if count >= self.limits["per_account"]:
                if count == self.limits["per_account"]:
                    login_record_lockout(user=self.user, ip=self.ip, scope="device")
                return Block("device", math.ceil(left))
            return None

        ip_count = counters.hit("login-ip", counters.ip_bucket(self.ip), window)
        account_count = counters.hit("login-account", self.email, window)
        block = None
        if account_count >= self.limits["per_account"]:
            lock_seconds = int(self.limits["account_lock_seconds"])
            counters.counter_cache().set(
                self._lock_key(), counters.now() + lock_seconds, timeout=lock_seconds
            )
            login_record_lockout(user=self.user, ip=self.ip, scope="account")
            block = Block("account", lock_seconds)
        if ip_count >= self.limits["per_ip"]:
            if ip_count == self.limits["per_ip"]:
                login_record_lockout(user=None, ip=self.ip, scope="ip")
            if block is None:
                block = Block("ip", math.ceil(left))
        return block

    def succeeded(self) -> None:
        keys = _account_keys(self.email)
        if self.device:
            keys.append(counters.counter_key("login-device", self._device_value(), self._window_seconds))
        counters.counter_cache().delete_many(keys)  # one round trip


def _account_keys(email: str) -> list[str]:
    """The cache keys of an account's failure counter (current window) and of its lock."""
    email = normalize_email(email)
    window = int(_login_settings()["window_seconds"])
    return [
        counters.counter_key("login-account", email, window),
        f"rl:login-lock:{counters.digest('login-account', email)}",
    ]


def clear_account(email: str) -> None:
    """Forget an account's failures and lock (successful sign-in or password reset)."""
    counters.counter_cache().delete_many(_account_keys(email))


def password_check_block(user: User) -> Block | None:
    """Current-password checks by a signed-in session (password change) have their own limit,
    so a stolen session cannot be used to guess the password."""
    limits = _login_settings()
    window = int(limits["window_seconds"])
    if counters.count("password-check", user.pk.hex, window) >= limits["per_account"]:
        _start, left = counters.window(window)
        return Block("account", math.ceil(left))
    return None


def password_check_failed(user: User) -> Block | None:
    limits = _login_settings()
    window = int(limits["window_seconds"])
    if counters.hit("password-check", user.pk.hex, window) >= limits["per_account"]:
        _start, left = counters.window(window)
        return Block("account", math.ceil(left))
    return None


# --- anonymous forms ----------------------------------------------------------------------


def _form_limits(action: str) -> dict[str, int]:
    return dict(settings.FORM_RATE_LIMIT[action])


def form_ip_block(request: HttpRequest, action: str) -> Block | None:
    """Count one submission of `action` from this IP; a Block once over the limit."""
    limits = _form_limits(action)
    window = int(limits["window_seconds"])
    count = counters.hit(f"form-{action}-ip", counters.ip_bucket(client_ip(request)), window)
    if count > limits["per_ip"]:
        _start, left = counters.window(window)
        return Block("form", math.ceil(left))
    return None


def form_email_allowed(action: str, email: str) -> bool:
    """Count one email sent to `email` for `action`; False once over the limit (silently skipped)."""
    limits = _form_limits(action)
    count = counters.hit(f"form-{action}-email", normalize_email(email), int(limits["window_seconds"]))
    return count <= limits["per_email"]
