"""End to end with the real worker process (`manage.py outbox_worker` in its own OS process,
as tests/oidc/test_backchannel_logout.py does): the resident asks, the grace period ends, the
worker erases, the partner receives the back-channel logout on a real port, the ledger still
verifies, the status page shows every step and the partner's answer."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client as BrowserClient
from django.utils import timezone

from connectors.models import OutboxMessage
from consent import erasure
from consent.models import RightsRequest, RightsRequestState, Subject
from consent.selectors import ledger_verify
from consent.services import consent_record
from identity.models import User
from identity.oidc.models import AccessToken
from tests.conftest import OIDCFlow, deliver_emails
from tests.connectors.conftest import run_worker  # noqa: F401  (fixture)
from tests.oidc.conftest import RelyingPartyServer, complete_flow, relying_party, sign_in  # noqa: F401

STATUS_LINK = re.compile(r"https?://\S+(/compte/suppression/etat/[^/\s]+/)")


@pytest.mark.django_db(transaction=True)
def test_the_worker_process_erases_and_tells_the_partner(
    client: BrowserClient,
    resident: Any,
    make_client: Any,
    relying_party: RelyingPartyServer,  # noqa: F811
    run_worker: Any,  # noqa: F811
) -> None:
    partner = make_client(
        name="Médiathèques",
        backchannel_logout_uri=relying_party.url,
        backchannel_logout_session_required=True,
    )
    sign_in(client, resident.email)
    complete_flow(OIDCFlow(client, partner))
    event = consent_record(
        user=resident, purpose_code="service-news-email", event_type="given", collection_method="web_form"
    )
    assert client.post("/compte/supprimer/", {"confirm": "yes"}).status_code == 302
    deliver_emails()
    status = STATUS_LINK.search(mail.outbox[-1].body)
    assert status
    request = RightsRequest.objects.get(user=resident)

    run_worker("--once")  # not due yet: nothing happens
    assert User.objects.filter(pk=resident.pk).exists()

    past = timezone.now() - timedelta(seconds=1)  # the grace period is over
    RightsRequest.objects.filter(pk=request.pk).update(not_before=past)
    OutboxMessage.objects.filter(kind=erasure.KIND_ERASURE).update(next_attempt_at=past)
    run_worker("--once")  # the erasure
    run_worker("--once")  # what it queued: the back-channel logout, the partner's erasure request

    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE
    assert not User.objects.filter(pk=resident.pk).exists()
    assert not AccessToken.objects.filter(user_id=resident.pk).exists()
    assert Subject.objects.get(pk=event.subject_id).key_destroyed_at is not None
    assert ledger_verify().ok
    assert len(relying_party.received) == 1
    assert set(relying_party.received[0]["fields"]) == {"logout_token"}
    assert request.progress["partners"][partner.client_id]["state"] == erasure.PARTNER_NO_CONNECTOR
    assert not OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).exists()

    html = BrowserClient().get(status.group(1)).content.decode()
    assert partner.client.name in html and resident.email not in html
