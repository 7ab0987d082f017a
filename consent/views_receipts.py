"""The public receipt verification page (/recus/verifier/): anyone pastes a receipt (and,
optionally, its inclusion proof) and reads whether it holds (consent.receipt_check).

No sign-in; the form is CSRF-protected like every form of the site; verifications are rate
limited per client address (shared with the API, consent/api/receipts.py).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from common.ratelimit import client_ip
from consent.receipt_check import (
    MAX_PROOF_CHARS,
    MAX_RECEIPT_CHARS,
    CheckInputError,
    ReceiptCheck,
    receipt_check,
    verification_throttled,
)
from consent.views_account import collection_method_label, event_type_label

TEMPLATE = "consent/receipt_verify.html"


def signature_reason(code: str) -> str:
    reasons = {
        "header": _("Ce document n'est pas un reçu de consentement du Compte unique métropolitain."),
        "unknown_key": _(
            "Ce reçu n'a pas été signé par une clé que nous publions (ou plus depuis longtemps)."
        ),
        "signature": _("La signature ne correspond pas au contenu : le reçu a été modifié ou abîmé."),
        "payload": _("Le contenu signé n'est pas celui d'un reçu."),
        "entry": _("L'inscription au registre contenue dans le reçu ne correspond pas à son empreinte."),
    }
    return str(reasons.get(code, reasons["signature"]))


def inclusion_reason(code: str) -> str:
    reasons = {
        "tree_head_invalid": _(
            "La tête d'arbre signée de la preuve n'est pas valide : sa signature ne tient pas "
            "ou elle a été modifiée."
        ),
        "other_log": _("La preuve concerne un autre registre que celui du reçu."),
        "other_leaf": _("La preuve concerne un autre événement que celui du reçu."),
        "path_invalid": _(
            "Le chemin de la preuve ne mène pas à la racine signée : la preuve a été modifiée "
            "ou ne correspond pas à ce reçu."
        ),
    }
    return str(reasons.get(code, reasons["path_invalid"]))


def input_problem(code: str) -> str:
    problems = {
        "receipt_too_large": _("Ce texte est trop long pour être un reçu."),
        "proof_too_large": _("Ce texte est trop long pour être une preuve."),
        "proof_malformed": _(
            "La preuve n'est pas lisible : collez le contenu complet du fichier preuve-….json."
        ),
    }
    return str(
        problems.get(
            code,
            _("Ce texte n'est pas un reçu : collez le contenu complet du fichier recu-….jws."),
        )
    )


def _result_context(check: ReceiptCheck) -> dict[str, Any]:
    statement = check.statement
    return {
        "check": check,
        "signature_reason": signature_reason(check.reason) if not check.signature_valid else "",
        "inclusion_reason": inclusion_reason(check.inclusion.reason)
        if check.inclusion is not None and not check.inclusion.verified
        else "",
        "event_label": event_type_label(statement.event_type) if statement else "",
        "method_label": collection_method_label(statement.collection_method) if statement else "",
    }


@require_http_methods(["GET", "POST"])
def receipt_verify_page(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {
        "receipt": "",
        "proof": "",
        "max_receipt": MAX_RECEIPT_CHARS,
        "max_proof": MAX_PROOF_CHARS,
    }
    if request.method != "POST":
        return render(request, TEMPLATE, context)
    receipt = request.POST.get("receipt", "")
    proof = request.POST.get("proof", "")
    context.update(receipt=receipt[:MAX_RECEIPT_CHARS], proof=proof[:MAX_PROOF_CHARS])
    if verification_throttled(client_ip(request)):
        context["error"] = _("Trop de vérifications depuis votre adresse. Réessayez dans quelques minutes.")
        return render(request, TEMPLATE, context, status=429)
    try:
        check = receipt_check(receipt, proof)
    except CheckInputError as exc:
        context["error"] = input_problem(exc.code)
        return render(request, TEMPLATE, context, status=400)
    context.update(_result_context(check))
    return render(request, TEMPLATE, context)
