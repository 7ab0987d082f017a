"""Throttling of sign-in and of the anonymous forms (identity.ratelimit, on common.ratelimit's counters).

Time is moved by replacing the `time` module seen by common.ratelimit only (the counters' clock).
"""

from __future__ import annotations

import math
import types
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.core.cache import caches
from django.db import connection
from django.test import Client, RequestFactory

from common import ratelimit as counters
from identity import ratelimit
from identity.models import AuditEvent, User
from tests.conftest import PASSWORD, deliver_emails

pytestmark = pytest.mark.django_db

WINDOW = 900
LOCK = 300
TOO_MANY = "Trop de tentatives"


class Clock:
    def __init__(self) -> None:
        # Just after the start of a window, so that moving by LOCK stays inside it.
        self.now = float(1_900_000_000 - 1_900_000_000 % WINDOW + 10)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(counters, "time", types.SimpleNamespace(time=fake.time))
    return fake


@pytest.fixture
def limits(settings, clock):
    settings.LOGIN_RATE_LIMIT = {
        "per_account": 3,
        "per_ip": 5,
        "window_seconds": WINDOW,
        "account_lock_seconds": LOCK,
    }
    return settings.LOGIN_RATE_LIMIT


@pytest.fixture
def password_checks(monkeypatch):
    """Counts real password checks (the check itself still runs)."""
    calls = []
    original = User.check_password

    def counting(self, raw_password):
        calls.append(self.pk)
        return original(self, raw_password)

    monkeypatch.setattr(User, "check_password", counting)
    return calls


def attempt(browser: Client, email: str, password: str, ip: str = "203.0.113.7"):
    return browser.post("/connexion/", {"username": email, "password": password}, REMOTE_ADDR=ip)


def signed_in(browser: Client) -> bool:
    return "_auth_user_id" in browser.session


