"""Whether an address has an account is never told by sign-in, registration or password reset
(issue 16, "Brute force and enumeration"): for an existing account and an unknown address the
answers are the same (status, redirect, headers, cookies, the page apart from CSRF tokens and
the address typed in), the requester sees the same emails (one to the typed address on
registration, none on sign-in; a reset link goes only to an owner's mailbox), and the
password work is the same: the Argon2 runs are counted by a real hasher (the suite's own,
wrapped; nothing of the sign-in is replaced), for wrong, right, non-normalised passwords and
for accounts without a password. A wide CPU-time ratio at the production cost is a
secondary check only."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import get_hasher
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from identity import hashers
from identity.models import User
from tests.conftest import PASSWORD, deliver_emails

pytestmark = pytest.mark.django_db

UNKNOWN = "personne.inconnue@example.org"


class CountingArgon2idHasher(hashers.FastTestArgon2idHasher):
    """The suite's Argon2id hasher, counting each Argon2 computation it runs."""

    runs: list[str] = []

    def encode(self, password: str, salt: str) -> str:
        self.runs.append("encode")
        return super().encode(password, salt)

    def _verify_exact(self, password: str, encoded: str) -> bool:
        self.runs.append("verify")
        return super()._verify_exact(password, encoded)


@pytest.fixture
def argon2_runs(settings: Any) -> list[str]:
    settings.PASSWORD_HASHERS = [
        "tests.security.test_enumeration.CountingArgon2idHasher",
        *settings.PASSWORD_HASHERS[1:],
    ]
    CountingArgon2idHasher.runs = []
    return CountingArgon2idHasher.runs


def _same_page(one: Any, other: Any, typed: tuple[str, str]) -> None:
    """Same status, headers, cookies and body, apart from CSRF tokens, request ids and the address."""
    assert one.status_code == other.status_code

    def body(response: Any, address: str) -> str:
        text = response.content.decode()
        text = text.replace(address, "ADDRESS") if address else text
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", text)

    assert body(one, typed[0]) == body(other, typed[1])

    def headers(response: Any) -> dict[str, str]:
        return {
            name: value
            for name, value in response.headers.items()
            # The request id is per request; Expires is "now" (never_cache), a second apart at most.
            if name not in ("X-Request-ID", "Content-Length", "Expires")
        }

    assert headers(one) == headers(other)
    assert ("Expires" in one.headers) == ("Expires" in other.headers)

    def cookies(response: Any) -> dict[str, dict[str, Any]]:
        # Every attribute but `expires`, a date computed from "now" (max-age is compared).
        return {
            name: {k: v for k, v in morsel.items() if v and k != "expires"}
            for name, morsel in response.cookies.items()
        }

    assert cookies(one) == cookies(other)


def _sign_in(email: str, password: str = "not the password") -> Any:
    return Client().post("/connexion/", {"username": email, "password": password}, REMOTE_ADDR="198.51.100.5")


# --- sign-in -------------------------------------------------------------------------------


def test_a_failed_sign_in_answers_the_same_for_an_existing_and_an_unknown_address(resident: User) -> None:
    existing, unknown = _sign_in(resident.email), _sign_in(UNKNOWN)
    assert existing.status_code == 200
    assert "Adresse e-mail ou mot de passe incorrect" in existing.content.decode()
    _same_page(existing, unknown, (resident.email, UNKNOWN))
    assert deliver_emails() == 0 and mail.outbox == []


def test_the_lockout_answers_the_same_for_an_existing_and_an_unknown_address(
    settings: Any, resident: User
) -> None:
    settings.LOGIN_RATE_LIMIT = {**settings.LOGIN_RATE_LIMIT, "per_account": 3, "per_ip": 1000}
    for _ in range(3):
        _sign_in(resident.email)
        _sign_in(UNKNOWN)
    existing, unknown = _sign_in(resident.email), _sign_in(UNKNOWN)
    assert "Trop de tentatives" in existing.content.decode()
    _same_page(existing, unknown, (resident.email, UNKNOWN))


@pytest.mark.parametrize(
    "password",
    ["not the password", PASSWORD, "e\u0301te\u0301 \ufb01n de partie"],  # the last one NFKC changes
    ids=["wrong", "right", "not-normalised"],
)
def test_sign_in_runs_the_same_argon2_work_whether_or_not_the_account_exists(
    argon2_runs: list[str], make_resident: Any, password: str
) -> None:
    resident = make_resident("camille@example.org")  # hashed by the counting hasher
    without_password = make_resident("fc.seulement@example.org")
    without_password.set_unusable_password()
    without_password.save(update_fields=["password"])
    inactive = make_resident("parti@example.org")
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])
    hashers.password_check_without_account("warm-up")  # the decoy hash, made once per process
    work: dict[str, list[str]] = {}
    for label, email in (
        ("existing", resident.email),
        ("unknown", UNKNOWN),
        ("no password", without_password.email),
        ("inactive", inactive.email),
    ):
        del argon2_runs[:]
        _sign_in(email, password)
        work[label] = list(argon2_runs)
    # A right password of an existing account signs in: one verification. Every other case
    # does exactly the verification a wrong password of an existing account does.
    expected = ["verify", "verify"] if password.startswith("e\u0301") else ["verify"]
    assert work == dict.fromkeys(work, expected), work


