"""Mon compte › Supprimer mon compte in a real browser, scanned with axe-core.

A resident signs in, opens the erasure page from the summary, asks for the deletion with a
click, sees it pending, opens the status and cancel links of the email, cancels with one
click, asks again, lets the grace period end (time moved, the real outbox handler runs) and
reads the status page. Every state (the explanation, pending, the cancel link, the status
page waiting and done) has no WCAG 2.1 A/AA violation, in French and English, at 1280 px
and 360 px (no horizontal scrolling there).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from consent.erasure import KIND_ERASURE, KIND_PARTNER_ERASURE
from consent.models import RightsRequest, RightsRequestState
from identity.models import User
from tests.browser.conftest import check_page as check
from tests.browser.conftest import signed_in_page
from tests.conftest import deliver_emails

pytestmark = pytest.mark.django_db(transaction=True)

CANCEL_LINK = re.compile(r"/compte/suppression/annuler/[^/\s]+/")
STATUS_LINK = re.compile(r"/compte/suppression/etat/[^/\s]+/")
TEXT = {
    "section": {
        "fr": "Supprimer mon compte, ou annuler une suppression demandée",
        "en": "Delete my account, or cancel a requested deletion",
    },
    "title": {"fr": "Supprimer mon compte", "en": "Delete my account"},
    "ask": {"fr": "Demander la suppression de mon compte", "en": "Ask for my account to be deleted"},
    "cancel": {
        "fr": "Annuler la suppression et garder mon compte",
        "en": "Cancel the deletion and keep my account",
    },
}


def links() -> tuple[str, str]:
    deliver_emails()
    body = next(m.body for m in reversed(mail.outbox) if CANCEL_LINK.search(m.body))
    cancel, status = CANCEL_LINK.search(body), STATUS_LINK.search(body)
    assert cancel and status, body
    return cancel.group(0), status.group(0)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_asking_cancelling_and_the_status_page_pass_axe(
    live_server: Any, chromium: Any, resident: Any, language: str
) -> None:
    with signed_in_page(chromium, live_server.url, resident.email, language) as page:
        page.goto(live_server.url + "/compte/")
        page.get_by_role("link", name=TEXT["section"][language]).click()
        page.wait_for_url("**/compte/supprimer/")
        assert page.get_by_role("heading", level=1).inner_text() == TEXT["title"][language]
        check(page, language, "explanation")

        page.get_by_role("button", name=TEXT["ask"][language]).click()
        page.wait_for_load_state()
        assert RightsRequest.objects.get(user=resident).state == RightsRequestState.WAITING
        check(page, language, "pending")

        # Signing in again (another browser) shows the pending deletion and its cancel button.
        with signed_in_page(chromium, live_server.url, resident.email, language) as second:
            assert second.get_by_role("button", name=TEXT["cancel"][language]).count() == 1
            check(second, language, "sign-in notice")

        cancel, status = links()
        page.goto(live_server.url + status)
        check(page, language, "status, waiting")
        page.goto(live_server.url + cancel)
        check(page, language, "cancel link")
        page.get_by_role("button", name=TEXT["cancel"][language]).click()
        page.wait_for_load_state()
        assert RightsRequest.objects.get(user=resident).state == RightsRequestState.CANCELLED
        check(page, language, "cancelled")

        # Again, and this time the grace period ends.
        page.goto(live_server.url + "/compte/supprimer/")
        page.get_by_role("button", name=TEXT["ask"][language]).click()
        page.wait_for_load_state()
        _cancel, status = links()
        past = timezone.now() - timedelta(seconds=1)
        RightsRequest.objects.filter(state=RightsRequestState.WAITING).update(not_before=past)
        OutboxMessage.objects.filter(kind=KIND_ERASURE, status="pending").update(next_attempt_at=past)
        while relay_once(kinds=[KIND_ERASURE, KIND_PARTNER_ERASURE]).processed:
            pass
        assert not User.objects.filter(pk=resident.pk).exists()
        page.goto(live_server.url + status)
        check(page, language, "status, done")
