"""Two page views of a theme new to a resident at the same moment (two tabs, two sites):
both count, neither fails (PostgreSQL; on SQLite one writer at a time is enforced by the
file lock, so the race cannot happen)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from consent.purpose_data import DataSubject
from consent.services import resident_decision_record
from profiles.models import Interest
from profiles.services import page_view_record
from tests.consent.test_concurrency_postgres import ensure_catalogue
from tests.profiles.conftest import BROWSING


@pytest.mark.postgres
@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs PostgreSQL (on SQLite one writer at a time is enforced by the file lock)",
)
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_first_view_of_a_theme_is_folded_not_refused(make_resident: Any) -> None:
    ensure_catalogue()
    resident = make_resident()
    resident_decision_record(user=resident, purpose_code=BROWSING, grant=True)
    subject = DataSubject(user_id=resident.pk)
    first_inserted = threading.Event()
    release_first = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                page_view_record(
                    subject=subject, site="www.nantes.fr", themes=["sport"], viewed_at=timezone.now()
                )
                first_inserted.set()
                release_first.wait(10)  # the new row is not committed yet
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def second() -> None:
        try:
            # Finds no row (the first is not committed), inserts, waits on the unique index.
            page_view_record(subject=subject, site="www.reze.fr", themes=["sport"], viewed_at=timezone.now())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_inserted.wait(10)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)  # the second request is now blocked on the first's uncommitted row
    release_first.set()
    one.join(10)
    two.join(10)
    assert errors == []
    interest = Interest.objects.get(user=resident, theme="sport")
    assert interest.views == 2
    assert set(interest.sources) == {"www.nantes.fr", "www.reze.fr"}
