"""The DPO keeps the purpose catalogue: new purposes and new versions of their notices.

Console pages over consent.services.purpose_create and notice_publish (which write the
audit rows "consent.purpose_created" and "consent.notice_published" with the DPO as
acting user). Both change what every resident is asked or told, so both need a sign-in at
the MFA level within the last 10 minutes (identity.reauth.recent_mfa_required), like the
exports. A purpose's code is permanent (it is hashed into the ledger); its texts change
through a new notice version. A material change marks the consents in force for renewal:
the gate answers "not granted" until the resident answers again under the new notice.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from consent.dpo.access import dpo_required
from consent.models import Purpose
from consent.selectors import notice_latest, purpose_exists, purposes_catalogue
from consent.services import (
    MAX_CONSENT_LIFETIME,
    PURPOSE_CODE_PATTERN,
    ConsentError,
    notice_publish,
    purpose_create,
)
from identity.reauth import recent_mfa_required
from identity.request_user import request_user

# GDPR Art. 6(1): the catalogue stores the article and its W3C DPV term. Only (a) is consent.
LEGAL_BASES = {
    "a": ("Art. 6(1)(a)", "eu-gdpr:A6-1-a", gettext_lazy("Consentement (article 6.1.a)")),
    "b": ("Art. 6(1)(b)", "eu-gdpr:A6-1-b", gettext_lazy("Exécution d'un contrat (article 6.1.b)")),
    "c": ("Art. 6(1)(c)", "eu-gdpr:A6-1-c", gettext_lazy("Obligation légale (article 6.1.c)")),
    "d": ("Art. 6(1)(d)", "eu-gdpr:A6-1-d", gettext_lazy("Intérêts vitaux (article 6.1.d)")),
    "e": ("Art. 6(1)(e)", "eu-gdpr:A6-1-e", gettext_lazy("Mission de service public (article 6.1.e)")),
    "f": ("Art. 6(1)(f)", "eu-gdpr:A6-1-f", gettext_lazy("Intérêt légitime (article 6.1.f)")),
}

# Purposes of the W3C Data Privacy Vocabulary (DPV) the console offers.
DPV_PURPOSES = (
    ("dpv:ServiceProvision", gettext_lazy("Fournir le service (dpv:ServiceProvision)")),
    ("dpv:ServicePersonalisation", gettext_lazy("Personnaliser le service (dpv:ServicePersonalisation)")),
    ("dpv:ServiceUsageAnalytics", gettext_lazy("Mesurer l'usage du service (dpv:ServiceUsageAnalytics)")),
    ("dpv:CommunicationManagement", gettext_lazy("Communiquer avec l'usager (dpv:CommunicationManagement)")),
    ("dpv:EnforceSecurity", gettext_lazy("Sécurité (dpv:EnforceSecurity)")),
    ("dpv:LegalCompliance", gettext_lazy("Respect d'une obligation légale (dpv:LegalCompliance)")),
)

CATEGORY_KINDS = {"declared", "inferred"}


def parse_categories(text: str) -> list[dict[str, str]]:
    """One data category per line: `kind ; code ; libellé (fr) ; label (en)`, where kind is
    `declared` (given by the resident) or `inferred` (deduced from what they do)."""
    categories: list[dict[str, str]] = []
    errors: list[ValidationError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(";")]
        if len(parts) != 4 or not all(parts):
            errors.append(
                ValidationError(
                    _("Ligne %(line)d : quatre éléments séparés par « ; » sont attendus."),
                    params={"line": number},
                )
            )
            continue
        kind, code, label_fr, label_en = parts
        if kind not in CATEGORY_KINDS:
            errors.append(
                ValidationError(
                    _("Ligne %(line)d : la nature est « declared » ou « inferred »."),
                    params={"line": number},
                )
            )
            continue
        categories.append({"code": code, "kind": kind, "fr": label_fr, "en": label_en})
    if errors:
        raise ValidationError(errors)
    return categories


class PurposeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=255,
        help_text=gettext_lazy(
            "Définitif : il est inscrit dans le registre des consentements. Minuscules, chiffres et . _ : + -"
        ),
    )
    title_fr = forms.CharField(label=gettext_lazy("Intitulé en français"), max_length=200)
    title_en = forms.CharField(label=gettext_lazy("Intitulé en anglais"), max_length=200)
    description_fr = forms.CharField(label=gettext_lazy("Description en français"), widget=forms.Textarea)
    description_en = forms.CharField(label=gettext_lazy("Description en anglais"), widget=forms.Textarea)
    legal_basis = forms.ChoiceField(
        label=gettext_lazy("Base légale (RGPD, article 6.1)"),
        choices=[(key, label) for key, (_article, _dpv, label) in LEGAL_BASES.items()],
        help_text=gettext_lazy("Seul le consentement demande l'accord de l'usager et se retire."),
    )
    dpv_purpose = forms.ChoiceField(
        label=gettext_lazy("Finalité (vocabulaire W3C DPV)"), choices=DPV_PURPOSES
    )
    data_categories = forms.CharField(
        label=gettext_lazy("Catégories de données"),
        required=False,
        widget=forms.Textarea,
        help_text=gettext_lazy(
            "Une par ligne : nature ; code ; libellé en français ; libellé en anglais. "
            "Nature : declared (donnée déclarée par l'usager) ou inferred (donnée déduite)."
        ),
    )
    recipients = forms.CharField(
        label=gettext_lazy("Destinataires"),
        required=False,
        widget=forms.Textarea,
        help_text=gettext_lazy("Un par ligne."),
    )
    retention_days = forms.IntegerField(
        label=gettext_lazy("Durée de conservation des données (jours)"), required=False, min_value=1
    )
    consent_lifetime_days = forms.IntegerField(
        label=gettext_lazy("Durée de validité d'un consentement (jours)"),
        required=False,
        min_value=1,
        max_value=MAX_CONSENT_LIFETIME.days,
        initial=MAX_CONSENT_LIFETIME.days,
        help_text=gettext_lazy("Pour le consentement seulement : 13 mois au plus (395 jours)."),
    )

    def clean_code(self) -> str:
        code: str = self.cleaned_data["code"].strip()
        if not PURPOSE_CODE_PATTERN.match(code):
            raise ValidationError(
                _("De 2 à 255 caractères : lettres minuscules, chiffres et . _ : + - (pas d'espace).")
            )
        if purpose_exists(code):
            raise ValidationError(_("Une finalité porte déjà ce code."))
        return code

    def clean_data_categories(self) -> list[dict[str, str]]:
        return parse_categories(self.cleaned_data.get("data_categories") or "")

    def clean_recipients(self) -> list[str]:
        text = self.cleaned_data.get("recipients") or ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("legal_basis") == "a" and not cleaned.get("consent_lifetime_days"):
            self.add_error(
                "consent_lifetime_days",
                _("Indiquez combien de temps un consentement reste valable (395 jours au plus)."),
            )
        return cleaned

    def purpose_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        article, dpv_basis, _label = LEGAL_BASES[data["legal_basis"]]
        consent_based = data["legal_basis"] == "a"
        return {
            "code": data["code"],
            "title_fr": data["title_fr"],
            "title_en": data["title_en"],
            "description_fr": data["description_fr"],
            "description_en": data["description_en"],
            "gdpr_article": article,
            "dpv_legal_basis": dpv_basis,
            "dpv_purpose": data["dpv_purpose"],
            "data_categories": data["data_categories"],
            "recipients": data["recipients"],
            "retention_days": data["retention_days"],
            "consent_lifetime_days": data["consent_lifetime_days"] if consent_based else None,
            "requires_consent": consent_based,
        }


class NoticeForm(forms.Form):
    text_fr = forms.CharField(label=gettext_lazy("Texte en français"), widget=forms.Textarea)
    text_en = forms.CharField(label=gettext_lazy("Texte en anglais"), widget=forms.Textarea)
    material = forms.BooleanField(
        label=gettext_lazy("Changement important"),
        required=False,
        help_text=gettext_lazy(
            "Les consentements en cours devront être donnés de nouveau : tant que l'usager n'a pas "
            "répondu sous la nouvelle version, la finalité est traitée comme refusée. À cocher quand "
            "ce qui est fait des données change (finalité, données, destinataires, durée)."
        ),
    )


@dpo_required
@require_GET
def catalogue(request: HttpRequest) -> HttpResponse:
    purposes = [
        {"purpose": purpose, "notice": notice_latest(purpose=purpose)}
        for purpose in purposes_catalogue(include_inactive=True)
    ]
    return render(
        request,
        "consent/dpo/catalogue.html",
        {"purposes": purposes, "global_notice": notice_latest(purpose=None)},
    )


@dpo_required
@recent_mfa_required
@require_http_methods(["GET", "POST"])
def purpose_new(request: HttpRequest) -> HttpResponse:
    form = PurposeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            purpose = purpose_create(**form.purpose_fields(), acting_user=request_user(request))
        except ConsentError:
            # Created by someone else between the check and the write (the code is unique).
            form.add_error("code", _("Une finalité porte déjà ce code."))
        else:
            messages.success(
                request,
                _("Finalité « %(code)s » créée. Publiez maintenant sa notice.") % {"code": purpose.code},
            )
            return redirect("consent:dpo:notice-new", code=purpose.code)
    status = 400 if request.method == "POST" else 200
    return render(request, "consent/dpo/purpose_form.html", {"form": form}, status=status)


def _notice_page(request: HttpRequest, purpose: Purpose | None) -> HttpResponse:
    current = notice_latest(purpose=purpose)
    initial = {"text_fr": current.text_fr, "text_en": current.text_en} if current else None
    form = NoticeForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        notice = notice_publish(
            purpose=purpose,
            text_fr=form.cleaned_data["text_fr"],
            text_en=form.cleaned_data["text_en"],
            material=form.cleaned_data["material"],
            acting_user=request_user(request),
        )
        messages.success(
            request, _("Version %(version)d de la notice publiée.") % {"version": notice.version}
        )
        return redirect("consent:dpo:catalogue")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "purpose": purpose, "current": current}
    return render(request, "consent/dpo/notice_form.html", context, status=status)


@dpo_required
@recent_mfa_required
@require_http_methods(["GET", "POST"])
def notice_new(request: HttpRequest, code: str) -> HttpResponse:
    purpose = purposes_catalogue(include_inactive=True).filter(code=code).first()
    if purpose is None:
        raise Http404
    return _notice_page(request, purpose)


@dpo_required
@recent_mfa_required
@require_http_methods(["GET", "POST"])
def global_notice_new(request: HttpRequest) -> HttpResponse:
    return _notice_page(request, None)
