"""The resident read of userinfo and introspection as a PL/pgSQL function (issue 14, W3;
migration identity 0011).

On PostgreSQL identity.oidc.access_tokens reads a resident token's row, its resident and (at
userinfo) the consent gate in one statement calling `oidc_token_resident` and `consent_gate`;
the plain statement (three joins, or five with the gate's) stays, for SQLite and as the
reference here: for every state of the token, the resident and the sharing's consent, both
forms must give the same resident (every selected column) and the same answer of the gate.
Correctness only: speed is measured by bench/oidc.py (bench/README.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent.models import ConsentState, Purpose
from consent.selectors import consent_is_granted
from consent.services import consent_record
from identity.models import User
from identity.oidc import access_tokens
from identity.oidc import claims as claims_registry
from identity.oidc.models import AccessToken
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import OIDCFlow
from tests.oidc.conftest import complete_flow, userinfo

pytestmark = pytest.mark.django_db
POSTGRESQL = connection.vendor == "postgresql"
function_only = pytest.mark.skipif(not POSTGRESQL, reason="the PL/pgSQL function of migration identity 0011")

SCOPES = ["openid", "profile", "email"]
UNKNOWN = "no-such-purpose"


def _columns(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    names = {"id", "is_active", *claims_registry.resident_user_fields()}
    return {name: getattr(user, User._meta.get_field(name).attname) for name in names}


def _both(token: str, code: str | None) -> tuple[Any, Any]:
    """(function form, plain statement), each as (the resident's selected columns, the gate)."""
    function_user, function_granted = access_tokens._read_resident(token, code)
    plain_user, plain_granted = access_tokens._read_resident(token, code, plain=True)
    return (_columns(function_user), function_granted), (_columns(plain_user), plain_granted)


def _record(resident: Any, code: str, event_type: str, valid_until: Any = None) -> None:
    consent_record(
        user=resident,
        purpose_code=code,
        event_type=event_type,
        collection_method="web_form",
        valid_until=valid_until,
    )


@pytest.fixture
def shared(make_client: Any, signed_in: Any) -> tuple[str, str]:
    """(a resident's access token, its sharing's purpose code): consent given by the flow."""
    rp = make_client(name="Médiathèques")
    tokens = complete_flow(OIDCFlow(signed_in, rp))
    code = sharing_purpose_code(rp.client, SCOPES)
    assert code
    return tokens["access_token"], code


def _same(token: str, codes: list[str | None]) -> list[Any]:
    answers = []
    for code in codes:
        function, plain = _both(token, code)
        assert function == plain, code
        answers.append(function)
    return answers


@function_only
def test_the_function_reads_as_the_plain_statement_for_every_consent_state(
    shared: Any, resident: Any
) -> None:
    token, code = shared
    now = timezone.now()
    answers = []
    # given by the flow; withdrawn; given again, expiring tomorrow; refused.
    answers += _same(token, [None, code, UNKNOWN])
    _record(resident, code, "withdrawn")
    answers += _same(token, [code])
    _record(resident, code, "given", now + timedelta(days=1))
    answers += _same(token, [code])
    _record(resident, code, "refused")
    answers += _same(token, [code])
    # given, then its end passes (recorded in force, read after it).
    with mock.patch.object(timezone, "now", return_value=now - timedelta(days=2)):
        _record(resident, code, "given", now - timedelta(days=1))
    answers += _same(token, [code])
    # given, then a material notice asks for renewal.
    _record(resident, code, "given")
    answers += _same(token, [code])
    ConsentState.objects.filter(purpose__code=code).update(renewal_required=True)
    answers += _same(token, [code])
    # given, but the purpose retired.
    ConsentState.objects.filter(purpose__code=code).update(renewal_required=False)
    answers += _same(token, [code])
    Purpose.objects.filter(code=code).update(is_active=False)
    answers += _same(token, [code])
    granted = [granted for _user, granted in answers]
    assert granted == [None, True, None, False, True, False, False, True, False, True, False]
    assert all(user is not None and user["id"] == resident.pk for user, _granted in answers)
    Purpose.objects.filter(code=code).update(is_active=True)
    assert answers[-2][1] is consent_is_granted(user=resident, purpose_code=code)


def _spoiled(token: str, resident: Any, state: str) -> str:
    """The token once `state` holds: its row revoked, expired or pointing elsewhere, its resident
    inactive, or the token itself altered (the token to present)."""
    checksum = access_tokens.checksum(token)
    if state == "revoked":
        AccessToken.objects.filter(token_checksum=checksum).delete()
    elif state == "expired":
        past = timezone.now() - timedelta(seconds=1)
        AccessToken.objects.filter(token_checksum=checksum).update(expires=past)
    elif state == "inactive":
        User.objects.filter(pk=resident.pk).update(is_active=False)
    elif state == "altered":
        return token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    else:
        AccessToken.objects.filter(token_checksum=checksum).update(token_checksum="0" * 64)
    return token


@function_only
@pytest.mark.parametrize("state", ["revoked", "expired", "inactive", "altered", "another_token"])
def test_the_function_finds_no_resident_where_the_plain_statement_finds_none(
    shared: Any, resident: Any, state: str
) -> None:
    token, code = shared
    token = _spoiled(token, resident, state)
    for asked in (None, code, UNKNOWN):
        function, plain = _both(token, asked)
        assert function == plain == (None, None), (state, asked)


@function_only
def test_userinfo_reads_by_one_call_of_the_functions(shared: Any) -> None:
    token, _code = shared
    with CaptureQueriesContext(connection) as queries:
        response = userinfo(token)
    assert response.status_code == 200
    assert "email" in response.json()
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 1, statements
    assert "oidc_token_resident(" in statements[0] and "consent_gate(" in statements[0]
    assert "identity_accesstoken" not in statements[0]


def test_the_plain_statement_is_the_form_without_the_functions(shared: Any) -> None:
    """SQLite runs the plain statement (no functions there); on PostgreSQL it is asked for."""
    plain = access_tokens._resident_token_query(connection, with_gate=True, plain=True)
    assert not plain.function and "oidc_token_resident" not in plain.sql
    used = access_tokens._resident_token_query(connection, with_gate=True)
    assert used.function is POSTGRESQL
    token, code = shared
    user, granted = access_tokens._read_resident(token, code)
    assert user is not None and granted is True


# Date-times around the epoch, leap days, microsecond edges, far past and future.
_INSTANTS = [
    "2026-12-07 00:52:03.123456+00",
    "1970-01-01 00:00:00+00",
    "1969-12-31 23:59:59.999999+00",
    "1970-01-01 00:00:00.000001+00",
    "2000-02-29 12:00:00.5+00",
    "2026-03-29 01:30:00.000999+02",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "2038-01-19 03:14:08.000001+00",
]


@function_only
def test_date_times_read_as_epochs_are_djangos_date_times() -> None:
    """The function form selects date-time columns as microseconds since 1970 and makes them
    back into datetimes: the very values (instant, tzinfo) Django's loader gives."""
    for text in _INSTANTS:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT %s::timestamptz, {access_tokens._epoch_micros('%s::timestamptz')}", [text, text]
            )
            loaded, micros = cursor.fetchone()
        ours = access_tokens._from_epoch_micros(micros)
        assert ours == loaded and ours.tzinfo is loaded.tzinfo and repr(ours) == repr(loaded), text
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {access_tokens._epoch_micros('NULL::timestamptz')}")
        assert access_tokens._from_epoch_micros(cursor.fetchone()[0]) is None


