"""A single decision asks its purpose's data holders, in its context read, whether they hold
anything for the subject (consent.purpose_data `held`): a holder that answers false is not
called, every other one is (true, NULL, or no `held` at all), and what is erased and recorded
is what the holders' own `erase` gives. profiles' expressions never answer false where their
`erase` would remove something."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent import purpose_data, services
from consent.models import LedgerEvent
from consent.purpose_data import DataSubject, PurposeDataHolder
from consent.selectors import event_details
from consent.services import consent_record
from profiles import services as profile_services
from profiles import taxonomy
from profiles.models import DeclaredProfile, Interest, InterestCorrection

DECLARED, BROWSING, NEWS, AUDIENCE = (
    "personalisation-declared",
    "personalisation-browsing",
    "service-news-email",
    "audience-measurement",
)
BROWSER_ID = "h" * 22


class _Rollback(Exception):
    pass


@pytest.fixture
def test_holders() -> Any:
    """Four holders of `audience-measurement` (no other holder has it): one answering false with
    parameters, one true with parameters, one NULL, one without `held`; the calls of each."""
    calls: list[str] = []

    def eraser(name: str) -> Any:
        def erase(subject: DataSubject) -> dict[str, Any]:
            calls.append(name)
            return {"rows": len(name)}

        return erase

    def answer(sql: str) -> Any:
        def held(subject: DataSubject) -> tuple[str, list[Any]]:
            key = str(subject.user_id) if subject.user_id is not None else subject.browser_hash
            return sql, [key, key]

        return held

    holders = [
        PurposeDataHolder(
            name="t.false", purpose_code=AUDIENCE, erase=eraser("t.false"), held=answer("%s <> %s")
        ),
        PurposeDataHolder(
            name="t.true", purpose_code=AUDIENCE, erase=eraser("t.true"), held=answer("%s = %s")
        ),
        PurposeDataHolder(
            name="t.null",
            purpose_code=AUDIENCE,
            erase=eraser("t.null"),
            held=lambda subject: ("CAST(NULL AS boolean)", []),
        ),
        PurposeDataHolder(name="t.none", purpose_code=AUDIENCE, erase=eraser("t.none")),
    ]
    for holder in holders:
        purpose_data.register_holder(holder)
    try:
        yield calls
    finally:
        for holder in holders:
            purpose_data.unregister_holder(holder.name)


@pytest.mark.django_db
@pytest.mark.parametrize("browser", [False, True])
def test_only_a_holder_that_answers_false_is_skipped(
    ledger_ready: Any, make_resident: Any, test_holders: list[str], browser: bool
) -> None:
    subject = {"browser_id": BROWSER_ID} if browser else {"user": make_resident()}
    method = "cookie_widget" if browser else "web_form"
    consent_record(purpose_code=AUDIENCE, event_type="given", collection_method=method, **subject)
    assert test_holders == ["t.true", "t.null", "t.none"]  # a first grant starts empty
    test_holders.clear()
    consent_record(purpose_code=AUDIENCE, event_type="given", collection_method=method, **subject)
    assert test_holders == []  # a grant on a grant erases nothing: no holder called
    event = consent_record(purpose_code=AUDIENCE, event_type="withdrawn", collection_method=method, **subject)
    assert test_holders == ["t.true", "t.null", "t.none"]
    details = event_details(LedgerEvent.objects.get(pk=event.pk))
    assert details == {"erased": {"t.true": {"rows": 6}, "t.null": {"rows": 6}, "t.none": {"rows": 6}}}


@pytest.mark.django_db
def test_the_first_grant_of_a_subject_asks_and_erases_as_before(
    ledger_ready: Any, make_resident: Any, test_holders: list[str]
) -> None:
    """A grant after no grant starts empty: the holders that may hold something are called."""
    consent_record(
        user=make_resident(), purpose_code=AUDIENCE, event_type="given", collection_method="web_form"
    )
    assert test_holders == ["t.true", "t.null", "t.none"]


@pytest.mark.django_db
def test_the_holders_answer_in_the_context_read(
    ledger_ready: Any, make_resident: Any, test_holders: list[str]
) -> None:
    """No statement of their own: the expressions are columns of the read under the locks."""
    resident = make_resident()
    with CaptureQueriesContext(connection) as queries:
        consent_record(
            user=resident, purpose_code=AUDIENCE, event_type="refused", collection_method="web_form"
        )
    assert test_holders == ["t.true", "t.null", "t.none"]
    asked = [query["sql"] for query in queries.captured_queries if "<>" in query["sql"]]
    assert len(asked) == 1 and ("consent_purpose" in asked[0] or "consent_decision_context" in asked[0])


def _declared(user: Any, **fields: Any) -> None:
    DeclaredProfile.objects.create(user=user, **fields)


def _interest(owner: dict[str, Any], theme: str) -> None:
    now = timezone.now()
    Interest.objects.create(
        theme=theme, score=1.0, score_at=now, views=1, first_seen_at=now, last_seen_at=now, **owner
    )


def _held_answer(held: Any, subject: DataSubject) -> bool:
    sql, params = held(subject)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({sql})", params)
        return bool(cursor.fetchone()[0])


def _erase_result(erase: Any, subject: DataSubject) -> dict[str, Any]:
    """What `erase` would remove, rolled back."""
    result: dict[str, Any] = {}
    with pytest.raises(_Rollback), transaction.atomic():
        result = erase(subject)
        raise _Rollback
    return result


@pytest.mark.django_db
def test_profiles_answers_are_false_only_where_erase_finds_nothing(make_resident: Any) -> None:
    """Every case of the declared profile and of the interests (none, some fields, interests
    only, corrections only, a browser's rows, another subject's rows): a false answer only where
    the holder's erase would erase nothing; the interests' answer is exactly whether it would."""
    themes = [theme.code for theme in taxonomy.themes()[:2]]
    bare, declared_news, declared_other, interested, corrected = (make_resident() for _ in range(5))
    _declared(declared_news, notification_frequency="weekly")
    _declared(declared_other, commune="44109")
    _interest({"user": interested}, themes[0])
    InterestCorrection.objects.create(user=corrected, theme=themes[1])
    browser_hash = services.browser_id_hash(BROWSER_ID)
    _interest({"browser_hash": browser_hash}, themes[0])
    subjects = [
        DataSubject(user_id=user.pk) for user in (bare, declared_news, declared_other, interested, corrected)
    ]
    subjects += [DataSubject(browser_hash=browser_hash), DataSubject(browser_hash="0" * 64)]
    checked = 0
    for subject in subjects:
        interests = profile_services.interests_held
        assert _held_answer(interests, subject) == bool(
            _erase_result(profile_services.interests_erase, subject)
        )
        for code in (DECLARED, NEWS):
            erased = _erase_result(profile_services.declared_erase_holder(code), subject)
            if not _held_answer(profile_services.declared_held, subject):
                assert erased == {}
            checked += 1
    assert checked == 2 * len(subjects)
    # A profile, whatever its fields, is "held": the erase then reads it (as it did before).
    assert _held_answer(profile_services.declared_held, DataSubject(user_id=declared_other.pk))
    assert not _held_answer(profile_services.declared_held, DataSubject(user_id=bare.pk))


@pytest.mark.django_db
@pytest.mark.parametrize("holds", [False, True])
def test_a_withdrawal_runs_the_holders_statements_only_when_something_is_held(
    ledger_ready: Any, make_resident: Any, holds: bool
) -> None:
    """profiles' holders (the declared fields and the interests): a resident who holds nothing
    costs no statement of theirs; one who holds data loses it, and the event records it."""
    resident = make_resident()
    for code in (DECLARED, BROWSING):
        consent_record(user=resident, purpose_code=code, event_type="given", collection_method="web_form")
    if holds:
        _declared(resident, commune="44109", themes=[taxonomy.themes()[0].code])
        _interest({"user": resident}, taxonomy.themes()[0].code)
    events = []
    with CaptureQueriesContext(connection) as queries:
        for code in (DECLARED, BROWSING):
            events.append(
                consent_record(
                    user=resident, purpose_code=code, event_type="withdrawn", collection_method="web_form"
                )
            )
    own = [
        query["sql"]
        for query in queries.captured_queries
        if "profiles_" in query["sql"]
        and "consent_decision_context" not in query["sql"]
        and "consent_purpose" not in query["sql"]
    ]
    details = [event_details(LedgerEvent.objects.get(pk=event.pk)) for event in events]
    if holds:
        assert own  # the holders ran
        assert not DeclaredProfile.objects.filter(user=resident).exists()  # commune and themes: all declared
        assert not Interest.objects.filter(user=resident).exists()
        assert details[0] == {"erased": {f"profiles.declared:{DECLARED}": {"fields": ["commune", "themes"]}}}
        assert details[1] == {"erased": {"profiles.interests": {"interests": 1}}}
    else:
        assert own == []
        assert details == [None, None]
