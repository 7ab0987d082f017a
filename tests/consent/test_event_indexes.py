"""consent_ledgerevent's indexes after migration consent 0014 (issue 14, branch `record`): every
append writes an entry into each of them, so the table keeps only those a query reads by."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexes() -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        return {
            name: info
            for name, info in connection.introspection.get_constraints(cursor, "consent_ledgerevent").items()
            if info["index"]
        }


def test_partner_client_id_has_one_plain_index() -> None:
    on_partner = {name: info for name, info in _indexes().items() if "partner_client_id" in info["columns"]}
    assert list(on_partner) == ["consent_event_partner"]
    assert on_partner["consent_event_partner"]["columns"] == ["partner_client_id"]


def test_notice_id_has_no_index_and_keeps_its_foreign_key() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "consent_ledgerevent")
    on_notice = [info for info in constraints.values() if info["columns"] == ["notice_id"]]
    assert [info for info in on_notice if info["index"]] == []
    foreign_keys = [info["foreign_key"] for info in on_notice if info["foreign_key"]]
    assert foreign_keys == [("consent_privacynotice", "id")]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="operator classes of PostgreSQL")
def test_no_pattern_ops_index_is_left_on_the_ledger() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'consent_ledgerevent'::regclass"
        )
        definitions = dict(cursor.fetchall())
    assert not [name for name, text in definitions.items() if "pattern_ops" in text], definitions
    # The indexes the ledger's reads use, and only those: the pkey, seq, the gate's and the DPO's.
    assert {
        "consent_ledgerevent_pkey",
        "consent_ledgerevent_seq_key",
        "consent_event_subject_purpose",
        "consent_event_purpose_time",
        "consent_event_time",
        "consent_event_partner",
    } == set(definitions)
