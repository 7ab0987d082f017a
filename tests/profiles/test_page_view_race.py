"""Concurrent first writes never fail: two first views of one theme at the same moment (two
tabs, a page reporting twice) both count, the second insert folding into the first one's row;
two first updates of a declared profile (a double click) both apply, one after the other.

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

from profiles.models import DeclaredProfile, Interest
from profiles.services import declared_update, page_view_record, subject_of
from tests.profiles.conftest import BROWSING, DECLARED, decide

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


def test_concurrent_first_updates_of_a_declared_profile_both_apply(resident: Any) -> None:
    importlib.import_module("consent.migrations.0003_seed_catalogue").seed(django_apps, None)
    decide(resident, DECLARED, True)
    first_wrote = threading.Event()
    failures: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                declared_update(user=resident, changes={"commune": "44109"})
                first_wrote.set()
                time.sleep(0.5)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            assert first_wrote.wait(10)
            declared_update(user=resident, changes={"themes": ["sport"]})
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
    profile = DeclaredProfile.objects.get(user=resident)
    assert (profile.commune, profile.themes) == ("44109", ["sport"])
