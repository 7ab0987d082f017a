"""The DPO's page for the inference of interests: the half-life (/dpo/personnalisation/).

Part of the DPO console (consent/dpo/), which lives below profiles in the layers: the page is
profiles', gated like the console's own pages (consent.dpo.access.dpo_required: the "dpo"
group, an MFA session, every request audited as "staff.request"), extends the console's
template and is listed in its navigation through consent.dpo.navigation (registered in
ProfilesConfig.ready()). Reading it shows no resident's data. Changing the half-life asks for
an MFA sign-in within the last 10 minutes (identity.reauth.recent_mfa_required, like the
catalogue's writes) and goes through profiles.services.inference_settings_update (audited).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from consent.dpo.access import dpo_required
from consent.selectors import purpose_by_code
from identity.reauth import recent_mfa_required
from identity.request_user import request_user
from profiles import decay, taxonomy
from profiles.selectors import half_life_days, inference_settings
from profiles.services import HALF_LIFE_DAYS_RANGE, ProfileInputError, inference_settings_update

LOW, HIGH = HALF_LIFE_DAYS_RANGE


class HalfLifeForm(forms.Form):
    half_life_days = forms.IntegerField(
        label=gettext_lazy("Demi-vie (en jours)"),
        min_value=LOW,
        max_value=HIGH,
        help_text=gettext_lazy("Un nombre entier de jours, de 1 à 365."),
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )


def _context(form: HalfLifeForm) -> dict[str, object]:
    days = half_life_days()
    browsing = purpose_by_code(taxonomy.BROWSING_PURPOSE)
    return {
        "form": form,
        "half_life_days": days,
        "settings_row": inference_settings(),
        # The plain-words example: one page view's weight after 1, 2 and 5 half-lives.
        "after_two": days * 2,
        "faded_after": days * 5,
        "faded_threshold": decay.FADED,
        "retention_days": browsing.retention_days,
        "purpose": browsing,
    }


@recent_mfa_required
def _save(request: HttpRequest) -> HttpResponse:
    form = HalfLifeForm(request.POST)
    if form.is_valid():
        try:
            inference_settings_update(
                half_life_days=form.cleaned_data["half_life_days"], acting_user=request_user(request)
            )
        except ProfileInputError as exc:  # the service's own range check, should the form's drift
            form.add_error("half_life_days", exc.errors["half_life_days"])
        else:
            messages.success(
                request,
                _("Demi-vie enregistrée : %(days)s jours.") % {"days": form.cleaned_data["half_life_days"]},
            )
            return redirect("profiles-dpo:inference")
    return render(request, "profiles/dpo_inference.html", _context(form), status=400)


@dpo_required
@require_http_methods(["GET", "POST"])
def inference(request: HttpRequest) -> HttpResponseBase:
    if request.method == "POST":
        return _save(request)
    form = HalfLifeForm(initial={"half_life_days": half_life_days()})
    return render(request, "profiles/dpo_inference.html", _context(form))
