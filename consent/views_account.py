"""Mon compte, "Consentements": the metropolis' own purposes, where the resident stands on
each, its history with receipts and proofs, and one button to grant or to withdraw.

- GET  /compte/consentements/                          the page (consent.selectors.resident_purposes)
- POST /compte/consentements/<code>/decision/           `decision` = "grant" | "withdraw" (CSRF):
  one click each, recorded by consent.services.resident_decision_record
- GET  /compte/consentements/preuves/<event_id>.json    the inclusion proof of one of the
  resident's own events (the same bundle as the DPO's, consent.selectors.event_proof)

Partners' sharing purposes are in "Services connectés" (identity.oidc), linked from the page.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from consent import ledger
from consent.api import selectors as api_selectors
from consent.models import CollectionMethod, EventType
from consent.selectors import event_proof, resident_consent_counts, resident_purposes
from consent.services import (
    ConsentError,
    LedgerTampered,
    NotResidentDecidable,
    ledger_tampered_audit,
    resident_decision_record,
)
from consent.views_public import legal_basis_label
from identity.models import User
from identity.request_user import request_user

log = logging.getLogger(__name__)

TEMPLATE = "consent/account_consents.html"


def event_type_label(event_type: str) -> str:
    labels: dict[str, str] = {
        EventType.REQUESTED: _("Consentement demandé"),
        EventType.GIVEN: _("Consentement donné"),
        EventType.REFUSED: _("Consentement refusé"),
        EventType.WITHDRAWN: _("Consentement retiré"),
        EventType.REVOKED: _("Consentement annulé par un tiers"),
        EventType.EXPIRED: _("Consentement arrivé à échéance"),
        EventType.RENEWED: _("Consentement renouvelé"),
    }
    return str(labels.get(event_type, event_type))


def collection_method_label(method: str) -> str:
    labels: dict[str, str] = {
        CollectionMethod.WEB_FORM: _("depuis votre compte"),
        CollectionMethod.OIDC_CONSENT: _("sur l'écran d'autorisation d'un service"),
        CollectionMethod.COOKIE_WIDGET: _("dans le bandeau cookies d'un site"),
        CollectionMethod.API: _("par un service, au moyen de notre API"),
        CollectionMethod.STAFF_ON_BEHALF: _("par un agent, pour vous"),
        CollectionMethod.SYSTEM: _("automatiquement, par le service"),
    }
    return str(labels.get(method, method))


def consents_summary(user: User) -> list[str]:
    """Mon compte's summary line for this section (identity.account_sections)."""
    granted, renewal = resident_consent_counts(user=user)
    lines = [
        ngettext(
            "Vous avez donné votre consentement à %(count)d usage facultatif de vos informations.",
            "Vous avez donné votre consentement à %(count)d usages facultatifs de vos informations.",
            granted,
        )
        % {"count": granted}
        if granted
        else _("Vous n'avez donné votre consentement à aucun usage facultatif de vos informations.")
    ]
    if renewal:
        lines.append(
            ngettext(
                "%(count)d consentement est à renouveler.",
                "%(count)d consentements sont à renouveler.",
                renewal,
            )
            % {"count": renewal}
        )
    return lines


def _language() -> str:
    return "en" if (get_language() or "fr").startswith("en") else "fr"


def _unavailable(request: HttpRequest, *, decision_failed: bool = False) -> HttpResponse:
    context = {"unavailable": True, "decision_failed": decision_failed}
    return render(request, TEMPLATE, context, status=503)


@login_required
@never_cache
@require_GET
def consents_page(request: HttpRequest) -> HttpResponse:
    try:
        purposes = resident_purposes(user=request_user(request), language=_language())
    except LedgerTampered as exc:
        log.warning("consents not shown: ledger rows altered at positions %s", exc.positions)
        return _unavailable(request)
    entries: list[dict[str, Any]] = [
        {
            "purpose": purpose,
            "legal_basis": legal_basis_label(purpose.gdpr_article),
            "events": [
                {
                    "event": event,
                    "type_label": event_type_label(event.event_type),
                    "method_label": collection_method_label(event.collection_method),
                }
                for event in purpose.events
            ],
        }
        for purpose in purposes
    ]
    context = {
        "consent_entries": [entry for entry in entries if entry["purpose"].requires_consent],
        "public_task_entries": [entry for entry in entries if not entry["purpose"].requires_consent],
        "controller": settings.CONSENT_CONTROLLER,
    }
    return render(request, TEMPLATE, context)


@login_required
@never_cache
@require_POST
def consent_decide(request: HttpRequest, code: str) -> HttpResponse:
    """One click: `decision=grant` or `decision=withdraw` for one purpose."""
    decision = request.POST.get("decision")
    if decision not in ("grant", "withdraw"):
        return HttpResponse(_("Choix inconnu."), status=400, content_type="text/plain; charset=utf-8")
    try:
        event = resident_decision_record(
            user=request_user(request), purpose_code=code, grant=decision == "grant"
        )
    except NotResidentDecidable as exc:
        raise Http404 from exc
    except LedgerTampered as exc:
        ledger_tampered_audit(exc=exc, operation="resident_decision")
        return _unavailable(request, decision_failed=True)
    except ConsentError as exc:  # unknown or retired purpose, no notice published
        raise Http404 from exc
    if event is None:
        messages.info(request, _("Ce choix était déjà enregistré : rien n'a changé."))
    elif decision == "grant":
        messages.success(
            request, _("Votre consentement est enregistré. Vous pouvez le retirer à tout moment.")
        )
    else:
        messages.success(request, _("Votre retrait est enregistré : ce traitement s'arrête dès maintenant."))
    return redirect(reverse("consent:account-consents") + f"#finalite-{code}")


@login_required
@never_cache
@require_GET
def resident_proof(request: HttpRequest, event_id: uuid.UUID) -> HttpResponse:
    """The inclusion proof of one of the resident's own events (404 for anyone else's)."""
    event = api_selectors.event_of_user(user=request_user(request), event_id=event_id)
    if event is None:
        raise Http404
    try:
        proof = event_proof(event=event)
    except ledger.ProofError:
        messages.info(
            request,
            _(
                "La preuve de cet événement n'est pas encore disponible : le registre est scellé "
                "régulièrement. Réessayez dans quelques heures."
            ),
        )
        return redirect("consent:account-consents")
    except LedgerTampered as exc:
        log.warning("proof refused: ledger rows altered at positions %s", exc.positions)
        return _unavailable(request)
    response = JsonResponse(proof, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="preuve-{event.id}.json"'
    return response
