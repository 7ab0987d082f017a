"""A batch of decisions (`consent_record_many`) erases the data of the purposes it ends with one
call per purpose-data holder (consent.purpose_data.erase_for_many; profiles: the declared
fields of every ended purpose at once, one statement on PostgreSQL): what goes, what stays and
what each event records are those of one `consent_record` per decision; a failure writes
nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent import ledger, purpose_data, services
from consent.models import LedgerEvent
from consent.purpose_data import DataSubject, PurposeDataError, PurposeDataHolder
from consent.selectors import event_details
from consent.services import ConsentError, consent_record, consent_record_many
from profiles import taxonomy
from profiles.models import DeclaredProfile, Interest, InterestCorrection

DECLARED, BROWSING, NEWS, AUDIENCE = (
    "personalisation-declared",
    "personalisation-browsing",
    "service-news-email",
    "audience-measurement",
)
BROWSER_ID = "e" * 22


class _Rollback(Exception):
    pass


def _held(user: Any, browser: bool) -> dict[str, Any]:
    """The resident's purpose data: the declared profile's fields, interests and corrections."""
    owner = (
        {"user__isnull": True, "browser_hash": services.browser_id_hash(BROWSER_ID)}
        if browser
        else {"user": user}
    )
    profile = DeclaredProfile.objects.filter(user=user).values(*taxonomy.DECLARED_FIELDS).first()
    return {
        "profile": profile,
        "interests": sorted(Interest.objects.filter(**owner).values_list("theme", flat=True)),
        "corrections": sorted(InterestCorrection.objects.filter(**owner).values_list("theme", flat=True)),
    }


def _setup(user: Any, browser: bool) -> dict[str, Any]:
    subject = {"browser_id": BROWSER_ID} if browser else {"user": user}
    method = "cookie_widget" if browser else "web_form"
    for code in (DECLARED, NEWS, BROWSING, AUDIENCE):
        consent_record(purpose_code=code, event_type="given", collection_method=method, **subject)
    themes = [theme.code for theme in taxonomy.themes()[:3]]
    DeclaredProfile.objects.create(
        user=user,
        commune="44109",
        themes=themes[:2],
        language="fr",
        notification_frequency="weekly",
        notification_themes=themes[1:],
    )
    owner = {"browser_hash": services.browser_id_hash(BROWSER_ID)} if browser else {"user": user}
    now = timezone.now()
    for theme in themes[:2]:
        Interest.objects.create(
            theme=theme, score=1.0, score_at=now, views=1, first_seen_at=now, last_seen_at=now, **owner
        )
    InterestCorrection.objects.create(theme=themes[2], **owner)
    return {"subject": subject, "method": method}


@pytest.mark.django_db
@pytest.mark.parametrize("browser", [False, True])
@pytest.mark.parametrize(
    "decisions",
    [
        # every declared field's purpose ends: the profile goes
        [(DECLARED, "withdrawn"), (AUDIENCE, "refused"), (NEWS, "withdrawn"), (BROWSING, "refused")],
        # the news fields stay: the profile is updated
        [(BROWSING, "withdrawn"), (DECLARED, "refused"), (AUDIENCE, "given")],
        # one declared purpose only, and a grant that erases nothing
        [(NEWS, "refused"), (DECLARED, "given")],
    ],
    ids=["all", "some", "one"],
)
def test_a_batch_erases_what_single_decisions_erase(
    ledger_ready: Any, make_resident: Any, monkeypatch: pytest.MonkeyPatch, browser: bool, decisions: Any
) -> None:
    """Same data erased and kept, and the same `erased` summary in each event's details, as one
    consent_record per decision (run first and rolled back)."""
    resident = make_resident()
    context = _setup(resident, browser)
    before = _held(resident, browser)
    instant = timezone.now()
    monkeypatch.setattr(services.timezone, "now", lambda: instant)
    ids = [uuid.uuid4() for _ in decisions]

    def same_ids() -> None:
        numbered = iter(ids)
        monkeypatch.setattr(ledger, "new_event_id", lambda: next(numbered))

    same_ids()
    with pytest.raises(_Rollback), transaction.atomic():
        singles = [
            consent_record(
                purpose_code=code, event_type=kind, collection_method=context["method"], **context["subject"]
            )
            for code, kind in decisions
        ]
        single_held = _held(resident, browser)
        single_details = [event_details(LedgerEvent.objects.get(pk=event.pk)) for event in singles]
        raise _Rollback
    assert _held(resident, browser) == before
    same_ids()
    events = consent_record_many(
        decisions=decisions, collection_method=context["method"], **context["subject"]
    )
    assert _held(resident, browser) == single_held
    assert [event_details(LedgerEvent.objects.get(pk=event.pk)) for event in events] == single_details
    if not browser or BROWSING in dict(decisions):  # a browser has interests, no declared profile
        assert single_held != before  # something went
        assert any(details and "erased" in details for details in single_details)


@pytest.mark.django_db
def test_a_batch_calls_each_holder_once(
    ledger_ready: Any, make_resident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The declared fields of both ended purposes in one call (its reads and one write), the
    interests holder once: not once per event."""
    resident = make_resident()
    context = _setup(resident, browser=False)
    calls: list[tuple[str, Any]] = []
    from profiles import services as profile_services  # noqa: PLC0415 - patched below

    real_many, real_interests = profile_services.declared_erase_many, profile_services.interests_erase

    def declared_many(subject: DataSubject, codes: tuple[str, ...]) -> Any:
        calls.append(("declared", codes))
        with CaptureQueriesContext(connection) as queries:
            result = real_many(subject, codes)
        # a plain read, the same read locked (where the database locks rows), the DELETE
        assert len(queries) == (3 if connection.features.has_select_for_update else 2)
        return result

    def interests(subject: DataSubject) -> Any:
        calls.append(("interests", None))
        return real_interests(subject)

    for holder in purpose_data.holders():
        if holder.name.startswith("profiles."):
            monkeypatch.setitem(
                purpose_data._holders,
                holder.name,
                PurposeDataHolder(
                    name=holder.name,
                    purpose_code=holder.purpose_code,
                    erase=interests if holder.name == "profiles.interests" else holder.erase,
                    group=holder.group,
                    erase_many=declared_many if holder.group else None,
                ),
            )
    consent_record_many(
        decisions=[(DECLARED, "withdrawn"), (NEWS, "withdrawn"), (BROWSING, "withdrawn")],
        collection_method=context["method"],
        **context["subject"],
    )
    assert sorted(calls) == [("declared", (DECLARED, NEWS)), ("interests", None)]
    assert _held(resident, False) == {"profile": None, "interests": [], "corrections": []}