@function_only
@pytest.mark.parametrize("instant", _INSTANTS[:6])
def test_the_residents_date_times_are_the_plain_statements(shared: Any, resident: Any, instant: str) -> None:
    token, code = shared
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE "identity_user" SET "updated_at" = %s::timestamptz WHERE id = %s', [instant, resident.pk]
        )
    query = access_tokens._resident_token_query(connection, with_gate=True)
    assert query.epochs, "the function form reads updated_at as an epoch"
    for asked in (None, code):
        function_user, _ = access_tokens._read_resident(token, asked)
        plain_user, _ = access_tokens._read_resident(token, asked, plain=True)
        mine, theirs = function_user.updated_at, plain_user.updated_at
        assert mine == theirs and mine.tzinfo is theirs.tzinfo and repr(mine) == repr(theirs)
        assert mine == User.objects.get(pk=resident.pk).updated_at


def test_date_times_are_read_by_djangos_loader_outside_utc(settings: Any) -> None:
    """Another connection time zone: no epochs (Django's loader, as before)."""
    settings.USE_TZ = False
    try:
        query = access_tokens._resident_token_query(connection, with_gate=False)
        assert query.epochs == () and "extract(" not in query.sql
    finally:
        settings.USE_TZ = True


# --- introspection's lean read (live_token): only the checks' columns -------------------------


def _concrete_attnames() -> set[str]:
    return {field.attname for field in User._meta.concrete_fields}


@pytest.mark.parametrize("plain", [False, True])
def test_introspections_read_is_userinfos_resident_with_only_id_and_is_active(
    shared: Any, resident: Any, plain: bool
) -> None:
    """The lean statement finds the same resident as userinfo's; its other fields are deferred
    and load, when touched, the very values the full read gave."""
    token, _code = shared
    query = access_tokens._resident_token_query(connection, with_gate=False, plain=plain, lean=True)
    assert query.size == 2 and query.epochs == ()
    assert query.function is (POSTGRESQL and not plain)
    lean, lean_granted = access_tokens._read_resident(token, None, plain=plain, lean=True)
    full, full_granted = access_tokens._read_resident(token, None, plain=plain)
    assert lean_granted is full_granted is None
    assert lean is not None and full is not None
    assert (lean.pk, lean.is_active) == (full.pk, full.is_active) == (resident.pk, True)
    assert lean.get_deferred_fields() == _concrete_attnames() - {"id", "is_active"}
    selected = {User._meta.get_field(name).attname for name in _columns(full) or ()}
    assert full.get_deferred_fields() == _concrete_attnames() - selected
    assert not lean._state.adding and lean._state.db == full._state.db
    assert _columns(lean) == _columns(full)  # the deferred ones loaded from the row


@pytest.mark.parametrize("state", ["revoked", "expired", "inactive", "altered", "another_token"])
def test_introspections_read_finds_no_resident_where_userinfos_finds_none(
    shared: Any, resident: Any, state: str
) -> None:
    token, _code = shared
    token = _spoiled(token, resident, state)
    for plain in (False, True):
        full = access_tokens._read_resident(token, None, plain=plain)
        assert access_tokens._read_resident(token, None, plain=plain, lean=True) == full == (None, None)
    assert access_tokens.live_token(token) is None


def test_live_token_reads_the_resident_lean(shared: Any, resident: Any) -> None:
    token, _code = shared
    with CaptureQueriesContext(connection) as queries:
        live = access_tokens.live_token(token)
    assert live is not None
    claims, user = live
    assert claims == access_tokens.decode(token, verify=False)
    assert user.pk == resident.pk and "email" in user.get_deferred_fields()
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 1, statements
    selected = statements[0].split(" FROM ")[0]
    assert selected.count(",") == 1 and '"id"' in selected and '"is_active"' in selected
