"""Two first views of one theme at the same moment (two tabs, a page reporting twice) both
count: the second insert meets the first one's row and folds into it, never a 500.

PostgreSQL only: SQLite serialises writers, so the race cannot happen there.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db import connection, connections, transaction
from django.utils import timezone

from profiles.models import Interest
from profiles.services import page_view_record, subject_of
from tests.profiles.conftest import BROWSING, decide

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises writers"),
]


def test_concurrent_first_views_of_a_theme_both_count(resident: Any) -> None:
    importlib.import_module("consent.migrations.0003_seed_catalogue").seed(django_apps, None)
    decide(resident, BROWSING, True)
    subject = subject_of(resident)
    first_wrote = threading.Event()
    failures: list[BaseException] = []

    def view() -> None:
        page_view_record(subject=subject, site="www.nantes.fr", themes=["culture"], viewed_at=timezone.now())

    def first() -> None:
        try:
            with transaction.atomic():
                view()
                first_wrote.set()
                time.sleep(0.5)  # the second insert waits on this uncommitted row
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            assert first_wrote.wait(10)
            view()
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert failures == []
    interest = Interest.objects.get(user=resident, theme="culture")
    assert interest.views == 2
    assert interest.sources["www.nantes.fr"]["views"] == 2
