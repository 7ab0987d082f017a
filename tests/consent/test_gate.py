"""The gate: is purpose P granted for resident R now (one query) and at time T (from the ledger)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django.db.utils
import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from consent.gate import (
    AccountGateSQL,
    account_gate_decision,
    account_gate_sql,
    consent_granted_many,
    consent_granted_many_for_subject,
)
from consent.prepared import prepared_fetch
from consent.purpose_data import DataSubject
from consent.selectors import (
    consent_is_granted,
    consent_is_granted_for_browser,
    consent_states_for_user,
    granted_purpose_codes,
    purpose_by_code,
)
from consent.services import UnknownPurpose, browser_id_hash, consent_record, notice_publish
from identity.models import User

DECLARED = "personalisation-declared"
BROWSING = "personalisation-browsing"
NEWS = "service-news-email"
AUDIENCE = "audience-measurement"


def record(user: Any, purpose: str, event_type: str, **kwargs: Any) -> Any:
    kwargs.setdefault("collection_method", "web_form")
    return consent_record(user=user, purpose_code=purpose, event_type=event_type, **kwargs)


class Clock:
    """Moves `django.utils.timezone.now` (used by services and selectors) to a chosen instant."""

    def __init__(self, monkeypatch: Any) -> None:
        self.monkeypatch = monkeypatch
        self.real_now = timezone.now

    def set(self, instant: Any) -> None:
        self.monkeypatch.setattr(timezone, "now", lambda: instant)

    def reset(self) -> None:
        self.monkeypatch.setattr(timezone, "now", self.real_now)


@pytest.fixture
def clock(monkeypatch: Any) -> Clock:
    return Clock(monkeypatch)


def test_given_is_granted_and_refused_or_withdrawn_is_not(make_resident: Any) -> None:
    resident = make_resident()
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)
    record(resident, DECLARED, "requested")
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)
    record(resident, DECLARED, "given")
    assert consent_is_granted(user=resident, purpose_code=DECLARED)
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    record(resident, DECLARED, "withdrawn")
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)
    record(resident, NEWS, "refused")
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    # Someone else's consent is not mine.
    other = make_resident()
    record(other, NEWS, "given")
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    assert consent_is_granted(user=other, purpose_code=NEWS)


def test_the_gate_is_a_single_query(make_resident: Any, django_assert_num_queries: Any) -> None:
    resident = make_resident()
    record(resident, DECLARED, "given")
    with django_assert_num_queries(1):
        assert consent_is_granted(user=resident, purpose_code=DECLARED)
    with django_assert_num_queries(1):
        assert not consent_is_granted(user=resident, purpose_code=NEWS)
    with django_assert_num_queries(1):
        assert consent_is_granted(user=resident, purpose_code=AUDIENCE)
    with django_assert_num_queries(1):
        assert granted_purpose_codes(user=resident) == {DECLARED, AUDIENCE}


def test_unknown_purpose_raises(make_resident: Any) -> None:
    with pytest.raises(UnknownPurpose):
        consent_is_granted(user=make_resident(), purpose_code="no-such-purpose")


def test_exempt_audience_measurement_is_granted_unless_the_resident_objects(make_resident: Any) -> None:
    resident = make_resident()
    assert not purpose_by_code(AUDIENCE).requires_consent
    assert consent_is_granted(user=resident, purpose_code=AUDIENCE)
    record(resident, AUDIENCE, "refused")
    assert not consent_is_granted(user=resident, purpose_code=AUDIENCE)
    record(resident, AUDIENCE, "given")
    assert consent_is_granted(user=resident, purpose_code=AUDIENCE)


def test_consent_stops_counting_at_valid_until_without_any_job(make_resident: Any, clock: Clock) -> None:
    resident = make_resident()
    start = timezone.now() - timedelta(days=200)
    clock.set(start)
    event = record(resident, BROWSING, "given")  # cookie purpose: 183 days
    assert event.valid_until == start + timedelta(days=183)
    clock.set(start + timedelta(days=182))
    assert consent_is_granted(user=resident, purpose_code=BROWSING)
    clock.reset()
    # Nothing ran in between: the current-state row still says "given"...
    assert consent_states_for_user(user=resident)[0].status == "given"
    # ...but the gate compares valid_until with now.
    assert not consent_is_granted(user=resident, purpose_code=BROWSING)
    assert consent_states_for_user(user=resident)[0].granted is False
    assert not consent_is_granted(user=resident, purpose_code=BROWSING, at=start + timedelta(days=184))
    assert consent_is_granted(user=resident, purpose_code=BROWSING, at=start + timedelta(days=1))


def test_a_shorter_validity_can_be_chosen(make_resident: Any) -> None:
    resident = make_resident()
    until = timezone.now() + timedelta(days=30)
    assert record(resident, NEWS, "given", valid_until=until).valid_until == until


def test_a_material_notice_requires_renewal(make_resident: Any) -> None:
    resident, other = make_resident(), make_resident()
    record(resident, DECLARED, "given")
    record(resident, NEWS, "given")
    record(other, NEWS, "given")
    before = timezone.now()
    # A non-material change (typo) keeps consents valid.
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Texte corrigé", text_en="Fixed text", material=False
    )
    assert consent_is_granted(user=resident, purpose_code=NEWS)
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Nouveaux usages", text_en="New uses", material=True
    )
    after = timezone.now()
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    assert not consent_is_granted(user=other, purpose_code=NEWS)
    assert consent_is_granted(user=resident, purpose_code=DECLARED)  # another purpose: untouched
    state = next(s for s in consent_states_for_user(user=resident) if s.purpose_code == NEWS)
    assert state.renewal_required and state.status == "given"
    # History agrees with the current state.
    assert consent_is_granted(user=resident, purpose_code=NEWS, at=before)
    assert not consent_is_granted(user=resident, purpose_code=NEWS, at=after)
    renewed = record(resident, NEWS, "renewed")
    assert renewed.notice_version == 2 and renewed.notice.purpose.code == NEWS
    assert consent_is_granted(user=resident, purpose_code=NEWS)
    assert not consent_is_granted(user=other, purpose_code=NEWS)
    # A global material notice reaches every consent-based purpose.
    notice_publish(purpose=None, text_fr="Nouvelle notice", text_en="New notice", material=True)
    assert not consent_is_granted(user=resident, purpose_code=NEWS)
    assert not consent_is_granted(user=resident, purpose_code=DECLARED)
    assert consent_is_granted(user=resident, purpose_code=AUDIENCE)


def test_historical_answers_come_from_the_ledger(make_resident: Any, clock: Clock) -> None:
    resident = make_resident()
    t0 = timezone.now() - timedelta(days=10)
    clock.set(t0)
    record(resident, DECLARED, "given")
    clock.set(t0 + timedelta(days=2))
    record(resident, DECLARED, "withdrawn")
    clock.set(t0 + timedelta(days=4))
    record(resident, DECLARED, "given")
    clock.reset()
    assert not consent_is_granted(user=resident, purpose_code=DECLARED, at=t0 - timedelta(seconds=1))
    assert consent_is_granted(user=resident, purpose_code=DECLARED, at=t0)
    assert consent_is_granted(user=resident, purpose_code=DECLARED, at=t0 + timedelta(days=1))
    assert not consent_is_granted(user=resident, purpose_code=DECLARED, at=t0 + timedelta(days=3))
    assert consent_is_granted(user=resident, purpose_code=DECLARED, at=t0 + timedelta(days=5))
    assert consent_is_granted(user=resident, purpose_code=DECLARED)


def test_historical_path_reads_only_that_subject_and_purpose(
    make_resident: Any, django_assert_max_num_queries: Any
) -> None:
    resident = make_resident()
    record(resident, DECLARED, "given")
    with django_assert_max_num_queries(3):  # purpose, latest event, material notices
        assert consent_is_granted(user=resident, purpose_code=DECLARED, at=timezone.now())


def test_anonymous_browsers_have_their_own_gate(db: Any) -> None:
    browser = "b" * 32
    consent_record(
        browser_id=browser, purpose_code=BROWSING, event_type="given", collection_method="cookie_widget"
    )
    assert consent_is_granted_for_browser(browser_id=browser, purpose_code=BROWSING)
    assert not consent_is_granted_for_browser(browser_id="c" * 32, purpose_code=BROWSING)
    consent_record(
        browser_id=browser, purpose_code=BROWSING, event_type="refused", collection_method="cookie_widget"
    )
    assert not consent_is_granted_for_browser(browser_id=browser, purpose_code=BROWSING)


# --- consent.gate.account_gate_sql: the gate inside a caller's own statement -----------------


def gate_in_own_statement(user: Any, purpose_code: str) -> tuple[Any, bool | None]:
    """What a caller does (identity.oidc.access_tokens at userinfo): its own SELECT over the
    users table, the gate's columns and joins added, one round trip."""
    table, pk = User._meta.db_table, User._meta.pk.column
    gate = account_gate_sql(f'u."{pk}"')
    sql = f'SELECT u."{pk}", {gate.columns} FROM "{table}" u {gate.joins} WHERE u."{pk}" = %s'
    key = User._meta.pk.get_db_prep_value(user.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*AccountGateSQL.params(purpose_code), key])
        rows = cursor.fetchall()
    assert len(rows) == 1, "the gate's LEFT JOINs never drop nor repeat the caller's row"
    return rows[0][0], account_gate_decision(tuple(rows[0][1:]))