def _append_fails(*args: Any, **kwargs: Any) -> Any:
    raise ledger.LedgerTampered([])


def _holder_fails(subject: DataSubject, codes: tuple[str, ...]) -> Any:
    raise RuntimeError("holder failed")


@pytest.mark.django_db
@pytest.mark.parametrize("failure", ["append", "holder", "check"])
def test_a_failed_batch_erases_nothing(
    ledger_ready: Any, make_resident: Any, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    resident = make_resident()
    context = _setup(resident, browser=False)
    before = _held(resident, False)
    count = LedgerEvent.objects.count()
    decisions = [(DECLARED, "withdrawn"), (BROWSING, "refused"), (NEWS, "withdrawn")]
    expected: type[Exception] = ledger.LedgerTampered
    if failure == "append":
        monkeypatch.setattr(ledger, "append_many", _append_fails)
    elif failure == "holder":
        from profiles import services as profile_services  # noqa: PLC0415 - patched below

        for holder in purpose_data.holders():
            if holder.group:
                monkeypatch.setitem(
                    purpose_data._holders,
                    holder.name,
                    PurposeDataHolder(
                        name=holder.name,
                        purpose_code=holder.purpose_code,
                        erase=holder.erase,
                        group=holder.group,
                        erase_many=_holder_fails,
                    ),
                )
        assert profile_services.declared_erase_many is not _holder_fails
        expected = RuntimeError
    else:
        decisions.append((AUDIENCE, "renewed"))  # nothing to renew once withdrawn
        consent_record(
            purpose_code=AUDIENCE, event_type="withdrawn", **context["subject"], collection_method="web_form"
        )
        count += 1
        expected = ConsentError
    with pytest.raises(expected):
        consent_record_many(decisions=decisions, collection_method=context["method"], **context["subject"])
    assert _held(resident, False) == before
    assert LedgerEvent.objects.count() == count


def test_a_group_needs_its_eraser_and_shares_it() -> None:
    def erase(subject: DataSubject) -> dict[str, Any]:
        return {}

    def many(subject: DataSubject, codes: tuple[str, ...]) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="both a group and erase_many"):
        PurposeDataHolder(name="t.a", purpose_code="x", erase=erase, group="t")
    with pytest.raises(ValueError, match="both a group and erase_many"):
        PurposeDataHolder(name="t.a", purpose_code="x", erase=erase, erase_many=many)
    purpose_data.register_holder(
        PurposeDataHolder(name="t.a", purpose_code="x", erase=erase, group="t", erase_many=many)
    )
    try:
        with pytest.raises(PurposeDataError, match="share one erase_many"):
            purpose_data.register_holder(
                PurposeDataHolder(
                    name="t.b", purpose_code="y", erase=erase, group="t", erase_many=lambda s, c: {}
                )
            )
    finally:
        purpose_data.unregister_holder("t.a")
    assert purpose_data.erase_for_many(purpose_codes=[], subject=DataSubject(browser_hash="h")) == {}


@pytest.mark.django_db
def test_without_a_profile_the_declared_fields_cost_one_read(make_resident: Any) -> None:
    from profiles import services as profile_services  # noqa: PLC0415 - the holder under test

    resident = make_resident()
    with CaptureQueriesContext(connection) as queries:
        assert profile_services.declared_erase_many(DataSubject(user_id=resident.pk), (DECLARED, NEWS)) == {}
    assert len(queries) == 1
    DeclaredProfile.objects.create(user=resident, language="fr")
    with CaptureQueriesContext(connection) as queries:  # nothing held under the news purpose
        assert profile_services.declared_erase_many(DataSubject(user_id=resident.pk), (NEWS,)) == {}
    assert len(queries) == 1
    assert DeclaredProfile.objects.get(user=resident).language == "fr"
    assert profile_services.declared_erase_many(DataSubject(browser_hash="h"), (DECLARED,)) == {}
