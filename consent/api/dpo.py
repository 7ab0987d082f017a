"""The DPO's REST API (session authentication, staff of the "dpo" group; read-only but for
tree-head signing). Same data and same audit of reads as the console (consent/dpo/).

- GET  /dpo/api/v1/events?user_email=&purpose=&partner=&type=&from=&to=&page=
- GET  /dpo/api/v1/events/<id>            (decrypted details: logged)
- GET  /dpo/api/v1/events/<id>/proof      inclusion proof against the latest signed tree head
- GET  /dpo/api/v1/events/<id>/receipt    signed receipt (JWS)
- GET  /dpo/api/v1/stats?purpose=&from=&to=&bucket=day|week|month
- GET  /dpo/api/v1/register?lang=fr|en    records of processing (GDPR Art. 30)
- POST /dpo/api/v1/verify                 recompute and check the whole ledger
- GET  /dpo/api/v1/tree-head              latest signed tree head; POST signs a new one
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from common.openapi import problem_responses
from common.problems import PROBLEM_CONTENT_TYPE
from consent import ledger
from consent.api import schema as api_schema
from consent.api.problems import api_problem
from consent.crypto import KeyDestroyed
from consent.dpo import access
from consent.dpo import selectors as dpo_selectors
from consent.dpo.access import DPO_API_PERMISSIONS
from consent.models import LedgerEvent, TreeHead
from consent.receipts import receipt_for_event
from consent.selectors import (
    LedgerTampered,
    event_by_id,
    event_details,
    event_proof,
    latest_tree_head,
    ledger_verify,
)
from consent.services import tree_head_sign
from identity.audit import audit_log
from identity.reauth import RecentMFAPermission, staff_request_audit
from identity.request_user import request_user

log = logging.getLogger(__name__)

# --- The OpenAPI description of these views (consent.api.schema holds the bodies) ---------------
DPO_TAG = "DPO"
_DPO_403 = (
    "Not the DPO (`dpo` staff group), no session, no CSRF token on a write, or not signed in with "
    "two factors (`mfa_required`)"
)
_TAMPERED_409 = {
    (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        api_schema.LedgerTamperedProblemSerializer,
        description="`ledger_tampered`: the answer would rest on altered ledger rows; nothing is shown "
        "or signed from them. Run the full verification (`POST /dpo/api/v1/verify`).",
    )
}
_LANG = OpenApiParameter(
    "lang", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["fr", "en"], description="Default fr."
)
_DATE_FROM = OpenApiParameter(
    "from", OpenApiTypes.DATE, OpenApiParameter.QUERY, description="First day (YYYY-MM-DD), local time."
)
_DATE_TO = OpenApiParameter(
    "to", OpenApiTypes.DATE, OpenApiParameter.QUERY, description="Last day (YYYY-MM-DD), local time."
)
_EVENT_FILTERS = [
    OpenApiParameter(
        "user_email",
        OpenApiTypes.EMAIL,
        OpenApiParameter.QUERY,
        description="A resident's events, by email address (the read is logged); not with `resident`.",
    ),
    OpenApiParameter(
        "resident",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="A resident's events, by account id.",
    ),
    OpenApiParameter("purpose", OpenApiTypes.STR, OpenApiParameter.QUERY, description="A purpose code."),
    OpenApiParameter(
        "partner", OpenApiTypes.STR, OpenApiParameter.QUERY, description="A partner's client_id."
    ),
    OpenApiParameter(
        "type",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        enum=api_schema.EVENT_TYPES,
        description="An event type.",
    ),
    _DATE_FROM,
    _DATE_TO,
    OpenApiParameter("page", OpenApiTypes.INT, OpenApiParameter.QUERY, description="From 1."),
]
_RECEIPT = OpenApiResponse(
    OpenApiTypes.STR, description="The signed receipt: a JWS (compact serialisation), as an attachment."
)


def tampered_problem(exc: LedgerTampered) -> JsonResponse:
    """409 urn:cum:problem:ledger_tampered: the answer would rest on ledger rows (or Merkle
    nodes) altered in the database; nothing is shown, exported or signed from them."""
    log.warning("ledger tampering met by a DPO API read at positions %s", exc.positions)
    where = ", ".join(f"#{position}" for position in exc.positions) or ", ".join(exc.event_ids)
    detail = _(
        "Le registre des consentements est altéré ou illisible (%(where)s) : rien n'est montré ni "
        "signé à partir de ces données. Lancez la vérification complète du registre "
        "(POST /dpo/api/v1/verify) et traitez l'incident."
    ) % {"where": where or _("voir « problems »")}
    return api_problem(
        409,
        "ledger_tampered",
        _("Registre des consentements altéré"),
        detail,
        positions=exc.positions,
        event_ids=exc.event_ids,
        problems=[problem.detail for problem in exc.problems],
        verify=reverse("consent:dpo-api:verify"),
        verification_page=reverse("consent:dpo:ledger"),
    )


def _invalid(exc: dpo_selectors.FilterError) -> JsonResponse:
    return api_problem(400, "invalid_parameters", _("Paramètres invalides"), str(exc), errors=exc.errors)


def _not_found() -> JsonResponse:
    return api_problem(404, "not_found", _("Événement introuvable"))


def _links(event: LedgerEvent) -> dict[str, str]:
    return {
        "self": reverse("consent:dpo-api:event", args=[event.id]),
        "proof": reverse("consent:dpo-api:event-proof", args=[event.id]),
        "receipt": reverse("consent:dpo-api:event-receipt", args=[event.id]),
    }


def _tree_head_dict(head: TreeHead) -> dict[str, Any]:
    return {
        "id": head.pk,
        "tree_size": head.tree_size,
        "root_hash": bytes(head.root_hash).hex(),
        "timestamp": head.timestamp.isoformat(),
        "kid": head.kid,
        "signature": head.signature,
        "log_id": ledger.log_id(),
    }


class DPOAPIView(APIView):
    """The DPO at the MFA level (consent.dpo.access); every request that gets through is
    audited with its status (identity.reauth.staff_request_audit)."""

    permission_classes = DPO_API_PERMISSIONS
    renderer_classes = [JSONRenderer]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._staff_audited = True  # authentication and permissions passed

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, LedgerTampered):
            return tampered_problem(exc)
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        if getattr(self, "_staff_audited", False):
            staff_request_audit(request._request, status=response.status_code)
        return response


class EventsView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_events_search",
        summary="Search the ledger's events",
        description="Pseudonymous events, newest first, by pages. A search by resident is logged.",
        parameters=_EVENT_FILTERS,
        responses={
            200: api_schema.LedgerEventPageSerializer,
            **problem_responses(400, 403, 404, descriptions={403: _DPO_403, 404: "`page_out_of_range`"}),
            **_TAMPERED_409,
        },
    )
    def get(self, request: Request) -> HttpResponse:
        try:
            filters = dpo_selectors.parse_filters(request.query_params)
        except dpo_selectors.FilterError as exc:
            return _invalid(exc)
        events = dpo_selectors.search(filters)
        paginator = Paginator(events, dpo_selectors.PAGE_SIZE)
        if filters.page > max(1, paginator.num_pages):
            return api_problem(404, "page_out_of_range", _("Page inexistante"))
        page = paginator.page(filters.page)
        dpo_selectors.checked_page(events, page)
        if filters.by_resident:
            access.log_read(
                dpo=request_user(request),
                view="api_events_search",
                subject=filters.resident,
                filters=filters.for_log(),
                resident_found=filters.resident is not None,
                count=paginator.count,
            )
        base = reverse("consent:dpo-api:events")

        def page_url(number: int) -> str:
            return f"{base}?{filters.query_string()}&page={number}".replace("?&", "?")

        return JsonResponse(
            {
                "count": paginator.count,
                "page": page.number,
                "pages": paginator.num_pages,
                "page_size": dpo_selectors.PAGE_SIZE,
                "next": page_url(page.next_page_number()) if page.has_next() else None,
                "previous": page_url(page.previous_page_number()) if page.has_previous() else None,
                "resident_found": filters.resident_found,
                "results": [{**dpo_selectors.event_dict(event), "links": _links(event)} for event in page],
            }
        )


class EventDetailView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_event_read",
        summary="One event, with its decrypted details",
        description="The read is logged (`dpo.read`).",
        responses={
            200: api_schema.LedgerEventDetailSerializer,
            **problem_responses(403, 404, descriptions={403: _DPO_403}),
            **_TAMPERED_409,
        },
    )
    def get(self, request: Request, event_id: uuid.UUID) -> HttpResponse:
        event = event_by_id(event_id)
        if event is None:
            return _not_found()
        try:
            details = event_details(event)
            erased = False
        except KeyDestroyed:
            details, erased = None, True
        access.log_read(
            dpo=request_user(request),
            view="api_event_detail",
            subject=dpo_selectors.subject_user(event),
            event=str(event.id),
            details_read=details is not None,
        )
        return JsonResponse(
            {
                **dpo_selectors.event_dict(event),
                "details": details,
                "details_erased": erased,
                "links": _links(event),
            }
        )


class EventProofView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_event_proof",
        summary="The event's inclusion proof",
        description="Against the latest signed tree head covering the event (RFC 9162); checked before "
        "it is returned. The read is logged.",
        responses={
            200: api_schema.InclusionProofSerializer,
            **problem_responses(
                403,
                404,
                409,
                descriptions={
                    403: _DPO_403,
                    409: "`no_tree_head` (no signed tree head covers the event yet: `hint` says how to "
                    "sign one), or `ledger_tampered` with the members of `LedgerTamperedProblem`",
                },
            ),
        },
    )
    def get(self, request: Request, event_id: uuid.UUID) -> HttpResponse:
        event = event_by_id(event_id)
        if event is None:
            return _not_found()
        try:
            proof = event_proof(event=event)
        except ledger.ProofError as exc:
            return api_problem(
                409,
                "no_tree_head",
                _("Aucune tête d'arbre signée ne couvre cet événement"),
                str(exc),
                hint="POST /dpo/api/v1/tree-head",
            )
        access.log_read(
            dpo=request_user(request),
            view="api_proof",
            subject=dpo_selectors.subject_user(event),
            event=str(event.id),
        )
        return JsonResponse(proof)


class EventReceiptView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_event_receipt",
        summary="The event's signed receipt",
        description="The read is logged.",
        responses={
            (200, "application/jose"): _RECEIPT,
            **problem_responses(403, 404, descriptions={403: _DPO_403}),
            **_TAMPERED_409,
        },
    )
    def get(self, request: Request, event_id: uuid.UUID) -> HttpResponse:
        event = event_by_id(event_id)
        if event is None:
            return _not_found()
        access.log_read(
            dpo=request_user(request),
            view="api_receipt",
            subject=dpo_selectors.subject_user(event),
            event=str(event.id),
        )
        response = HttpResponse(receipt_for_event(event), content_type="application/jose")
        response["Content-Disposition"] = f'attachment; filename="recu-{event.id}.jws"'
        return response


class StatsView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_stats",
        summary="Grants, refusals, withdrawals and expiries per period",
        description="Per purpose and per bucket of time (local time, `timezone`). Copies made when a "
        "browser's history is attached to an account are not counted twice.",
        parameters=[
            OpenApiParameter(
                "purpose", OpenApiTypes.STR, OpenApiParameter.QUERY, description="A purpose code."
            ),
            OpenApiParameter(
                "bucket",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["day", "week", "month"],
                default="week",
            ),
            _DATE_FROM,
            _DATE_TO,
            _LANG,
        ],
        responses={
            200: api_schema.StatsSerializer,
            **problem_responses(400, 403, descriptions={403: _DPO_403}),
            **_TAMPERED_409,
        },
    )
    def get(self, request: Request) -> HttpResponse:
        try:
            query = dpo_selectors.parse_stats(request.query_params)
        except dpo_selectors.FilterError as exc:
            return _invalid(exc)
        language = request.query_params.get("lang") or "fr"
        results = dpo_selectors.consent_stats(query, language=language)
        return JsonResponse(
            {
                **query.params(),
                "timezone": settings.TIME_ZONE,
                "series": {
                    "grants": ["given", "renewed"],
                    "refusals": ["refused"],
                    "withdrawals": ["withdrawn", "revoked"],
                    "expiries": ["expired"],
                },
                "purposes": [item.as_dict() for item in results],
            }
        )


class RegisterView(DPOAPIView):
    # An export of the register of processing: a recent MFA sign-in ("sudo mode").
    permission_classes = [*DPO_API_PERMISSIONS, RecentMFAPermission]

    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_register",
        summary="The records of processing (GDPR Art. 30)",
        description="Built from the purpose catalogue. An export: it needs a sign-in with two factors "
        "within the last 10 minutes (else 403 `recent_mfa_required`, whose `reauthenticate` says where).",
        parameters=[_LANG],
        responses={
            200: api_schema.RegisterSerializer,
            **problem_responses(
                400, 403, descriptions={403: _DPO_403 + ", or no recent sign-in (`recent_mfa_required`)"}
            ),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        language = request.query_params.get("lang") or "fr"
        if language not in ("fr", "en"):
            return _invalid(dpo_selectors.FilterError({"lang": "fr | en"}))
        return JsonResponse(
            dpo_selectors.register_document(language), json_dumps_params={"ensure_ascii": False}
        )


class VerifyView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_ledger_verify",
        summary="Recompute and check the whole ledger",
        description="Every leaf, the tree and every signed tree head, from the stored rows. Never a "
        "problem for what it finds: `ok` and `problems` say it. Audited.",
        request=None,
        responses={
            200: api_schema.LedgerVerificationSerializer,
            **problem_responses(403, descriptions={403: _DPO_403}),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        result = ledger_verify()
        audit_log(
            event="dpo.ledger_verified",
            acting_user=request_user(request),
            data={"ok": result.ok, "size": result.size, "problems": len(result.problems)},
        )
        return JsonResponse(
            {
                "ok": result.ok,
                "size": result.size,
                "root_hash": result.root_hash,
                "tree_heads_checked": result.tree_heads_checked,
                "problems": [problem.__dict__ for problem in result.problems],
                "warnings": result.warnings,
                "seconds": round(result.seconds, 3),
            }
        )


class TreeHeadView(DPOAPIView):
    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_tree_head_read",
        summary="The latest signed tree head",
        responses={
            200: api_schema.TreeHeadSerializer,
            **problem_responses(
                403, 404, descriptions={403: _DPO_403, 404: "`no_tree_head`: none signed yet"}
            ),
            **_TAMPERED_409,
        },
    )
    def get(self, request: Request) -> HttpResponse:
        head = latest_tree_head()
        if head is None:
            return api_problem(404, "no_tree_head", _("Aucune tête d'arbre signée"))
        return JsonResponse(_tree_head_dict(head))

    @extend_schema(
        tags=[DPO_TAG],
        operation_id="dpo_tree_head_sign",
        summary="Sign a new tree head",
        description="Signs the ledger's current size and root (as the `sign_tree_head` cron job does). "
        "Audited.",
        request=None,
        responses={
            201: api_schema.TreeHeadSerializer,
            **problem_responses(403, descriptions={403: _DPO_403}),
            **_TAMPERED_409,
        },
    )
    def post(self, request: Request) -> HttpResponse:
        head = tree_head_sign()
        audit_log(
            event="dpo.tree_head_signed",
            acting_user=request_user(request),
            data={"tree_head": head.pk, "size": head.tree_size},
        )
        return JsonResponse(_tree_head_dict(head), status=201)