def test_account_gate_sql_answers_as_consent_is_granted(make_resident: Any, clock: Clock) -> None:
    resident, other = make_resident(), make_resident()
    purposes = (DECLARED, NEWS, AUDIENCE, BROWSING)

    def agree() -> None:
        for user in (resident, other):
            for code in purposes:
                _id, decision = gate_in_own_statement(user, code)
                assert decision is consent_is_granted(user=user, purpose_code=code), (code, decision)

    agree()  # no consent subject at all yet
    _mixed_decisions(resident, other, clock)
    agree()
    assert gate_in_own_statement(resident, DECLARED)[1] is True
    assert gate_in_own_statement(resident, BROWSING)[1] is False
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Nouveaux usages", text_en="New uses", material=True
    )
    agree()
    assert gate_in_own_statement(other, NEWS)[1] is False
    record(resident, DECLARED, "withdrawn")
    agree()


def _mixed_decisions(resident: Any, other: Any, clock: Clock) -> None:
    """A lapsed consent, a given one and an objection for `resident`; a given consent and an
    objection withdrawn by a later consent for `other`."""
    clock.set(timezone.now() - timedelta(days=200))
    record(resident, BROWSING, "given")  # 183 days: lapsed by now
    clock.reset()
    record(resident, DECLARED, "given")
    record(resident, AUDIENCE, "refused")
    record(other, NEWS, "given")
    record(other, AUDIENCE, "withdrawn")
    record(other, AUDIENCE, "given")


