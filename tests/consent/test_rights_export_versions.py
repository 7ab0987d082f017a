"""The export's versions (consent.rights_requests, step 4): a partner's data recorded after the
build makes a new version with a new link; each version's expiry deletes only its own archive;
the partners' data goes with the last archive unless a partner may still answer. The answers
are recorded through the service the connectors' handler and the operators' form call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from consent import rights_requests
from consent.models import RightsPartnerData, RightsRequest, RightsRequestState

pytestmark = pytest.mark.django_db


def built(user: Any) -> RightsRequest:
    request = rights_requests.export_request(user=user).request
    assert request is not None
    assert relay_once(kinds=[rights_requests.KIND_EXPORT]).delivered == 1
    request.refresh_from_db()
    assert request.state == RightsRequestState.DONE
    return request


def test_late_data_makes_a_version_whose_expiry_is_its_own(resident: Any) -> None:
    request = built(resident)
    first_token = request.token_hash
    assert rights_requests.partner_export_record(
        request_id=request.pk, client_id="mediatheque", state="answered", data={"email": {"prêts": 3}}
    )
    assert relay_once(kinds=[rights_requests.KIND_EXPORT_UPDATE]).delivered == 1
    request.refresh_from_db()
    assert request.progress["version"] == 2 and request.token_hash != first_token
    assert request.progress["partners"]["mediatheque"]["state"] == "answered"
    # The first version's expiry comes: the second version's archive stays.
    OutboxMessage.objects.filter(kind=rights_requests.KIND_EXPORT_EXPIRE).update(
        next_attempt_at=timezone.now()
    )
    first_expiry = OutboxMessage.objects.get(
        idempotency_key=f"{rights_requests.KIND_EXPORT_EXPIRE}:{request.pk}"
    )
    relay_once(kinds=[rights_requests.KIND_EXPORT_EXPIRE])
    request.refresh_from_db()
    assert request.archive is not None
    first_expiry.refresh_from_db()
    assert first_expiry.status == OutboxMessage.Status.DELIVERED
    # The second version's expiry: archive and partners' data gone (nobody still to answer).
    RightsRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert rights_requests.export_expire(request_id=request.pk)
    request.refresh_from_db()
    assert request.archive is None and not RightsPartnerData.objects.filter(request=request).exists()


def test_the_partners_data_is_kept_while_a_partner_may_still_answer(resident: Any) -> None:
    request = built(resident)
    rights_requests.partner_export_record(
        request_id=request.pk,
        client_id="bibliotheque",
        state="requested",
        data={"library": {"status": "valid"}},
    )
    relay_once(kinds=[rights_requests.KIND_EXPORT_UPDATE])
    RightsRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert rights_requests.export_expire(request_id=request.pk)
    assert RightsPartnerData.objects.filter(request=request).count() == 1  # "requested": may answer
    # No answer came: at the one-month deadline, the message queued for then deletes it.
    at_deadline = OutboxMessage.objects.get(
        idempotency_key=f"{rights_requests.KIND_EXPORT_EXPIRE}:{request.pk}:deadline"
    )
    assert at_deadline.next_attempt_at == request.deadline
    RightsRequest.objects.filter(pk=request.pk).update(requested_at=timezone.now() - timedelta(days=40))
    OutboxMessage.objects.filter(pk=at_deadline.pk).update(next_attempt_at=timezone.now())
    relay_once(kinds=[rights_requests.KIND_EXPORT_EXPIRE])
    at_deadline.refresh_from_db()
    assert at_deadline.status == OutboxMessage.Status.DELIVERED
    assert not RightsPartnerData.objects.filter(request=request).exists()


def test_answers_to_a_failed_export_are_not_kept(resident: Any) -> None:
    request = built(resident)
    rights_requests.export_fail(request_id=request.pk, reason="test")
    assert not rights_requests.partner_export_record(
        request_id=request.pk, client_id="mediatheque", state="answered", data={"email": {"a": 1}}
    )
    assert not RightsPartnerData.objects.exists()
    with pytest.raises(ValueError, match="unknown partner state"):
        rights_requests.partner_export_record(request_id=request.pk, client_id="x", state="maybe")
