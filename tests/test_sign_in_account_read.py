"""Issue 14: a password sign-in reads the account once.

The form's lookup (identity.signin.user_for_sign_in) carries, in the same statement, what
the sign-in asks of the account afterwards: whether it has a second factor and whether it is
in a staff group. The throttle, the authentication backend and the sign-in page share it.
What each answer means is unchanged: tests/mfa/, tests/security/test_staff_sign_in.py and
tests/security/test_enumeration.py cover the behaviour; here, that the shared read gives the
same answers as the standalone checks, and that the backend still reads on its own when
it is not handed the form's lookup.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from identity.email_backend import EmailBackend, SignInLookup
from identity.mfa.models import Passkey, TOTPDevice
from identity.mfa.selectors import user_has_mfa
from identity.reauth import SIGN_IN_STAFF_GROUP, is_staff_member
from identity.signin import SIGN_IN_HAS_MFA, _sign_in_read, sign_in_has_second_factor, user_for_sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _account_reads(queries: list[dict[str, Any]]) -> list[str]:
    """The statements reading an account row by its email address."""
    return [
        query["sql"]
        for query in queries
        if re.search(r'FROM "identity_user"', query["sql"]) and '"identity_user"."email" =' in query["sql"]
    ]


def test_the_lookup_carries_no_second_factor_and_no_staff_group(resident: Any) -> None:
    user = user_for_sign_in("  Camille@Example.org ")

    assert user is not None and user.pk == resident.pk
    with CaptureQueriesContext(connection) as queries:
        assert sign_in_has_second_factor(user) is False
        assert is_staff_member(user) is False
    assert len(queries) == 0  # both answered from the lookup


def test_the_lookup_sees_a_confirmed_totp_app_and_a_passkey(make_resident: Any) -> None:
    with_totp = make_resident(email="totp@example.org")
    TOTPDevice.objects.create(user=with_totp, name="app", confirmed=True)
    unconfirmed = make_resident(email="pending@example.org")
    TOTPDevice.objects.create(user=unconfirmed, name="app", confirmed=False)
    with_passkey = make_resident(email="passkey@example.org")
    Passkey.objects.create(
        user=with_passkey,
        name="Clé",
        credential_id="Y3JlZGVudGlhbC1pZA",
        public_key=b"\xa5key",
        user_handle="aGFuZGxl",
        transports=["usb"],
    )

    for resident, expected in ((with_totp, True), (unconfirmed, False), (with_passkey, True)):
        user = user_for_sign_in(resident.email)
        assert user is not None
        assert sign_in_has_second_factor(user) is expected
        assert user_has_mfa(resident) is expected  # the standalone check agrees


@pytest.mark.parametrize("group", ["dpo", "support"])
def test_the_lookup_sees_a_staff_group(make_resident: Any, group: str) -> None:
    resident = make_resident(email="operator@example.org")
    resident.groups.add(Group.objects.get_or_create(name=group)[0])

    user = user_for_sign_in("operator@example.org")

    assert user is not None
    with CaptureQueriesContext(connection) as queries:
        assert is_staff_member(user) is True
    assert len(queries) == 0
    assert is_staff_member(type(resident).objects.get(pk=resident.pk)) is True  # read otherwise


def test_another_group_is_not_staff(make_resident: Any) -> None:
    resident = make_resident(email="member@example.org")
    resident.groups.add(Group.objects.get_or_create(name="newsletter")[0])

    user = user_for_sign_in("member@example.org")

    assert user is not None and is_staff_member(user) is False


def test_no_account_no_address() -> None:
    assert user_for_sign_in("nobody@example.org") is None
    assert user_for_sign_in("   ") is None


def test_an_account_read_otherwise_is_still_asked(resident: Any) -> None:
    """Without the lookup's answers (the account read by the session middleware, say), the
    standalone checks run."""
    plain = type(resident).objects.get(pk=resident.pk)
    TOTPDevice.objects.create(user=resident, name="app", confirmed=True)

    with CaptureQueriesContext(connection) as queries:
        assert sign_in_has_second_factor(plain) is True
    assert len(queries) == 1


def test_the_backend_uses_the_forms_lookup_for_the_same_address(resident: Any) -> None:
    account = user_for_sign_in(resident.email)
    backend = EmailBackend()

    with CaptureQueriesContext(connection) as queries:
        user = backend.authenticate(
            None, username=resident.email, password=PASSWORD, lookup=SignInLookup(resident.email, account)
        )
    assert user is account
    assert _account_reads(queries.captured_queries) == []

    with CaptureQueriesContext(connection) as queries:
        wrong = backend.authenticate(
            None,
            username=resident.email,
            password="not the password",
            lookup=SignInLookup(resident.email, account),
        )
    assert wrong is None


def test_the_backend_reads_the_account_when_the_lookup_is_for_another_address(
    make_resident: Any, resident: Any
) -> None:
    other = make_resident(email="other@example.org")
    backend = EmailBackend()

    with CaptureQueriesContext(connection) as queries:
        user = backend.authenticate(
            None,
            username=resident.email,
            password=PASSWORD,
            lookup=SignInLookup("other@example.org", user_for_sign_in(other.email)),
        )
    assert user is not None and user.pk == resident.pk
    assert len(_account_reads(queries.captured_queries)) == 2  # the lookup above, then its own


def test_the_backend_with_a_lookup_of_no_account_still_checks_a_password(
    settings: Any, resident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown address handed over by the form: the decoy check runs (equal work,
    tests/security/test_enumeration.py), and nothing signs in."""
    calls: list[str] = []
    monkeypatch.setattr("identity.email_backend.password_check_without_account", calls.append)

    user = EmailBackend().authenticate(
        None, username="nobody@example.org", password="guess", lookup=SignInLookup("nobody@example.org", None)
    )

    assert user is None
    assert calls == ["guess"]


