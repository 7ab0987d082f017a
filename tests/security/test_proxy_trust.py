"""Finding 8: the client address (and the request scheme) must not be taken from headers
a client can write, unless the operator said which proxies stand in front of us.

A spoofed `X-Forwarded-For` gives every sign-in attempt a fresh address, which defeats the
per-IP sign-in limit and pollutes the audit trail's address fingerprints; a spoofed
`X-Forwarded-Proto: https` makes a plain-HTTP request look secure. Production therefore
has no default for either setting: the operator states the proxy setup or it does not start.
"""

from __future__ import annotations

import types

import pytest
from django.test import Client, RequestFactory

from common import ratelimit
from identity.models import AuditEvent
from tests.conftest import PASSWORD
from tests.test_settings import PRODUCTION, run_settings

TOO_MANY = "Trop de tentatives"
SHOW = (
    "from django.conf import settings as s; "
    "print(s.TRUSTED_PROXY_COUNT, getattr(s, 'SECURE_PROXY_SSL_HEADER', None))"
)


# --- production refuses to guess the proxy setup -------------------------------------------------


def test_production_without_trusted_proxy_count_refuses_to_start():
    env = dict(PRODUCTION)
    env.pop("TRUSTED_PROXY_COUNT")
    result = run_settings(env, SHOW)
    assert result.returncode != 0, result.stdout
    assert "TRUSTED_PROXY_COUNT" in result.stderr


def test_production_without_behind_tls_proxy_refuses_to_start():
    env = dict(PRODUCTION)
    env.pop("BEHIND_TLS_PROXY")
    result = run_settings(env, SHOW)
    assert result.returncode != 0, result.stdout
    assert "BEHIND_TLS_PROXY" in result.stderr


@pytest.mark.parametrize("value", ["", "-1", "one"])
def test_production_refuses_an_empty_negative_or_garbled_proxy_count(value):
    result = run_settings({**PRODUCTION, "TRUSTED_PROXY_COUNT": value}, SHOW)
    assert result.returncode != 0, result.stdout
    assert "TRUSTED_PROXY_COUNT" in result.stderr


def test_production_uses_exactly_what_the_operator_stated():
    direct = run_settings({**PRODUCTION, "TRUSTED_PROXY_COUNT": "0", "BEHIND_TLS_PROXY": "false"}, SHOW)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.split() == ["0", "None"]
    proxied = run_settings({**PRODUCTION, "TRUSTED_PROXY_COUNT": "2", "BEHIND_TLS_PROXY": "true"}, SHOW)
    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout.strip() == "2 ('HTTP_X_FORWARDED_PROTO', 'https')"


def test_development_trusts_no_header_by_default():
    env = {"DJANGO_ENV": "development"}
    result = run_settings(env, SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "None"]


def test_deploy_check_warns_when_tls_proxy_but_no_forwarding_proxy_counted():
    """A TLS proxy in front but TRUSTED_PROXY_COUNT=0: every resident shares the proxy's
    address, and one attacker's failures lock everyone out of the per-IP limit."""
    env = {**PRODUCTION, "TRUSTED_PROXY_COUNT": "0", "BEHIND_TLS_PROXY": "true"}
    code = (
        "from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING', tags=['security'])"
    )
    result = run_settings(env, code)
    assert result.returncode != 0
    assert "identity.W010" in result.stderr


# --- the per-IP sign-in limit cannot be dodged with a forged header ------------------------------


@pytest.fixture
def limits(settings, monkeypatch):
    # The counters use fixed windows: a run that crossed a window boundary between the
    # attempts would start counting afresh. The counters' clock stands still, just after
    # the start of a window.
    frozen = float(1_900_000_000 - 1_900_000_000 % 900 + 10)
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: frozen))
    settings.LOGIN_RATE_LIMIT = {
        "per_account": 100,
        "per_ip": 5,
        "window_seconds": 900,
        "account_lock_seconds": 300,
    }


def sign_in(email: str, password: str, *, forwarded: str, remote: str = "192.0.2.50"):
    return Client().post(
        "/connexion/",
        {"username": email, "password": password},
        REMOTE_ADDR=remote,
        HTTP_X_FORWARDED_FOR=forwarded,
    )


@pytest.mark.django_db
def test_without_proxies_a_forged_forwarded_for_is_ignored_by_the_ip_limit(limits, settings, resident):
    settings.TRUSTED_PROXY_COUNT = 0
    for number in range(5):
        sign_in(f"target{number}@example.org", "wrong guess", forwarded=f"6.6.6.{number}")
    # A new forged address on every attempt: still the same socket address, still blocked.
    blocked = sign_in(resident.email, PASSWORD, forwarded="7.7.7.7")
    assert blocked.status_code == 200
    assert TOO_MANY in blocked.content.decode()
    assert AuditEvent.objects.filter(event="login.locked", data={"scope": "ip"}).count() == 1


@pytest.mark.django_db
def test_behind_one_proxy_the_right_most_hop_is_the_client(limits, settings, resident):
    settings.TRUSTED_PROXY_COUNT = 1
    # The attacker writes the left part; our proxy appends the address it saw.
    for number in range(5):
        sign_in(f"target{number}@example.org", "wrong guess", forwarded=f"6.6.6.{number}, 198.51.100.9")
    blocked = sign_in(resident.email, PASSWORD, forwarded="7.7.7.7, 198.51.100.9")
    assert TOO_MANY in blocked.content.decode()
    # Another real client behind the same proxy is not affected.
    assert sign_in(resident.email, PASSWORD, forwarded="6.6.6.0, 198.51.100.10").status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.1", "10.0.0.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        (2, "198.51.100.1", "10.0.0.1"),  # fewer hops than stated proxies: the header is not ours
    ],
)
def test_client_ip_takes_the_nth_hop_from_the_right(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert ratelimit.client_ip(request) == expected


# --- X-Forwarded-Proto ---------------------------------------------------------------------------


def test_forwarded_proto_is_not_trusted_unless_stated():
    code = (
        "from django.test import RequestFactory; "
        "print(RequestFactory().get('/', HTTP_X_FORWARDED_PROTO='https').is_secure())"
    )
    stated_no = run_settings({**PRODUCTION, "BEHIND_TLS_PROXY": "false"}, code)
    assert stated_no.returncode == 0, stated_no.stderr
    assert stated_no.stdout.strip() == "False"
    stated_yes = run_settings({**PRODUCTION, "BEHIND_TLS_PROXY": "true"}, code)
    assert stated_yes.returncode == 0, stated_yes.stderr
    assert stated_yes.stdout.strip() == "True"
