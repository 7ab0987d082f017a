"""Mon compte › Personnalisation: what the resident declares (grouped by the purpose that
governs each field) and the interests inferred from their browsing, each group with its
purpose's state, its notice and a one-click switch. Thin: profiles.services writes,
profiles.selectors and consent.selectors read, consent.services records the decisions.

- GET  /compte/personnalisation/                                  the page
- POST /compte/personnalisation/<code>/decision/                  `decision` = grant | withdraw
  (consent.services.resident_decision_record, as on /compte/consentements/)
- POST /compte/personnalisation/<code>/donnees/                   the declared fields of one
  purpose (profiles.services.declared_update); errors re-show the page with what was sent
- POST /compte/personnalisation/interets/<theme>/pas-interesse/   interest_correct
- POST /compte/personnalisation/interets/<theme>/supprimer/       interest_delete
- POST /compte/personnalisation/interets/<theme>/annuler/         interest_correction_remove
- GET, POST /compte/personnalisation/interets/tout-supprimer/     interests_delete_all, after
  a confirmation page

Every POST needs the CSRF token and ends in a redirect (POST-redirect-GET) with a message,
except a form with errors, shown again with the values sent. Nothing personal is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consent.selectors import ResidentPurpose, resident_purposes
from consent.services import (
    ConsentError,
    LedgerTampered,
    NotResidentDecidable,
    ledger_tampered_audit,
    resident_decision_record,
)
from identity.models import User
from identity.request_user import request_user
from profiles import selectors, services, taxonomy

log = logging.getLogger(__name__)

PAGE = "profiles/account_personalisation.html"
DELETE_ALL_PAGE = "profiles/interests_delete_all.html"
DECLARED_GROUPS = (taxonomy.DECLARED_PURPOSE, taxonomy.NEWS_PURPOSE)
PURPOSES = (*DECLARED_GROUPS, taxonomy.BROWSING_PURPOSE)
LIST_FIELDS = selectors.LIST_FIELDS
# Where each field's first control is, for the error summary's links.
FIELD_ANCHORS = {
    "commune": "id_commune",
    "quartier": "id_quartier",
    "themes": "id_themes_0",
    "language": "id_language_0",
    "accessibility": "id_accessibility_0",
    "notification_frequency": "id_notification_frequency_0",
    "notification_themes": "id_notification_themes_0",
}


def _language() -> str:
    return "en" if (get_language() or "fr").startswith("en") else "fr"


def field_label(name: str) -> str:
    labels = {
        "commune": _("Commune"),
        "quartier": _("Quartier"),
        "themes": _("Thèmes suivis"),
        "language": _("Langue du portail"),
        "accessibility": _("Préférences d'accessibilité"),
        "notification_frequency": _("Fréquence des actualités"),
        "notification_themes": _("Thèmes des actualités"),
    }
    return labels.get(name, _("Formulaire"))


def field_error(name: str) -> str:
    """The resident's message for a field the service refused (its own messages are for
    developers: they name codes, not what to do)."""
    errors = {
        "commune": _("Choisissez votre commune dans la liste des 24 communes de la métropole."),
        "quartier": _(
            "Ce quartier n'est pas dans la commune choisie. Choisissez un quartier de votre commune, "
            "ou « Pas de quartier »."
        ),
        "themes": _("Choisissez vos thèmes dans la liste proposée."),
        "notification_themes": _("Choisissez vos thèmes dans la liste proposée."),
        "language": _("Choisissez une langue dans la liste proposée."),
        "accessibility": _("Choisissez vos préférences dans la liste proposée."),
        "notification_frequency": _("Choisissez une fréquence dans la liste proposée."),
    }
    return errors.get(name, _("Ces informations n'ont pas pu être enregistrées. Vérifiez vos choix."))


def strength_label(strength: str) -> str:
    labels = {"strong": _("fort"), "medium": _("moyen"), "weak": _("faible")}
    return labels.get(strength, strength)


def erased_text(purpose_code: str) -> str:
    texts = {
        taxonomy.DECLARED_PURPOSE: _(
            "Votre commune, votre quartier, vos thèmes, votre langue et vos préférences "
            "d'accessibilité ont été effacés."
        ),
        taxonomy.NEWS_PURPOSE: _("Votre fréquence et vos thèmes d'actualités ont été effacés."),
        taxonomy.BROWSING_PURPOSE: _(
            "Vos centres d'intérêt déduits de votre navigation et vos choix « Pas intéressé(e) » "
            "ont été effacés."
        ),
    }
    return texts[purpose_code]


def summary_item(name: str) -> str:
    items = {
        "commune": _("votre commune"),
        "quartier": _("votre quartier"),
        "themes": _("vos thèmes"),
        "language": _("votre langue"),
        "accessibility": _("vos préférences d'accessibilité"),
    }
    return items[name]


# --- Mon compte's summary (identity.account_sections) ------------------------------------------


def personalisation_summary(user: User) -> list[str]:
    view = selectors.declared_view(user=user)
    lines = []
    if view.granted[taxonomy.DECLARED_PURPOSE]:
        held = [
            summary_item(name) for name in taxonomy.fields_of(taxonomy.DECLARED_PURPOSE) if view.values[name]
        ]
        lines.append(
            _("Personnalisation à partir de votre profil : activée. Vous avez indiqué : %(items)s.")
            % {"items": ", ".join(held)}
            if held
            else _("Personnalisation à partir de votre profil : activée. Vous n'avez encore rien indiqué.")
        )
    else:
        lines.append(_("Personnalisation à partir de votre profil : pas activée."))
    if view.granted[taxonomy.BROWSING_PURPOSE]:
        count = len(selectors.interests_view(subject=services.subject_of(user), language=_language()))
        lines.append(
            ngettext(
                "Personnalisation à partir de votre navigation : activée, %(count)d centre d'intérêt déduit.",
                "Personnalisation à partir de votre navigation : activée, "
                "%(count)d centres d'intérêt déduits.",
                count,
            )
            % {"count": count}
        )
    else:
        lines.append(_("Personnalisation à partir de votre navigation : pas activée."))
    return lines


# --- The page ----------------------------------------------------------------------------------


def _choices(language: str) -> dict[str, Any]:
    themes = [(theme.code, theme.label(language)) for theme in taxonomy.themes()]
    with_quartiers = [c for c in taxonomy.all_communes() if taxonomy.quartiers_of(c.insee_code)]
    quartier_groups = [
        {"insee": c.insee_code, "name": c.name, "quartiers": taxonomy.quartiers_of(c.insee_code)}
        for c in with_quartiers
    ]
    return {
        "communes": [(commune.insee_code, commune.name) for commune in taxonomy.all_communes()],
        "quartier_groups": quartier_groups,
        "quartier_communes": ", ".join(c.name for c in with_quartiers),
        "no_preference": _("Pas de préférence"),
        "themes": themes,
        "languages": list(taxonomy.PORTAL_LANGUAGES.items()),
        "accessibility": [(code, str(label)) for code, label in taxonomy.ACCESSIBILITY.items()],
        "frequencies": [(code, str(label)) for code, label in taxonomy.NOTIFICATION_FREQUENCIES.items()],
    }


def _display(name: str, value: Any, language: str) -> str:
    """A submitted value as the resident reads it (for a form that could not be saved)."""
    if name in ("themes", "notification_themes"):
        return ", ".join(selectors.theme_view(code, language).label for code in value)
    if name == "accessibility":
        return ", ".join(str(taxonomy.ACCESSIBILITY.get(code, code)) for code in value)
    if name == "commune":
        commune = taxonomy.commune(value)
        return commune.name if commune else value
    if name == "quartier":
        for group in taxonomy.all_communes():
            quartier = taxonomy.quartier_by_code(group.insee_code, value)
            if quartier is not None:
                return quartier.name
        return value
    if name == "language":
        return taxonomy.PORTAL_LANGUAGES.get(value, value)
    if name == "notification_frequency":
        return str(taxonomy.NOTIFICATION_FREQUENCIES.get(value, value))
    return str(value)


def _group(
    purpose: ResidentPurpose, values: dict[str, Any], failed: dict[str, Any] | None, language: str
) -> dict[str, Any]:
    """One purpose's declared fields: stored values, or what was sent when it failed."""
    names = taxonomy.fields_of(purpose.code)
    failed = failed if failed is not None and failed["purpose"] == purpose.code else None
    errors: dict[str, str] = failed["errors"] if failed else {}
    shown = {name: failed["values"][name] for name in names} if failed else {n: values[n] for n in names}
    return {
        "purpose": purpose,
        "values": shown,
        "errors": errors,
        "error_list": [
            {
                "anchor": FIELD_ANCHORS.get(name, f"groupe-{purpose.code}"),
                "label": field_label(name),
                "text": text,
            }
            for name, text in errors.items()
        ],
        "not_granted_error": bool(failed and failed["not_granted"]),
        "unsaved": [
            {"label": field_label(name), "value": _display(name, shown[name], language)}
            for name in names
            if shown[name]
        ]
        if failed and failed["not_granted"]
        else [],
    }


