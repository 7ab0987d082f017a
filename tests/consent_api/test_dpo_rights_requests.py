"""The DPO's register of rights requests: exports and erasures, state, age, deadline, partners."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client as BrowserClient
from django.utils import timezone

from consent.dpo.selectors import rights_requests
from consent.erasure import erasure_request, partner_erasure_record
from consent.models import RightsRequest, RightsRequestState
from consent.rights_requests import export_request
from tests.conftest import MFA_AMR, open_session

pytestmark = pytest.mark.django_db


def test_open_requests_first_with_their_deadline(make_resident: Any, make_client: Any) -> None:
    alice = make_resident("alice@example.org")
    bob = make_resident("bob@example.org")
    export = export_request(user=alice).request
    erasure, _links = erasure_request(user=bob)
    partner = make_client(name="Médiathèques")
    partner_erasure_record(request_id=erasure.pk, client_id=partner.client_id, state="no_connector")
    done = RightsRequest.objects.create(
        user=alice, kind="export", state=RightsRequestState.DONE, completed_at=timezone.now()
    )
    # An export asked 40 days ago and still waiting is late; one answered in time is not.
    RightsRequest.objects.filter(pk=export.pk).update(requested_at=timezone.now() - timedelta(days=40))

    rows = rights_requests()
    assert [row.request.pk for row in rows] == [export.pk, erasure.pk, done.pk]
    late, pending, answered = rows
    assert late.overdue and late.age_days == 40
    assert not pending.overdue and not answered.overdue
    assert [(p.name, p.state) for p in pending.partners] == [("Médiathèques", "no_connector")]
    assert [row.request.pk for row in rights_requests(open_only=True)] == [export.pk, erasure.pk]


def test_the_page_lists_requests_without_naming_the_resident(
    dpo_http: BrowserClient, make_resident: Any
) -> None:
    alice = make_resident("alice@example.org")
    export = export_request(user=alice).request
    page = dpo_http.get("/dpo/demandes/")
    assert page.status_code == 200
    html = page.content.decode()
    assert str(export.pk) in html and "copie de mes données" in html and "en attente" in html
    assert "alice@example.org" not in html
    assert 'href="/dpo/demandes/"' in dpo_http.get("/dpo/").content.decode()  # in the console's menu
    assert str(export.pk) in dpo_http.get("/dpo/demandes/?etat=ouvertes").content.decode()
    RightsRequest.objects.filter(pk=export.pk).update(state=RightsRequestState.DONE)
    assert str(export.pk) not in dpo_http.get("/dpo/demandes/?etat=ouvertes").content.decode()


def test_residents_cannot_see_the_register(make_resident: Any) -> None:
    resident = open_session(BrowserClient(), make_resident("bob@example.org"), MFA_AMR)
    assert resident.get("/dpo/demandes/").status_code == 403
    assert BrowserClient().get("/dpo/demandes/").status_code == 302
