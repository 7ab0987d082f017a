"""identity/oidc/token_writes.py: the rows a token request writes through the plain INSERTs
(and, on PostgreSQL, the one statement that claims, deletes and inserts) are the rows the
ORM writes, column by column as stored (before any converter), on SQLite and PostgreSQL;
nothing is written when the claim fails; the token endpoint uses that path."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.signals import post_init, post_save, pre_init, pre_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import set_token_value

from identity.oidc.models import AccessToken, AuthorizationCode, IDToken, RefreshToken
from identity.oidc.token_writes import IssuedRows, claim_code, insert_row, write_tokens
from tests.oidc.conftest import complete_flow, post_token

NOW = timezone.now().replace(microsecond=123456)


@pytest.fixture
def freeze(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Both paths stamp `created`/`updated`/`revoked` with timezone.now(): one instant
    (frozen once the flows that make the tokens to rotate have run)."""
    return lambda: monkeypatch.setattr(timezone, "now", lambda: NOW)


def _stored(model: type[Model], pk: Any) -> dict[str, Any]:
    """The row as the database returns it, every column, no converter."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = [field.column for field in model._meta.concrete_fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(connection.ops.quote_name(c) for c in columns)} FROM {table} "
            f"WHERE {connection.ops.quote_name(model._meta.pk.column)} = %s",
            [pk],
        )
        row = cursor.fetchone()
    assert row is not None, (model, pk)
    return dict(zip(columns, row, strict=True))


def _same_row(model: type[Model], ours: Any, orm: Any, differ: dict[str, tuple[Any, Any]]) -> None:
    """Every column equal (value and type), except `differ`: column -> (ours, orm) expected."""
    got, expected = _stored(model, ours.pk), _stored(model, orm.pk)
    for column in got:
        if column == model._meta.pk.column:
            continue
        if column in differ:
            assert (got[column], expected[column]) == differ[column], column
            continue
        assert got[column] == expected[column] and type(got[column]) is type(expected[column]), (
            model.__name__,
            column,
            got[column],
            expected[column],
        )


def _rows(user: Any, client: Any, previous: Any | None, *, with_id_token: bool, tag: str) -> IssuedRows:
    """The rows save_bearer_token builds, with every kind of value our columns hold."""
    id_token = (
        IDToken(
            user=user,
            scope="openid profile",
            expires=NOW + timedelta(hours=1),
            jti=uuid.uuid4(),
            application=client,
        )
        if with_id_token
        else None
    )
    access = AccessToken(
        user=user,
        scope="openid profile",
        expires=NOW + timedelta(hours=1),
        id_token=id_token,
        application=client,
        source_refresh_token=previous,
        resource=["https://api.example/é"],
        sid="sid-1",
        claims_request={"userinfo": {"email": {"essential": True}}},
    )
    set_token_value(access, f"access-{tag}")
    refresh = RefreshToken(
        user=user,
        application=client,
        access_token=access,
        token_family=previous.token_family if previous is not None else uuid.UUID(int=7),
        resource=["https://api.example/é"],
        auth_time=NOW - timedelta(minutes=5),
        sid="sid-1",
        claims_request={"id_token": {"acr": None}},
        acr="eidas2",
        amr=["pwd", "otp"],
        dpop_jkt="",
    )
    set_token_value(refresh, f"refresh-{tag}")
    return IssuedRows(access_token=access, refresh_token=refresh, id_token=id_token, previous=previous)


def _orm_write(rows: IssuedRows) -> bool:
    """What save_bearer_token did before: RefreshToken.revoke, then Model.save for each row."""
    with transaction.atomic():
        if rows.previous is not None and not rows.previous.revoke():
            return False
        if rows.id_token is not None:
            rows.id_token.save(force_insert=True)
            rows.access_token.id_token = rows.id_token
        rows.access_token.save(force_insert=True)
        rows.refresh_token.access_token = rows.access_token
        rows.refresh_token.save(force_insert=True)
    return True


def _two_live_refresh_tokens(flow: Any) -> tuple[Any, Any]:
    first, second = complete_flow(flow), complete_flow(flow)
    return (
        RefreshToken.objects.get(token_checksum=_checksum(first["refresh_token"])),
        RefreshToken.objects.get(token_checksum=_checksum(second["refresh_token"])),
    )


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_no_receiver_would_be_skipped(db: Any) -> None:
    for model in (IDToken, AccessToken, RefreshToken, AuthorizationCode):
        for signal in (pre_save, post_save):
            assert not signal.has_listeners(model), (model, signal)
    # Instances are still built by the model's constructor (pre_init/post_init run alike).
    assert pre_init is not None and post_init is not None


def test_a_rotation_writes_what_the_orm_writes(flow: Any, freeze: Any) -> None:
    ours_previous, orm_previous = _two_live_refresh_tokens(flow)
    freeze()
    ours_old_access, orm_old_access = ours_previous.access_token_id, orm_previous.access_token_id
    user, client = ours_previous.user, ours_previous.application
    ours = _rows(user, client, ours_previous, with_id_token=True, tag="ours")
    orm = _rows(user, client, orm_previous, with_id_token=True, tag="orm")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert write_tokens(ours)
    data = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(data) == (1 if connection.vendor == "postgresql" else 5), data
    assert _orm_write(orm)
    # The claimed tokens: revoked at the same instant, access token cleared and deleted.
    for column in ("revoked", "updated", "access_token_id"):
        assert (
            _stored_pair(RefreshToken, column, ours_previous, orm_previous)
            == (_stored(RefreshToken, orm_previous.pk)[column],) * 2
        ), column
    assert _stored(RefreshToken, ours_previous.pk)["access_token_id"] is None
    assert ours_previous.revoked == NOW and ours_previous.access_token_id is None
    assert not AccessToken.objects.filter(pk__in=[ours_old_access, orm_old_access]).exists()
    # The new rows, column by column; only what must differ does.
    assert ours.id_token is not None and orm.id_token is not None
    _same_issued_rows(
        ours,
        orm,
        refresh_checksums=(_checksum("refresh-ours"), _checksum("refresh-orm")),
        access_differ={"source_refresh_token_id": (ours_previous.pk, orm_previous.pk)},
        refresh_differ={
            "token_family": _stored_pair(RefreshToken, "token_family", ours.refresh_token, orm.refresh_token)
        },
    )
    # The instances are left as save() leaves them.
    for instance in (ours.id_token, ours.access_token, ours.refresh_token):
        assert instance.pk is not None and not instance._state.adding and instance._state.db == "default"
    assert ours.access_token.id_token_id == ours.id_token.pk
    assert ours.refresh_token.access_token_id == ours.access_token.pk
    assert RefreshToken.objects.get(pk=ours.refresh_token.pk).access_token.id_token.pk == ours.id_token.pk


def _stored_pair(model: type[Model], name: str, ours: Any, orm: Any) -> tuple[Any, Any]:
    column = model._meta.get_field(name).column
    return _stored(model, ours.pk)[column], _stored(model, orm.pk)[column]


def _same_issued_rows(
    ours: Any,
    orm: Any,
    *,
    refresh_checksums: tuple[str, str],
    access_differ: dict[str, tuple[Any, Any]] | None = None,
    refresh_differ: dict[str, tuple[Any, Any]] | None = None,
) -> None:
    """The ID-token (if any), access-token and refresh-token rows written by write_tokens
    (`ours`) and by the ORM (`orm`) are the same but for their own tokens and keys."""
    if ours.id_token is not None:
        _same_row(
            IDToken,
            ours.id_token,
            orm.id_token,
            {"jti": _stored_pair(IDToken, "jti", ours.id_token, orm.id_token)},
        )
    _same_row(
        AccessToken,
        ours.access_token,
        orm.access_token,
        {
            "token_checksum": _stored_pair(
                AccessToken, "token_checksum", ours.access_token, orm.access_token
            ),
            **({"id_token_id": (ours.id_token.pk, orm.id_token.pk)} if ours.id_token is not None else {}),
            **(access_differ or {}),
        },
    )
    _same_row(
        RefreshToken,
        ours.refresh_token,
        orm.refresh_token,
        {
            "token_checksum": refresh_checksums,
            "access_token_id": (ours.access_token.pk, orm.access_token.pk),
            **(refresh_differ or {}),
        },
    )


def test_a_code_redemption_writes_what_the_orm_writes(flow: Any, freeze: Any) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    freeze()
    user, client = previous.user, previous.application
    for with_id_token in (True, False):
        tag = f"{with_id_token}"
        ours = _rows(user, client, None, with_id_token=with_id_token, tag=f"ours-{tag}")
        orm = _rows(user, client, None, with_id_token=with_id_token, tag=f"orm-{tag}")
        with transaction.atomic():
            assert write_tokens(ours)
        assert _orm_write(orm)
        _same_issued_rows(
            ours, orm, refresh_checksums=(_checksum(f"refresh-ours-{tag}"), _checksum(f"refresh-orm-{tag}"))
        )


def test_a_failed_claim_writes_nothing(flow: Any) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    old_access = previous.access_token_id
    # Revoked by someone else since it was read (its access token left in place here, so
    # that a DELETE run despite the failed claim would show).
    RefreshToken.objects.filter(pk=previous.pk).update(revoked=timezone.now())
    counts = (IDToken.objects.count(), AccessToken.objects.count(), RefreshToken.objects.count())
    rows = _rows(previous.user, previous.application, previous, with_id_token=True, tag="late")
    with transaction.atomic():
        assert not write_tokens(rows)
    assert (IDToken.objects.count(), AccessToken.objects.count(), RefreshToken.objects.count()) == counts
    assert AccessToken.objects.filter(pk=old_access).exists()
    assert rows.access_token.pk is None and rows.refresh_token.pk is None
    assert rows.id_token is not None and rows.id_token.pk is None


def test_an_authorization_code_is_inserted_as_objects_create_inserts_it(flow: Any, freeze: Any) -> None:
    previous, _ = _two_live_refresh_tokens(flow)
    freeze()

    def grant(code: str) -> AuthorizationCode:
        return AuthorizationCode(
            application=previous.application,
            user=previous.user,
            code=code,
            expires=NOW + timedelta(minutes=1),
            redirect_uri="https://rp.example/cb",
            scope="openid profile",
            code_challenge="x" * 43,
            code_challenge_method="S256",
            nonce="n-0",
            claims='{"userinfo": {}}',
            auth_time=NOW,
            sid="sid-1",
            acr="eidas1",
            amr=["pwd"],
            resource=["https://api.example/"],
            dpop_jkt="",
        )

    ours = insert_row(grant("code-ours"))
    orm = grant("code-orm")
    orm.save(force_insert=True)
    _same_row(AuthorizationCode, ours, orm, {"code": _stored_pair(AuthorizationCode, "code", ours, orm)})
    assert AuthorizationCode.objects.get(code="code-ours").pk == ours.pk  # hashed at rest, found by the code


def test_the_token_endpoint_writes_through_this_path(flow: Any, tokens: dict[str, Any]) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = post_token(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=flow.rp.basic_auth(),
        )
    assert response.status_code == 200, response.content
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    if connection.vendor == "postgresql":
        assert len(inserts) == 1 and inserts[0].startswith("WITH claimed AS (UPDATE"), inserts
    else:
        assert len(inserts) == 3 and all(" VALUES (" in sql for sql in inserts), inserts


def test_a_code_is_claimed_as_the_orm_claimed_it_and_once(flow: Any, freeze: Any) -> None:
    ours, orm = flow.get_code(), flow.get_code()
    freeze()
    ours_row, orm_row = AuthorizationCode.objects.get(code=ours), AuthorizationCode.objects.get(code=orm)
    ours_before, orm_before = _stored(AuthorizationCode, ours_row.pk), _stored(AuthorizationCode, orm_row.pk)
    family = uuid.uuid4()
    assert claim_code(ours_row, family)
    assert AuthorizationCode.objects.filter(pk=orm_row.pk, redeemed_at__isnull=True).update(
        redeemed_at=timezone.now(), token_family=family
    )
    ours_after, orm_after = _stored(AuthorizationCode, ours_row.pk), _stored(AuthorizationCode, orm_row.pk)
    written = ("redeemed_at", "token_family")
    for column in written:  # the two columns the claim writes: stored alike (value and type)
        assert ours_after[column] == orm_after[column] is not None, column
        assert type(ours_after[column]) is type(orm_after[column]), column
    for before, after in ((ours_before, ours_after), (orm_before, orm_after)):  # and nothing else
        assert {k: v for k, v in before.items() if k not in written} == {
            k: v for k, v in after.items() if k not in written
        }
    # A second claim (a replay, or the loser of two concurrent redemptions) claims nothing
    # and changes nothing.
    assert not claim_code(ours_row, uuid.uuid4())
    assert _stored(AuthorizationCode, ours_row.pk) == ours_after
