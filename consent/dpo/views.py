"""The DPO's read-only audit console (server-rendered; staff of the "dpo" group).

Thin views: parameters are validated and data read by consent/dpo/selectors.py; every read
of a resident's personal data (search by resident, event detail, receipt, proof, export)
writes a "dpo.read" audit row; every request a "staff.request" row (consent/dpo/access.py).
Exports (CSV, JSON, the register of processing) need a sign-in at the MFA level within the
last 10 minutes (identity.reauth.recent_mfa_required).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consent import ledger
from consent.crypto import KeyDestroyed
from consent.dpo import access, charts
from consent.dpo import selectors as dpo_selectors
from consent.dpo.access import dpo_required
from consent.models import EventType
from consent.receipts import receipt_for_event
from consent.selectors import (
    LedgerTampered,
    event_by_id,
    event_details,
    event_proof,
    events_check,
    latest_tree_head,
    ledger_verify,
    purposes_catalogue,
)
from consent.services import tree_head_sign
from identity.audit import audit_log
from identity.reauth import recent_mfa_required
from identity.request_user import request_user

log = logging.getLogger(__name__)


def tampered_page(request: HttpRequest, exc: LedgerTampered) -> HttpResponse:
    """409: what was asked rests on ledger rows (or Merkle nodes) altered in the database.
    Nothing is shown, exported or signed from them; the page names the positions and sends
    the DPO to the whole-ledger verification."""
    log.warning("ledger tampering met by a DPO read at positions %s", exc.positions)
    return render(
        request,
        "consent/dpo/tampered.html",
        {
            "positions": exc.positions,
            "event_ids": [] if exc.positions else exc.event_ids,
            "problems": [problem.detail for problem in exc.problems],
        },
        status=409,
    )


def refuses_tampered(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """A console view that answers `tampered_page` instead of failing on altered rows."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except LedgerTampered as exc:
            return tampered_page(request, exc)

    return wrapper


def _language() -> str:
    return "en" if (translation.get_language() or "fr").startswith("en") else "fr"


SEARCH_FIELDS = ("user_email", "purpose", "partner", "type", "from", "to")


def _search_context(data: Any) -> dict[str, Any]:
    return {
        "purposes": purposes_catalogue(include_inactive=True),
        "partners": dpo_selectors.partners_known(),
        "event_types": EventType.choices,
        "values": {key: data.get(key, "") for key in SEARCH_FIELDS},
    }


@dpo_required
@require_http_methods(["GET", "POST"])
@refuses_tampered
def search(request: HttpRequest) -> HttpResponse:
    """Home of the console: search ledger events by resident, purpose, partner, type and period.

    The form is posted, then redirected to a URL naming the resident by account id: the
    email address typed never appears in a URL (browser history, access logs).
    """
    data = request.POST if request.method == "POST" else request.GET
    context = _search_context(data)
    submitted = request.method == "POST" or any(data.get(key) for key in (*SEARCH_FIELDS, "resident", "page"))
    if not submitted:
        return render(request, "consent/dpo/search.html", context)
    try:
        filters = dpo_selectors.parse_filters(data)
    except dpo_selectors.FilterError as exc:
        context["errors"] = exc.errors
        return render(request, "consent/dpo/search.html", context, status=400)
    if request.method == "POST" and not (filters.user_email and filters.resident is None):
        response = HttpResponseRedirect(
            f"{reverse('consent:dpo:search')}?{filters.without_email().query_string()}"
        )
        response.status_code = 303
        return response
    events = dpo_selectors.search(filters)
    paginator = Paginator(events, dpo_selectors.PAGE_SIZE)
    if filters.page > max(1, paginator.num_pages):
        raise Http404
    page = paginator.page(filters.page)
    dpo_selectors.checked_page(events, page)
    if filters.by_resident:
        access.log_read(
            dpo=request_user(request),
            view="events_search",
            subject=filters.resident,
            filters=filters.for_log(),
            resident_found=filters.resident is not None,
            count=paginator.count,
        )
    if filters.resident is not None:
        context["values"]["user_email"] = filters.resident.email
    context.update(
        {"filters": filters, "page": page, "submitted": True, "query": filters.without_email().query_string()}
    )
    return render(request, "consent/dpo/search.html", context)


def _export_filters(request: HttpRequest) -> dpo_selectors.EventFilters | HttpResponse:
    try:
        return dpo_selectors.parse_filters(request.GET)
    except dpo_selectors.FilterError as exc:
        context = _search_context(request.GET)
        context["errors"] = exc.errors
        return render(request, "consent/dpo/search.html", context, status=400)