def _page(request: HttpRequest, *, failed: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    user = request_user(request)
    language = _language()
    try:
        purposes = {p.code: p for p in resident_purposes(user=user, language=language) if p.code in PURPOSES}
    except LedgerTampered as exc:
        log.warning("personalisation not shown: ledger rows altered at positions %s", exc.positions)
        return _unavailable(request)
    declared = selectors.declared_view(user=user)
    subject = services.subject_of(user)
    interests = selectors.interests_view(subject=subject, language=language)
    context = {
        # A purpose retired from the catalogue has no group: nothing may be kept under it.
        "groups": [
            _group(purposes[code], declared.values, failed, language)
            for code in DECLARED_GROUPS
            if code in purposes
        ],
        "browsing": purposes.get(taxonomy.BROWSING_PURPOSE),
        "interests": [
            {"interest": interest, "strength": strength_label(interest.strength)} for interest in interests
        ],
        "corrections": selectors.corrections_view(subject=subject, language=language),
        "half_life_days": selectors.half_life_days(),
        "choices": _choices(language),
        "failed": failed,
    }
    return render(request, PAGE, context, status=status)


def _unavailable(request: HttpRequest, *, decision_failed: bool = False) -> HttpResponse:
    context = {"unavailable": True, "decision_failed": decision_failed}
    return render(request, PAGE, context, status=503)


@login_required
@never_cache
@require_GET
def personalisation_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _anchor(fragment: str) -> HttpResponse:
    return redirect(reverse("profiles:account-personalisation") + f"#{fragment}")


@login_required
@never_cache
@require_POST
def purpose_decide(request: HttpRequest, code: str) -> HttpResponse:
    """The one-click switch of one of the page's purposes (the same service as Consentements)."""
    if code not in PURPOSES:
        raise Http404
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
    except ConsentError as exc:  # retired purpose, no notice published
        raise Http404 from exc
    if event is None:
        messages.info(request, _("Ce choix était déjà enregistré : rien n'a changé."))
    elif decision == "grant":
        messages.success(
            request,
            _(
                "Votre accord est enregistré. Vous pouvez le retirer à tout moment, "
                "ici ou dans « Consentements »."
            ),
        )
    else:
        messages.success(
            request,
            _("Votre accord est retiré : cet usage s'arrête dès maintenant.") + " " + erased_text(code),
        )
    return _anchor(f"groupe-{code}")


def _submitted(post: QueryDict, purpose_code: str) -> dict[str, Any]:
    """The declared fields of one purpose as sent (a missing field is an empty one: unticked
    boxes are not sent, and a hidden quartier list is disabled)."""
    return {
        name: post.getlist(name) if name in LIST_FIELDS else post.get(name, "")
        for name in taxonomy.fields_of(purpose_code)
    }


@login_required
@never_cache
@require_POST
def declared_save(request: HttpRequest, code: str) -> HttpResponse:
    if code not in DECLARED_GROUPS:
        raise Http404
    user = request_user(request)
    changes = _submitted(request.POST, code)
    before = selectors.declared_view(user=user).values
    try:
        profile = services.declared_update(user=user, changes=changes)
    except services.ProfileInputError as exc:
        errors = {name: field_error(name) for name in exc.errors}
        failed = {"purpose": code, "values": changes, "errors": errors, "not_granted": False}
        return _page(request, failed=failed, status=400)
    except services.PurposeNotGranted:
        failed = {"purpose": code, "values": changes, "errors": {}, "not_granted": True}
        return _page(request, failed=failed, status=409)
    if all(getattr(profile, name) == before[name] for name in changes):
        messages.info(request, _("Rien n'a changé."))
    else:
        messages.success(request, _("Vos choix sont enregistrés."))
    return _anchor(f"groupe-{code}")


# --- Inferred interests ------------------------------------------------------------------------


def _theme(theme: str) -> str:
    """The theme of the URL, or 404 (the service refuses unknown codes too)."""
    found = taxonomy.theme_by_code(theme)
    if found is None:
        raise Http404
    return found.label(_language())


@login_required
@never_cache
@require_POST
def interest_not_interested(request: HttpRequest, theme: str) -> HttpResponse:
    label = _theme(theme)
    try:
        services.interest_correct(subject=services.subject_of(request_user(request)), theme=theme)
    except services.PurposeNotGranted:
        messages.error(
            request,
            _(
                "Rien n'a été enregistré : la personnalisation à partir de votre navigation "
                "n'est pas activée."
            ),
        )
        return _anchor(f"groupe-{taxonomy.BROWSING_PURPOSE}")
    messages.success(
        request,
        _(
            "« %(theme)s » ne sera plus déduit de votre navigation. Vous pouvez annuler ce choix "
            "dans « Thèmes que vous avez écartés »."
        )
        % {"theme": label},
    )
    return _anchor("interets")


@login_required
@never_cache
@require_POST
def interest_forget(request: HttpRequest, theme: str) -> HttpResponse:
    label = _theme(theme)
    if services.interest_delete(subject=services.subject_of(request_user(request)), theme=theme):
        messages.success(
            request,
            _(
                "« %(theme)s » est supprimé de vos centres d'intérêt. Il peut revenir si vous "
                "continuez à consulter des pages sur ce thème."
            )
            % {"theme": label},
        )
    else:
        messages.info(request, _("Ce centre d'intérêt était déjà supprimé."))
    return _anchor("interets")


@login_required
@never_cache
@require_POST
def correction_undo(request: HttpRequest, theme: str) -> HttpResponse:
    label = _theme(theme)
    if services.interest_correction_remove(subject=services.subject_of(request_user(request)), theme=theme):
        messages.success(
            request,
            _("« %(theme)s » pourra de nouveau être déduit de vos prochaines visites.") % {"theme": label},
        )
    else:
        messages.info(request, _("Ce choix était déjà annulé."))
    return _anchor("corrections")


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def interests_forget_all(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation; POST forgets every inferred interest (corrections stay)."""
    subject = services.subject_of(request_user(request))
    if request.method == "GET":
        count = len(selectors.interests_view(subject=subject, language=_language()))
        return render(request, DELETE_ALL_PAGE, {"count": count})
    removed = services.interests_delete_all(subject=subject)
    if removed:
        messages.success(
            request,
            ngettext(
                "%(count)d centre d'intérêt supprimé. Vos choix « Pas intéressé(e) » sont gardés.",
                "%(count)d centres d'intérêt supprimés. Vos choix « Pas intéressé(e) » sont gardés.",
                removed,
            )
            % {"count": removed},
        )
    else:
        messages.info(request, _("Il n'y avait aucun centre d'intérêt à supprimer."))
    return _anchor("interets")
