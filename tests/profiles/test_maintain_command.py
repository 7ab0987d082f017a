"""`manage.py profiles_maintain`, the daily sweep of personalisation data (cron)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from consent.models import ConsentState
from consent.purpose_data import DataSubject
from profiles.models import DeclaredProfile, Interest
from profiles.services import declared_update, page_view_record
from tests.profiles.conftest import BROWSING, DECLARED

pytestmark = pytest.mark.django_db


def _run() -> dict[str, int]:
    out = StringIO()
    call_command("profiles_maintain", stdout=out)
    return {name: int(count) for name, count in (line.split("=") for line in out.getvalue().split())}


def test_nothing_to_do_prints_zero_counts(db: Any) -> None:
    assert _run() == {
        "declared_not_granted": 0,
        "interest_not_granted": 0,
        "interestcorrection_not_granted": 0,
        "interests_faded_or_expired": 0,
        "interests_sources_trimmed": 0,
    }


def test_expired_consents_faded_and_old_interests_are_swept_and_counted(consenting: Any) -> None:
    declared_update(user=consenting, changes={"commune": "44109"})
    subject = DataSubject(user_id=consenting.pk)
    now = timezone.now()
    page_view_record(subject=subject, site="www.nantes.fr", themes=["sport"], viewed_at=now)
    # A week-old single view at a 30-day half-life stays; make one faded: 10 half-lives old.
    faded = Interest.objects.create(
        user=consenting,
        theme="culture",
        score=1.0,
        score_at=now - timedelta(days=300),
        views=1,
        first_seen_at=now - timedelta(days=300),
        last_seen_at=now - timedelta(days=300),
        sources={},
    )
    ConsentState.objects.filter(subject__user=consenting, purpose__code=DECLARED).update(
        valid_until=now - timedelta(seconds=1)
    )
    counts = _run()
    assert counts["declared_not_granted"] == 1 and counts["interests_faded_or_expired"] == 1
    assert not DeclaredProfile.objects.filter(user=consenting).exists()
    assert not Interest.objects.filter(pk=faded.pk).exists()
    assert Interest.objects.filter(user=consenting, theme="sport").exists()
    # Browsing expired too: the next run erases the interests of that resident.
    ConsentState.objects.filter(subject__user=consenting, purpose__code=BROWSING).update(
        valid_until=now - timedelta(seconds=1)
    )
    assert _run()["interest_not_granted"] == 1
    assert not Interest.objects.exists()
    # Idempotent.
    assert set(_run().values()) == {0}
