"""The DPO statistics' pre-aggregated counts (consent.models.DailyCount, issue 14): kept by the
sequencer in the transaction that integrates the events, exact against the events themselves,
and the statistics count each event once whether it is integrated or still pending. Runs on
SQLite and on PostgreSQL (DATABASE_URL)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone

from consent import ledger
from consent.dpo import selectors as dpo_selectors
from consent.models import DailyCount, LedgerEvent, LedgerHead
from consent.services import (
    browser_subject_register,
    consent_record,
    ledger_integrate,
    subject_link_browser,
    tree_head_sign,
)
from tests.security.test_ledger_tampering import execute, unlock

BROWSER = "ZGFpbHktY291bnRzLWJyb3dzZXItaWQtMDAwMDAwMDAw"
PURPOSES = [
    "personalisation-declared",
    "personalisation-browsing",
    "service-news-email",
    "audience-measurement",
]
# UTC instants on both sides of midnight in Paris (23:30 UTC is 00:30 or 01:30 the next day).
MOMENTS = [
    datetime(2026, 3, 1, 22, 30, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
    datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
    datetime(2026, 3, 31, 23, 30, tzinfo=UTC),
    datetime(2026, 4, 15, 12, 0, tzinfo=UTC),
]


def _record(make_resident: Any, monkeypatch: Any, count: int, *, start: int = 0) -> list[LedgerEvent]:
    """`count` decisions at the MOMENTS (the clock set back for them only: the signing keys
    that sign the tree heads afterwards are valid now)."""
    residents = [make_resident() for _ in range(3)]
    events = []
    real_now = timezone.now
    with monkeypatch.context() as patch:
        for i in range(start, start + count):
            moment = MOMENTS[i % len(MOMENTS)] + timedelta(seconds=i)
            patch.setattr(timezone, "now", lambda moment=moment: moment)
            events.append(
                consent_record(
                    user=residents[i % 3],
                    purpose_code=PURPOSES[i % 4],
                    event_type=("given", "refused", "given", "withdrawn", "requested")[i % 5],
                    collection_method="web_form",
                )
            )
    assert timezone.now is real_now
    return events


def _from_events(*, integrated_only: bool) -> Counter[tuple[date, str, str]]:
    """The counts computed by hand from the events, in Python (not with the code under test)."""
    tz = ZoneInfo(settings.TIME_ZONE)
    size = LedgerHead.objects.get(pk=1).size
    counts: Counter[tuple[date, str, str]] = Counter()
    for event in LedgerEvent.objects.filter(linked_from__isnull=True):
        if integrated_only and event.seq >= size:
            continue
        counts[(event.occurred_at.astimezone(tz).date(), event.purpose_code, event.event_type)] += 1
    return counts


def _stored() -> Counter[tuple[date, str, str]]:
    return Counter(
        {(row.day, row.purpose_code, row.event_type): row.count for row in DailyCount.objects.all()}
    )


def test_the_sequencer_counts_exactly_the_events_it_integrates(
    ledger_ready: Any, make_resident: Any, monkeypatch: Any
) -> None:
    _record(make_resident, monkeypatch, 23)
    assert not DailyCount.objects.exists()  # appends count nothing: the sequencer does
    assert ledger_integrate(limit=10).integrated == 10
    assert _stored() == _from_events(integrated_only=True)
    assert sum(_stored().values()) == 10
    tree_head_sign()  # the rest, in one more batch
    assert _stored() == _from_events(integrated_only=True) == _from_events(integrated_only=False)
    assert sum(_stored().values()) == 23
    # Local days: 23:30 UTC on 1 March is 2 March in Paris.
    assert (date(2026, 3, 2), PURPOSES[1], "refused") in _stored()
    assert ledger.daily_counts_differences() == []


def test_linked_copies_are_left_out_of_the_counts(
    ledger_ready: Any, make_resident: Any, monkeypatch: Any
) -> None:
    resident = make_resident()
    secret = browser_subject_register(browser_id=BROWSER)
    consent_record(
        browser_id=BROWSER, purpose_code=PURPOSES[1], event_type="given", collection_method="cookie_widget"
    )
    copies = subject_link_browser(browser_id=BROWSER, browser_secret=secret, user=resident)
    assert copies and copies[0].linked_from
    tree_head_sign()
    assert sum(_stored().values()) == LedgerEvent.objects.count() - len(copies) == 1
    assert ledger.daily_counts_differences() == []


@pytest.mark.parametrize("bucket", ["day", "week", "month"])
def test_the_statistics_count_integrated_and_pending_events_once(
    ledger_ready: Any, make_resident: Any, monkeypatch: Any, bucket: str
) -> None:
    _record(make_resident, monkeypatch, 15)
    ledger_integrate(limit=9)  # 9 integrated, 6 pending
    _record(make_resident, monkeypatch, 7, start=15)  # and 7 more pending
    assert LedgerHead.objects.get(pk=1).size == 9
    query = dpo_selectors.parse_stats({"bucket": bucket, "from": "2026-02-01", "to": "2026-04-30"})
    results = {item.code: item.totals for item in dpo_selectors.consent_stats(query)}
    expected: dict[str, Counter[str]] = {}
    for (_day, code, kind), n in _from_events(integrated_only=False).items():
        series = dpo_selectors.SERIES_OF.get(kind)
        if series:
            expected.setdefault(code, Counter())[series] += n
    assert {code: {k: v for k, v in totals.items() if v} for code, totals in results.items()} == {
        code: dict(counter) for code, counter in expected.items()
    }
    # Integrating the rest changes nothing in what the DPO sees.
    tree_head_sign()
    assert {item.code: item.totals for item in dpo_selectors.consent_stats(query)} == results


def test_a_period_outside_the_events_counts_nothing(
    ledger_ready: Any, make_resident: Any, monkeypatch: Any
) -> None:
    _record(make_resident, monkeypatch, 5)
    tree_head_sign()
    query = dpo_selectors.parse_stats({"bucket": "month", "from": "2025-01-01", "to": "2025-12-31"})
    assert all(not any(item.totals.values()) for item in dpo_selectors.consent_stats(query))


def test_an_altered_count_is_named_and_rebuilt_from_the_events(
    ledger_ready: Any, make_resident: Any, monkeypatch: Any
) -> None:
    _record(make_resident, monkeypatch, 10)
    tree_head_sign()
    row = DailyCount.objects.order_by("day", "purpose_code", "event_type").first()
    assert row is not None
    DailyCount.objects.filter(pk=row.pk).update(count=row.count + 5)
    DailyCount.objects.create(day=date(2020, 1, 1), purpose_code=PURPOSES[0], event_type="given", count=3)
    differences = ledger.daily_counts_differences()
    assert len(differences) == 2
    assert (
        f"{row.day} {row.purpose_code} {row.event_type}: {row.count + 5} counted, {row.count} in the ledger"
        in (differences)
    )
    assert ledger.daily_counts_rebuild() == len(_from_events(integrated_only=True))
    assert ledger.daily_counts_differences() == []
    assert _stored() == _from_events(integrated_only=True)


def test_a_refused_batch_counts_nothing(ledger_ready: Any, make_resident: Any, monkeypatch: Any) -> None:
    """The sequencer checks each pending row before it integrates it: an altered row stops the
    batch, and with it the counts."""
    _record(make_resident, monkeypatch, 6)
    unlock()
    execute("UPDATE consent_ledgerevent SET event_type = %s WHERE seq = %s", ["given", 4])
    with pytest.raises(ledger.LedgerTampered):
        ledger_integrate()
    assert not DailyCount.objects.exists()
    assert LedgerHead.objects.get(pk=1).size == 0