@dpo_required
@recent_mfa_required
@require_GET
@refuses_tampered
def export_csv(request: HttpRequest) -> HttpResponseBase:
    filters = _export_filters(request)
    if isinstance(filters, HttpResponse):
        return filters
    events = dpo_selectors.search(filters)
    # Checked before the first byte: a streamed answer cannot become a refusal half-way.
    events_check(events)
    access.log_read(
        dpo=request_user(request),
        view="export_csv",
        subject=filters.resident,
        filters=filters.for_log(),
        count=events.count(),
    )
    response = StreamingHttpResponse(dpo_selectors.export_csv(events), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="evenements-consentement-{stamp}.csv"'
    return response


@dpo_required
@recent_mfa_required
@require_GET
@refuses_tampered
def export_json(request: HttpRequest) -> HttpResponse:
    filters = _export_filters(request)
    if isinstance(filters, HttpResponse):
        return filters
    document = dpo_selectors.export_json(dpo_selectors.search(filters), filters)
    access.log_read(
        dpo=request_user(request),
        view="export_json",
        subject=filters.resident,
        filters=filters.for_log(),
        count=document["count"],
    )
    response = JsonResponse(document, json_dumps_params={"ensure_ascii": False, "indent": 2})
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="evenements-consentement-{stamp}.json"'
    return response


def _event_or_404(event_id: uuid.UUID) -> Any:
    event = event_by_id(event_id)
    if event is None:
        raise Http404
    return event


@dpo_required
@require_GET
@refuses_tampered
def event_detail(request: HttpRequest, event_id: uuid.UUID) -> HttpResponse:
    event = _event_or_404(event_id)
    resident = dpo_selectors.subject_user(event)
    try:
        details = event_details(event)
        details_state = "none" if details is None else "ok"
    except KeyDestroyed:
        details, details_state = None, "erased"
    access.log_read(
        dpo=request_user(request),
        view="event_detail",
        subject=resident,
        event=str(event.id),
        details_read=details_state == "ok",
    )
    covered = latest_tree_head()
    return render(
        request,
        "consent/dpo/event.html",
        {
            "event": event,
            "leaf_hash": bytes(event.leaf_hash).hex(),
            "details": json.dumps(details, indent=2, ensure_ascii=False) if details else None,
            "details_state": details_state,
            "linked_account": resident is not None,
            "proof_available": covered is not None and covered.tree_size > event.seq,
        },
    )


@dpo_required
@require_GET
@refuses_tampered
def event_receipt(request: HttpRequest, event_id: uuid.UUID) -> HttpResponse:
    event = _event_or_404(event_id)
    access.log_read(
        dpo=request_user(request),
        view="receipt",
        subject=dpo_selectors.subject_user(event),
        event=str(event.id),
    )
    response = HttpResponse(receipt_for_event(event), content_type="application/jose")
    response["Content-Disposition"] = f'attachment; filename="recu-{event.id}.jws"'
    return response


@dpo_required
@require_GET
@refuses_tampered
def event_proof_download(request: HttpRequest, event_id: uuid.UUID) -> HttpResponse:
    event = _event_or_404(event_id)
    try:
        proof = event_proof(event=event)
    except ledger.ProofError:
        messages.error(
            request, _("Aucune tête d'arbre signée ne couvre encore cet événement : signez-en une.")
        )
        return redirect("consent:dpo:ledger")
    access.log_read(
        dpo=request_user(request),
        view="proof",
        subject=dpo_selectors.subject_user(event),
        event=str(event.id),
    )
    response = JsonResponse(proof, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="preuve-{event.id}.json"'
    return response


@dpo_required
@require_GET
@refuses_tampered
def stats(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {
        "purposes": purposes_catalogue(include_inactive=True),
        "values": {key: request.GET.get(key, "") for key in ("purpose", "bucket", "from", "to")},
        "buckets": (("day", _("jour")), ("week", _("semaine")), ("month", _("mois"))),
    }
    try:
        query = dpo_selectors.parse_stats(request.GET)
    except dpo_selectors.FilterError as exc:
        context["errors"] = exc.errors
        return render(request, "consent/dpo/stats.html", context, status=400)
    results = dpo_selectors.consent_stats(query, language=_language())
    context["values"] = {**context["values"], **query.params()}
    context["query"] = query
    context["results"] = [
        {"stats": item, "chart": charts.bar_chart(item.buckets, bucket=query.bucket)} for item in results
    ]
    context["series"] = charts.SERIES
    return render(request, "consent/dpo/stats.html", context)


@dpo_required
@recent_mfa_required
@require_GET
def register(request: HttpRequest) -> HttpResponse:
    return render(
        request, "consent/dpo/register.html", {"register": dpo_selectors.register_document(_language())}
    )


@dpo_required
@require_http_methods(["GET", "POST"])
def ledger_page(request: HttpRequest) -> HttpResponse:
    """GET: the latest signed tree head; POST: recompute and check the whole ledger."""
    result = None
    if request.method == "POST":
        result = ledger_verify()
        audit_log(
            event="dpo.ledger_verified",
            acting_user=request_user(request),
            data={"ok": result.ok, "size": result.size, "problems": len(result.problems)},
        )
    head = latest_tree_head()
    return render(
        request,
        "consent/dpo/ledger.html",
        {"result": result, "head": head, "head_root": bytes(head.root_hash).hex() if head else ""},
    )


@dpo_required
@require_POST
@refuses_tampered
def tree_head_create(request: HttpRequest) -> HttpResponse:
    head = tree_head_sign()
    audit_log(
        event="dpo.tree_head_signed",
        acting_user=request_user(request),
        data={"tree_head": head.pk, "size": head.tree_size},
    )
    messages.success(request, _("Tête d'arbre signée pour %(size)s événements.") % {"size": head.tree_size})
    return redirect("consent:dpo:ledger")


@dpo_required
@require_GET
def rights_requests_page(request: HttpRequest) -> HttpResponse:
    """The register of rights requests: exports and erasures, their state, age and deadline."""
    open_only = request.GET.get("etat") == "ouvertes"
    rows = dpo_selectors.rights_requests(open_only=open_only)
    # The partners' summary covers every request: a done erasure may still wait on a partner.
    every = dpo_selectors.rights_requests() if open_only else rows
    context = {"rows": rows, "open_only": open_only, "summary": dpo_selectors.partner_summary(every)}
    return render(request, "consent/dpo/rights_requests.html", context)