def test_account_gate_sql_keeps_the_row_and_answers_none_for_an_unknown_purpose(make_resident: Any) -> None:
    resident = make_resident()
    record(resident, DECLARED, "given")
    user_id, decision = gate_in_own_statement(resident, "no-such-purpose")
    assert decision is None
    assert str(user_id).replace("-", "") == resident.pk.hex


# --- consent.gate.consent_granted_many: several purposes of one subject in one statement ------


def test_the_batched_gate_answers_as_the_single_one_in_one_query(
    make_resident: Any, clock: Clock, django_assert_num_queries: Any
) -> None:
    resident, other, nobody = make_resident(), make_resident(), make_resident()
    purposes = (DECLARED, NEWS, AUDIENCE, BROWSING)

    def agree() -> None:
        for user in (resident, other, nobody):
            with django_assert_num_queries(1):
                many = consent_granted_many(user=user, purpose_codes=purposes)
            single = {code: consent_is_granted(user=user, purpose_code=code) for code in purposes}
            assert many == single
            subject = DataSubject(user_id=user.pk)
            assert consent_granted_many_for_subject(subject=subject, purpose_codes=purposes) == single

    agree()  # no consent subject at all yet
    _mixed_decisions(resident, other, clock)
    agree()
    assert consent_granted_many(user=resident, purpose_codes=[DECLARED, BROWSING, DECLARED]) == {
        DECLARED: True,
        BROWSING: False,
    }
    notice_publish(
        purpose=purpose_by_code(NEWS), text_fr="Nouveaux usages", text_en="New uses", material=True
    )
    agree()
    assert consent_granted_many(user=other, purpose_codes=[NEWS])[NEWS] is False
    record(resident, DECLARED, "withdrawn")
    agree()
    assert consent_granted_many(user=resident, purpose_codes=[]) == {}


def test_the_batched_gate_for_browsers_and_unknown_purposes(make_resident: Any) -> None:
    browser = "d" * 32
    consent_record(
        browser_id=browser, purpose_code=BROWSING, event_type="given", collection_method="cookie_widget"
    )
    subject = DataSubject(browser_hash=browser_id_hash(browser))
    assert consent_granted_many_for_subject(subject=subject, purpose_codes=[BROWSING, DECLARED]) == {
        BROWSING: True,
        DECLARED: False,
    }
    with pytest.raises(UnknownPurpose):
        consent_granted_many(user=make_resident(), purpose_codes=[DECLARED, "no-such-purpose"])
    with pytest.raises(UnknownPurpose):
        consent_granted_many_for_subject(subject=subject, purpose_codes=["no-such-purpose"])


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"])
def test_the_fast_path_answers_as_the_wrapped_cursor(
    make_resident: Any, settings: Any, prepared: bool
) -> None:
    # Nobody capturing queries, the gate executes on a cursor kept per connection, prepared or
    # not as the deployment says (consent.prepared.prepared_fetch); the answers are the same,
    # errors come out as Django's, and a broken transaction is refused as with a Django cursor.
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    resident = make_resident()
    record(resident, DECLARED, "given")
    assert not connection.queries_logged
    assert consent_is_granted(user=resident, purpose_code=DECLARED) is True
    assert consent_is_granted(user=resident, purpose_code=NEWS) is False
    answers = consent_granted_many(user=resident, purpose_codes=[DECLARED, NEWS])
    assert answers == {DECLARED: True, NEWS: False}
    kept = connection._kept_cursor
    assert kept[0] is connection.connection and kept[1] is prepared
    assert consent_is_granted(user=resident, purpose_code=DECLARED) is True
    assert connection._kept_cursor is kept  # one cursor per connection
    bad = "SELECT no_such_column FROM consent_purpose"
    with pytest.raises(django.db.utils.ProgrammingError), transaction.atomic():
        prepared_fetch(bad, [])
    assert consent_is_granted(user=resident, purpose_code=DECLARED) is True
    with transaction.atomic():
        with pytest.raises(django.db.utils.ProgrammingError), transaction.atomic(savepoint=False):
            prepared_fetch(bad, [])
        with pytest.raises(TransactionManagementError):  # as a Django cursor refuses it
            consent_is_granted(user=resident, purpose_code=DECLARED)
    assert consent_is_granted(user=resident, purpose_code=DECLARED) is True