def test_the_decoy_is_made_at_the_hashers_own_cost(argon2_runs: list[str], resident: User) -> None:
    hasher = get_hasher("default")
    assert isinstance(hasher, CountingArgon2idHasher)
    hashers._DECOYS.clear()
    hashers.password_check_without_account("x")
    decoy = next(iter(hashers._DECOYS.values()))
    assert hasher.decode(decoy)["memory_cost"] == hasher.memory_cost
    assert hasher.decode(decoy)["time_cost"] == hasher.time_cost
    assert hasher.decode(decoy)["parallelism"] == hasher.parallelism
    assert not hasher.must_update(decoy) and not hasher.must_update(resident.password)


def test_at_the_production_cost_cpu_time_is_alike_for_both(settings: Any, make_resident: Any) -> None:
    """Secondary: real Argon2id (m=19 MiB, t=2); a wide bound, never a speed threshold."""
    settings.PASSWORD_HASHERS = ["identity.hashers.Argon2idHasher", *settings.PASSWORD_HASHERS[1:]]
    resident = make_resident("camille@example.org")
    assert resident.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    _sign_in(resident.email), _sign_in(UNKNOWN)  # warm-up (and the decoy)
    spent = {resident.email: 0.0, UNKNOWN: 0.0}
    for _ in range(6):
        for email in spent:
            start = time.thread_time()
            _sign_in(email)
            spent[email] += time.thread_time() - start
    ratio = spent[resident.email] / spent[UNKNOWN]
    assert 0.5 < ratio < 2, spent


# --- registration ----------------------------------------------------------------------------


def _register(email: str) -> Any:
    return Client().post(
        "/inscription/",
        {
            "email": email,
            "password": "Loire et Erdre 2026 !",
            "given_name": "Camille",
            "family_name": "Martin",
        },
        REMOTE_ADDR="198.51.100.6",
    )


def test_registration_answers_the_same_and_emails_the_typed_address_either_way(
    argon2_runs: list[str], resident: User
) -> None:
    del argon2_runs[:]
    existing = _register(resident.email)
    existing_runs = list(argon2_runs)
    del argon2_runs[:]
    new = _register(UNKNOWN)
    assert existing_runs == list(argon2_runs) == ["encode"]
    assert existing.status_code == 302
    _same_page(existing, new, (resident.email, UNKNOWN))
    deliver_emails()
    # One email each, to the address typed: the owner is told someone tried; the new
    # address gets its verification link. Both in the resident's language, same sender.
    assert sorted(message.to[0] for message in mail.outbox) == sorted([resident.email, UNKNOWN])
    assert len({message.from_email for message in mail.outbox}) == 1
    assert User.objects.filter(email=resident.email).count() == 1


# --- password reset --------------------------------------------------------------------------


def _reset(email: str) -> Any:
    return Client().post("/mot-de-passe-oublie/", {"email": email}, REMOTE_ADDR="198.51.100.7")


def test_password_reset_answers_the_same_and_only_an_owner_gets_a_link(
    argon2_runs: list[str], resident: User
) -> None:
    del argon2_runs[:]
    with CaptureQueriesContext(connection) as existing_sql:
        existing = _reset(resident.email)
    with CaptureQueriesContext(connection) as unknown_sql:
        unknown = _reset(UNKNOWN)
    assert argon2_runs == []
    # The same writes either way (an audit row, one email queued), so timing tells nothing.
    assert _inserts(existing_sql) == _inserts(unknown_sql) != []
    assert existing.status_code == 302 and existing["Location"] == unknown["Location"]
    _same_page(existing, unknown, (resident.email, UNKNOWN))
    done_existing = Client().get(existing["Location"])
    done_unknown = Client().get(unknown["Location"])
    _same_page(done_existing, done_unknown, ("", ""))
    deliver_emails()
    # Each typed mailbox gets one email; only the owner's holds a reset link.
    assert sorted(message.to[0] for message in mail.outbox) == sorted([resident.email, UNKNOWN])
    links = [
        message.to[0]
        for message in mail.outbox
        if re.search(r"/mot-de-passe-oublie/[^/\s]+/[^/\s]+/", message.body)
    ]
    assert links == [resident.email]


def _inserts(queries: CaptureQueriesContext) -> list[str]:
    """The tables a request inserted into, in order."""
    found = (re.match(r'\s*INSERT INTO "?(\w+)', query["sql"]) for query in queries.captured_queries)
    return [match.group(1) for match in found if match]


def test_the_page_after_an_accepted_form_never_names_the_address(resident: User) -> None:
    for response in (_reset(resident.email), _register(resident.email)):
        page = Client().get(response["Location"]).content.decode()
        assert resident.email not in page
    assert django_settings.PASSWORD_RESET_TIMEOUT > 0