# --- client address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.1", "10.0.0.1"),  # no proxy trusted: the header is the client's word
        (1, "198.51.100.1", "198.51.100.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # spoofed left part ignored
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        (2, "198.51.100.1", "10.0.0.1"),  # fewer hops than proxies: do not trust it
        (1, "not-an-ip", "10.0.0.1"),
        (1, "", "10.0.0.1"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_honours_trusted_proxy_count(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert counters.client_ip(request) == expected


def test_counter_increments_and_keeps_its_window(limits, clock, settings):
    clock.now = float(1_900_000_000 - 1_900_000_000 % 3600 + 10)  # 3590 s left in the hour
    assert [counters.hit("test", "x", 3600) for _ in range(3)] == [1, 2, 3]
    assert counters.count("test", "x", 3600) == 3
    if not settings.CACHES["ratelimit"]["BACKEND"].endswith("DatabaseCache"):
        return  # Redis: incr keeps the key's TTL natively; the check below is the database cache's
    # The database cache's generic incr() would re-set the default 300 s timeout.
    cache = caches["ratelimit"]
    key = cache.make_and_validate_key(counters.counter_key("test", "x", 3600))

    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM cum_ratelimit WHERE cache_key = %s", [key])
        (expires,) = cursor.fetchone()
    expires_at = expires if not isinstance(expires, str) else datetime.fromisoformat(expires)
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    assert 3500 < (expires_at - datetime.now(UTC)).total_seconds() <= 3590


# --- per account ----------------------------------------------------------------------------


def test_account_is_locked_after_too_many_failures(limits, resident, password_checks):
    attacker = Client()
    for _ in range(2):
        response = attempt(attacker, resident.email, "wrong guess")
        assert "Adresse e-mail ou mot de passe incorrect" in response.content.decode()
    response = attempt(attacker, resident.email, "wrong guess")
    html = response.content.decode()
    assert TOO_MANY in html
    assert "5 minutes" in html
    assert 'role="alert"' in html

    checks_before = len(password_checks)
    response = attempt(Client(), resident.email, PASSWORD, ip="198.51.100.99")  # even the right one
    assert TOO_MANY in response.content.decode()
    assert len(password_checks) == checks_before  # refused without looking at the password
    assert not signed_in(attacker)


def test_lockout_is_audited_with_ids_only(limits, resident):
    for _ in range(3):
        attempt(Client(), resident.email, "wrong guess")
    event = AuditEvent.objects.get(event="login.locked")
    assert event.subject_user_id == resident.pk
    assert event.data == {"scope": "account"}
    assert event.ip_hash and "203.0.113.7" not in event.ip_hash
    assert resident.email not in str(event.data)


def test_unknown_addresses_are_locked_the_same_way(limits, db):
    for _ in range(3):
        response = attempt(Client(), "nobody@example.org", "wrong guess")
    assert TOO_MANY in response.content.decode()


def test_account_lock_expires(limits, clock, resident):
    for _ in range(3):
        attempt(Client(), resident.email, "wrong guess")
    clock.advance(LOCK - 60)
    assert TOO_MANY in attempt(Client(), resident.email, PASSWORD).content.decode()
    clock.advance(61)
    browser = Client()
    assert attempt(browser, resident.email, PASSWORD).status_code == 302
    assert signed_in(browser)


def test_wait_time_is_shown_in_minutes(limits, clock, resident):
    for _ in range(3):
        attempt(Client(), resident.email, "wrong guess")
    clock.advance(LOCK - 90)  # 90 s left
    assert "2 minutes" in attempt(Client(), resident.email, PASSWORD).content.decode()
    clock.advance(40)  # 50 s left
    assert "1 minute " in attempt(Client(), resident.email, PASSWORD).content.decode()


def test_success_clears_the_account_counter(limits, resident):
    for _ in range(2):
        attempt(Client(), resident.email, "wrong guess")
    assert attempt(Client(), resident.email, PASSWORD).status_code == 302
    for _ in range(2):
        response = attempt(Client(), resident.email, "wrong guess")
        assert TOO_MANY not in response.content.decode()


def test_new_window_starts_from_zero(limits, clock, resident):
    for _ in range(2):
        attempt(Client(), resident.email, "wrong guess")
    clock.advance(WINDOW)
    for _ in range(2):
        assert TOO_MANY not in attempt(Client(), resident.email, "wrong guess").content.decode()


# --- known devices ------------------------------------------------------------------------


def test_known_device_is_not_locked_out_by_an_attacker(limits, resident):
    home = Client()
    assert attempt(home, resident.email, PASSWORD).status_code == 302
    assert "known_device" in home.cookies
    home.post("/deconnexion/")

    for _ in range(5):
        attempt(Client(), resident.email, "wrong guess", ip="192.0.2.66")
    assert TOO_MANY in attempt(Client(), resident.email, PASSWORD, ip="192.0.2.66").content.decode()

    response = attempt(home, resident.email, PASSWORD)
    assert response.status_code == 302
    assert signed_in(home)
    assert AuditEvent.objects.filter(event="login.succeeded", data__known_device=True).exists()


def test_known_device_has_its_own_limit(limits, resident, password_checks):
    home = Client()
    attempt(home, resident.email, PASSWORD)
    home.post("/deconnexion/")
    for _ in range(2):
        assert TOO_MANY not in attempt(home, resident.email, "typo").content.decode()
    assert TOO_MANY in attempt(home, resident.email, "typo").content.decode()
    checks = len(password_checks)
    assert TOO_MANY in attempt(home, resident.email, PASSWORD).content.decode()
    assert len(password_checks) == checks
    assert AuditEvent.objects.filter(event="login.locked", data={"scope": "device"}).exists()
    # The device's failures did not lock the account for other browsers.
    assert attempt(Client(), resident.email, PASSWORD).status_code == 302


def test_forged_or_foreign_device_cookie_does_not_bypass_the_lock(limits, resident, make_resident):
    other = make_resident("other@example.org")
    foreign = Client()
    attempt(foreign, other.email, PASSWORD)  # a real device cookie, for another account
    for _ in range(3):
        attempt(Client(), resident.email, "wrong guess")

    assert TOO_MANY in attempt(foreign, resident.email, PASSWORD).content.decode()
    forged = Client()
    forged.cookies["known_device"] = foreign.cookies["known_device"].value.replace(":", ";", 1) + "x"
    assert TOO_MANY in attempt(forged, resident.email, PASSWORD).content.decode()


def test_device_cookie_remembers_several_accounts(limits, resident, make_resident):
    other = make_resident("other@example.org")
    shared = Client()
    attempt(shared, resident.email, PASSWORD)
    attempt(shared, other.email, PASSWORD)
    shared.post("/deconnexion/")
    for _ in range(3):
        attempt(Client(), resident.email, "wrong guess")
    assert attempt(shared, resident.email, PASSWORD).status_code == 302


# --- per IP -------------------------------------------------------------------------------


def test_ip_is_limited_across_accounts(limits, resident):
    for number in range(5):
        attempt(Client(), f"target{number}@example.org", "wrong guess", ip="192.0.2.10")
    response = attempt(Client(), resident.email, PASSWORD, ip="192.0.2.10")
    assert TOO_MANY in response.content.decode()
    assert AuditEvent.objects.filter(event="login.locked", data={"scope": "ip"}).count() == 1
    # Another address is not affected, and neither is the account.
    assert attempt(Client(), resident.email, PASSWORD, ip="192.0.2.11").status_code == 302


def test_ip_limit_uses_forwarded_address_behind_trusted_proxy(limits, settings, resident):
    settings.TRUSTED_PROXY_COUNT = 1
    for number in range(5):
        Client().post(
            "/connexion/",
            {"username": f"t{number}@example.org", "password": "x"},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"6.6.6.{number}, 192.0.2.20",
        )
    blocked = Client().post(
        "/connexion/",
        {"username": resident.email, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.20",
    )
    assert TOO_MANY in blocked.content.decode()
    other_client = Client().post(
        "/connexion/",
        {"username": resident.email, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.21",
    )
    assert other_client.status_code == 302


def test_successful_sign_in_does_not_reset_the_ip_counter(limits, resident):
    for number in range(4):
        attempt(Client(), f"target{number}@example.org", "wrong guess", ip="192.0.2.30")
    assert attempt(Client(), resident.email, PASSWORD, ip="192.0.2.30").status_code == 302
    attempt(Client(), "target9@example.org", "wrong guess", ip="192.0.2.30")
    assert TOO_MANY in attempt(Client(), "target10@example.org", "x", ip="192.0.2.30").content.decode()


def test_ipv6_clients_are_counted_per_64(limits, db):
    for number in range(5):
        attempt(Client(), f"t{number}@example.org", "x", ip=f"2001:db8:1:2::{number + 1}")
    assert TOO_MANY in attempt(Client(), "z@example.org", "x", ip="2001:db8:1:2::ffff").content.decode()
    assert TOO_MANY not in attempt(Client(), "z@example.org", "x", ip="2001:db8:1:3::1").content.decode()


# --- anonymous forms ----------------------------------------------------------------------


@pytest.fixture
def form_limits(settings, clock):
    settings.FORM_RATE_LIMIT = {
        action: {"per_ip": 2, "per_email": 2, "window_seconds": 3600}
        for action in ("register", "resend", "password_reset")
    }


def test_password_reset_is_limited_per_ip(form_limits, clock, db):
    for number in range(2):
        response = Client().post("/mot-de-passe-oublie/", {"email": f"a{number}@example.org"})
        assert response.status_code == 302
    response = Client().post("/mot-de-passe-oublie/", {"email": "a9@example.org"})
    assert response.status_code == 200
    assert TOO_MANY in response.content.decode()
    minutes_left = math.ceil((3600 - clock.now % 3600) / 60)
    assert f"{minutes_left} minutes" in response.content.decode()


def test_password_reset_emails_to_one_address_are_capped_silently(form_limits, resident):
    answers = []
    for number in range(3):
        answers.append(
            Client().post("/mot-de-passe-oublie/", {"email": resident.email}, REMOTE_ADDR=f"192.0.2.{number}")
        )
    assert [answer["Location"] for answer in answers] == ["/mot-de-passe-oublie/envoye/"] * 3
    assert deliver_emails() == 2
    assert len(mail.outbox) == 2


def test_registration_is_limited_per_ip(form_limits, db):
    data = {"given_name": "A", "family_name": "B", "password": PASSWORD}
    for number in range(2):
        assert Client().post("/inscription/", {**data, "email": f"n{number}@example.org"}).status_code == 302
    response = Client().post("/inscription/", {**data, "email": "n9@example.org"})
    assert TOO_MANY in response.content.decode()
    assert not User.objects.filter(email="n9@example.org").exists()


def test_resend_is_limited_per_ip(form_limits, db):
    for number in range(2):
        assert Client().post("/inscription/renvoyer/", {"email": f"r{number}@example.org"}).status_code == 302
    response = Client().post("/inscription/renvoyer/", {"email": "r9@example.org"})
    assert TOO_MANY in response.content.decode()


def test_form_limits_use_the_default_settings(db):
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.50")
    blocks = [ratelimit.form_ip_block(request, "register") for _ in range(11)]
    assert blocks[:10] == [None] * 10
    assert blocks[10] is not None and blocks[10].scope == "form"
