""" "Retirer l'accès" for a partner the resident allowed under several scope sets (several
sharing purposes): the `withdrawn` events go to the ledger in one write (consent_record_many),
with the rows, states and token revocation that one consent_record per purpose gave; a retired
purpose is still skipped."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from consent import ledger, services
from consent.models import ConsentState, LedgerEvent, Purpose
from identity.oidc import sharing
from identity.oidc.sharing import consent_decision_record, purpose_for_client_scopes, sharing_withdraw
from tests.oidc.test_connected_services import bcl_rp, purpose, shared, userinfo  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

COLUMNS = ("event_type", "purpose_code", "actor_type", "actor_id", "collection_method", "partner_client_id")


class _Rollback(Exception):
    pass


def _one_by_one(*, decisions: Any, collection_method: str, user: Any) -> list[Any]:
    """What sharing_withdraw did before: one consent_record per purpose."""
    return [
        services.consent_record(
            user=user, purpose_code=code, event_type=kind, collection_method=collection_method
        )
        for code, kind in decisions
    ]


def _written(first_seq: int, user: Any) -> tuple[list[Any], list[Any]]:
    rows = list(LedgerEvent.objects.filter(seq__gte=first_seq).order_by("seq").values_list(*COLUMNS))
    states = list(
        ConsentState.objects.filter(subject__user=user)
        .order_by("purpose__code")
        .values_list("purpose__code", "status", "valid_until", "renewal_required")
    )
    return rows, states


def _second_purpose(flow: Any, resident: Any) -> str:
    second = purpose_for_client_scopes(client=flow.rp.client, scopes=["openid", "email"]).code
    consent_decision_record(user=resident, purpose_code=second, allow=True)
    return second


def test_several_purposes_are_withdrawn_in_one_ledger_write(
    shared: Any,  # noqa: F811 - fixture
    resident: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flow, tokens = shared
    second = _second_purpose(flow, resident)
    first_seq = LedgerEvent.objects.count()

    with monkeypatch.context() as patch, pytest.raises(_Rollback), transaction.atomic():
        patch.setattr(sharing, "consent_record_many", _one_by_one)
        before = sharing_withdraw(user=resident, client=flow.rp.client)
        single_rows, single_states = _written(first_seq, resident)
        raise _Rollback
    assert LedgerEvent.objects.count() == first_seq
    assert userinfo(tokens["access_token"]).status_code == 200  # rolled back: still valid

    writes: list[int] = []
    real_append_many = ledger.append_many

    def append_many(head: Any, events: Any, **kwargs: Any) -> Any:
        writes.append(len(events))
        return real_append_many(head, events, **kwargs)

    def no_single(**kwargs: Any) -> Any:
        raise AssertionError("one consent_record per purpose")

    monkeypatch.setattr(ledger, "append_many", append_many)
    monkeypatch.setattr(sharing, "consent_record", no_single)
    after = sharing_withdraw(user=resident, client=flow.rp.client)
    assert writes == [2]
    rows, states = _written(first_seq, resident)
    assert rows == single_rows and states == single_states
    assert {row[1] for row in rows} == {purpose(flow.rp), second}
    assert {row[0] for row in rows} == {"withdrawn"}
    assert after.tokens == before.tokens and any(after.tokens.values())
    assert after.backchannel_logouts == before.backchannel_logouts
    assert [event.seq for event in after.events] == [first_seq, first_seq + 1]
    assert userinfo(tokens["access_token"]).status_code == 401


def test_a_retired_purpose_is_skipped_and_the_others_withdrawn(
    shared: Any,  # noqa: F811 - fixture
    resident: Any,
) -> None:
    flow, tokens = shared
    second = _second_purpose(flow, resident)
    Purpose.objects.filter(code=purpose(flow.rp)).update(is_active=False)
    first_seq = LedgerEvent.objects.count()
    result = sharing_withdraw(user=resident, client=flow.rp.client)
    rows, _states = _written(first_seq, resident)
    assert [(row[0], row[1]) for row in rows] == [("withdrawn", second)]
    assert [event.purpose_code for event in result.events] == [second]
    assert userinfo(tokens["access_token"]).status_code == 401