def test_a_password_sign_in_reads_the_account_once(client: Client, resident: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    assert response.status_code == 302
    assert len(_account_reads(queries.captured_queries)) == 1
    others = [
        q["sql"] for q in queries.captured_queries if q["sql"] not in _account_reads(queries.captured_queries)
    ]
    assert not [sql for sql in others if '"auth_group"' in sql]  # staff: answered by the same read
    assert not [sql for sql in others if '"mfa_' in sql]  # second factors: likewise


def test_a_wrong_password_reads_the_account_once_too(client: Client, resident: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/connexion/", {"username": resident.email, "password": "not it"})

    assert response.status_code == 200
    assert len(_account_reads(queries.captured_queries)) == 1


def test_a_resident_with_a_second_factor_still_gets_the_second_step(client: Client, resident: Any) -> None:
    TOTPDevice.objects.create(user=resident, name="app", confirmed=True)

    response = client.post("/connexion/", {"username": resident.email, "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"].startswith("/connexion/verification/")
    assert "_auth_user_id" not in client.session


def _as_read(user: Any) -> dict[str, Any]:
    """Everything a read account carries: each field's value and type, the annotations,
    the instance's state."""
    fields = {field.attname: getattr(user, field.attname) for field in type(user)._meta.concrete_fields}
    return {
        "fields": fields,
        "types": {name: type(value) for name, value in fields.items()},
        "mfa": (getattr(user, SIGN_IN_HAS_MFA), type(getattr(user, SIGN_IN_HAS_MFA))),
        "staff": (getattr(user, SIGN_IN_STAFF_GROUP), type(getattr(user, SIGN_IN_STAFF_GROUP))),
        "state": (user._state.db, user._state.adding),
        "deferred": user.get_deferred_fields(),
    }


@pytest.mark.parametrize("kind", ["plain", "totp", "staff", "signed-in-before"])
def test_the_compiled_read_makes_the_account_the_orm_makes(make_resident: Any, kind: str) -> None:
    # user_for_sign_in runs the ORM's statement compiled once; the account it returns must be
    # the one the ORM returns for the same statement, value for value, type for type.
    resident = make_resident(email=f"{kind}@example.org")
    if kind == "totp":
        TOTPDevice.objects.create(user=resident, name="app", confirmed=True)
    if kind == "staff":
        resident.groups.add(Group.objects.get_or_create(name="dpo")[0])
    if kind == "signed-in-before":
        type(resident).objects.filter(pk=resident.pk).update(last_login=timezone.now())

    compiled = user_for_sign_in(f"  {kind.upper()}@Example.org")
    reference = _sign_in_read(f"{kind}@example.org").first()

    assert compiled is not None and reference is not None
    assert _as_read(compiled) == _as_read(reference)
    assert compiled == reference
    assert compiled.check_password(PASSWORD)
    assert sign_in_has_second_factor(compiled) is (kind == "totp")
    assert is_staff_member(compiled) is (kind == "staff")


def test_the_compiled_read_is_one_statement_with_the_address_as_a_parameter(resident: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert user_for_sign_in("nobody'; DROP TABLE identity_user; --@example.org") is None
        user = user_for_sign_in(resident.email)
    assert user is not None and user.pk == resident.pk
    assert len(queries) == 2
    assert type(resident).objects.filter(pk=resident.pk).exists()
