"""POST /consent/api/v1/receipts/verify: anyone checks a consent receipt and its inclusion proof.

JSON in: {"receipt": "<JWS>", "proof": {…} or "<JSON text>" (optional)}; JSON out (200): whether
the signature holds, what the receipt states, and, with a proof, whether the event is included
in the signed tree head the proof names (consent.receipt_check). A receipt that fails a check
is an answer (200, `valid` false, a reason code); input that is not a receipt is a 400 problem
(RFC 7807); over the size limit 413, over the rate limit 429, another method 405. No cookie, no
CSRF: nothing is written and nothing about anyone is read. A DRF view, so that the OpenAPI
description (/api/schema/) includes it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from common.openapi import problem_responses, retry_after_header
from common.ratelimit import client_ip
from consent.api import schema as api_schema
from consent.api.problems import api_problem, json_object_body
from consent.receipt_check import (
    MAX_PROOF_CHARS,
    MAX_RECEIPT_CHARS,
    CheckInputError,
    ReceiptCheck,
    receipt_check,
    verification_throttled,
)

MAX_BODY_BYTES = MAX_RECEIPT_CHARS + MAX_PROOF_CHARS + 1024


def _time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def check_json(check: ReceiptCheck) -> dict[str, Any]:
    statement, inclusion = check.statement, check.inclusion
    return {
        "valid": check.valid,
        "signature": {"valid": check.signature_valid, "error": check.reason or None},
        "receipt": None
        if statement is None
        else {
            "event_id": statement.event_id,
            "purpose": statement.purpose_code,
            "purpose_title": statement.purpose_title,
            "event_type": statement.event_type,
            "occurred_at": _time(statement.occurred_at),
            "validity_duration": statement.valid_until,
            "collection_method": statement.collection_method,
            "notice_version": statement.notice_version,
            "log_id": statement.log_id,
            "leaf_index": statement.leaf_index,
            "leaf_hash": statement.leaf_hash,
            "kid": statement.kid,
        },
        "inclusion": None
        if inclusion is None
        else {
            "verified": inclusion.verified,
            "error": inclusion.reason or None,
            "tree_size": inclusion.tree_size,
            "root_hash": inclusion.root_hash or None,
            "tree_head_timestamp": _time(inclusion.tree_head_time),
        },
    }


@method_decorator(never_cache, name="dispatch")
class ReceiptVerifyView(APIView):
    """Anonymous (no authentication, hence no CSRF check: nothing is written), JSON only. The
    body is read by `json_object_body` (413, 415, 400 as the cookie API), not by DRF's parsers."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    parser_classes: list[Any] = []

    @extend_schema(
        tags=["Receipts"],
        operation_id="receipt_verify",
        summary="Check a consent receipt and its inclusion proof",
        description="Whether the receipt's signature holds (our published keys), what it states, and, "
        "with a proof, whether the event is included in the signed tree head the proof names. A "
        "receipt that fails a check is an answer (200, `valid` false, a reason code); input that is "
        "not a receipt is a 400 problem. Anonymous; nothing is written and nothing about anyone is "
        "read. Rate-limited per address.",
        parameters=[retry_after_header(429)],
        request={"application/json": api_schema.ReceiptVerifySerializer},
        responses={
            200: api_schema.ReceiptCheckSerializer,
            **problem_responses(400, 413, 415, 429),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        retry_after = verification_throttled(client_ip(request._request))
        if retry_after:
            response = api_problem(
                429, "rate_limited", _("Trop de requêtes"), _("Trop de vérifications depuis cette adresse.")
            )
            response["Retry-After"] = str(retry_after)
            return response
        body = json_object_body(request._request, max_bytes=MAX_BODY_BYTES)
        if isinstance(body, JsonResponse):
            return body
        try:
            check = receipt_check(body.get("receipt"), body.get("proof"))
        except CheckInputError as exc:
            return api_problem(400, exc.code, _("Requête invalide"), str(exc))
        return JsonResponse(check_json(check), status=200)
