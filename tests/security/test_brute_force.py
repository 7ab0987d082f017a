"""Password guessing spread across many accounts and many addresses (issue 16, "Brute force and
enumeration"), through the sign-in page behind one trusted proxy (TRUSTED_PROXY_COUNT=1: the
address is the one the proxy appends to X-Forwarded-For; whatever the attacker writes to its
left is ignored). The real password checks are counted (User.check_password wrapped, still
run): whatever the spread, an account gets at most `per_account` guesses per window plus one
per lock period, an address at most `per_ip`; the resident gets back in after the lock, at
once from a browser that signed in before, or through a password reset."""

from __future__ import annotations

import re
import types
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from common import ratelimit as counters
from identity.models import User
from tests.conftest import PASSWORD, deliver_emails

pytestmark = pytest.mark.django_db

WINDOW = 900
LOCK = 300
PER_ACCOUNT = 4
PER_IP = 6
PROXY = "10.0.0.1"
TOO_MANY = "Trop de tentatives"


class Clock:
    def __init__(self) -> None:
        self.now = float(1_900_000_000 - 1_900_000_000 % WINDOW + 10)  # just after a window starts

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: Any, settings: Any) -> Clock:
    fake = Clock()
    monkeypatch.setattr(counters, "time", types.SimpleNamespace(time=fake.time))
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_RATE_LIMIT = {
        "per_account": PER_ACCOUNT,
        "per_ip": PER_IP,
        "window_seconds": WINDOW,
        "account_lock_seconds": LOCK,
    }
    return fake


@pytest.fixture
def checks(monkeypatch: Any) -> list[str]:
    """The email of every real password check (the check still runs)."""
    seen: list[str] = []
    original = User.check_password

    def counting(self: User, raw_password: str) -> bool:
        seen.append(self.email)
        return original(self, raw_password)

    monkeypatch.setattr(User, "check_password", counting)
    return seen


def attempt(email: str, password: str, address: str, browser: Client | None = None, spoof: str = "") -> Any:
    forwarded = f"{spoof}, {address}" if spoof else address
    return (browser or Client()).post(
        "/connexion/",
        {"username": email, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded,
    )


def signed_in(response: Any) -> bool:
    return response.status_code == 302


def test_one_account_guessed_from_many_addresses_gets_per_account_guesses(
    clock: Clock, checks: list[str], resident: User
) -> None:
    for number in range(60):  # 60 addresses, one guess each, each with a forged left part
        attempt(resident.email, f"guess {number}", f"198.51.100.{number + 1}", spoof=f"6.6.6.{number}")
    assert checks.count(resident.email) == PER_ACCOUNT
    # Even the right password, from a fresh address, is refused until the lock ends…
    response = attempt(resident.email, PASSWORD, "192.0.2.200")
    assert TOO_MANY in response.content.decode()
    assert checks.count(resident.email) == PER_ACCOUNT
    # …which is short: LOCK seconds, then the resident signs in.
    clock.now += LOCK + 1
    assert signed_in(attempt(resident.email, PASSWORD, "192.0.2.200"))


def test_guesses_through_the_window_are_one_per_lock_period(
    clock: Clock, checks: list[str], resident: User
) -> None:
    for minute in range(WINDOW // 60 - 1):  # a guess a minute from ever-new addresses, one window long
        attempt(resident.email, f"guess {minute}", f"203.0.113.{minute + 1}")
        clock.now += 60
    # PER_ACCOUNT, then one more each time the lock ran out inside the window.
    assert checks.count(resident.email) <= PER_ACCOUNT + (WINDOW // LOCK)


def test_many_accounts_from_one_address_get_per_ip_guesses(
    clock: Clock, checks: list[str], make_resident: Any
) -> None:
    residents = [make_resident(f"habitant{number}@example.org") for number in range(20)]
    for round_ in range(3):
        for target in residents:
            # The attacker writes a new address to the left at each request: ignored.
            attempt(target.email, f"guess {round_}", "192.0.2.66", spoof=f"10.9.{round_}.{len(checks)}")
    assert len(checks) == PER_IP
    assert TOO_MANY in attempt(residents[-1].email, PASSWORD, "192.0.2.66").content.decode()
    # The accounts themselves are not locked: each resident signs in from its own address.
    assert all(signed_in(attempt(target.email, PASSWORD, "192.0.2.67")) for target in residents[:3])


def test_many_accounts_from_many_addresses_stay_bounded_per_account_and_per_address(
    clock: Clock, checks: list[str], make_resident: Any
) -> None:
    residents = [make_resident(f"cible{number}@example.org") for number in range(8)]
    addresses = [f"198.51.100.{number}" for number in range(1, 41)]
    per_address: dict[str, int] = {}
    for number in range(400):  # a botnet: every (address, account) pair in turn
        address = addresses[number % len(addresses)]
        target = residents[(number // len(addresses) + number) % len(residents)]
        before = len(checks)
        attempt(target.email, f"guess {number}", address)
        per_address[address] = per_address.get(address, 0) + len(checks) - before
    for target in residents:
        assert checks.count(target.email) <= PER_ACCOUNT
    assert max(per_address.values()) <= PER_IP
    assert len(checks) <= PER_ACCOUNT * len(residents)


def test_a_browser_that_signed_in_before_is_not_locked_out(clock: Clock, resident: User) -> None:
    own_browser = Client()
    assert signed_in(attempt(resident.email, PASSWORD, "192.0.2.10", browser=own_browser))
    own_browser.post("/deconnexion/")
    for number in range(PER_ACCOUNT + 5):
        attempt(resident.email, "guess", f"198.51.100.{number + 1}")
    assert TOO_MANY in attempt(resident.email, PASSWORD, "192.0.2.11").content.decode()
    # The known-device cookie: the resident's own browser still gets in during the lock.
    assert signed_in(attempt(resident.email, PASSWORD, "192.0.2.10", browser=own_browser))


def test_a_password_reset_lets_the_resident_in_at_once(clock: Clock, resident: User) -> None:
    for number in range(PER_ACCOUNT + 2):
        attempt(resident.email, "guess", f"198.51.100.{number + 1}")
    assert TOO_MANY in attempt(resident.email, PASSWORD, "192.0.2.12").content.decode()
    browser = Client()
    browser.post(
        "/mot-de-passe-oublie/",
        {"email": resident.email},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="192.0.2.12",
    )
    deliver_emails()
    link = re.search(r"https?://\S+/mot-de-passe-oublie/\S+/\S+/", mail.outbox[-1].body)
    assert link is not None
    form_page = browser.get(urlsplit(link.group(0)).path, follow=True)
    new_password = "Une toute nouvelle phrase 2026"
    done = browser.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else urlsplit(link.group(0)).path,
        {"new_password": new_password, "new_password_confirm": new_password},
    )
    assert done.status_code == 302, done.content.decode()[:2000]
    assert signed_in(attempt(resident.email, new_password, "192.0.2.12"))
