""" "Mon compte" > "Informations personnelles": names, phone number, postal address, and a
change of email address (its link, sent to the new address, works signed out).
Thin: forms validate, identity.services writes.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.ratelimit import client_ip
from identity import ratelimit
from identity.communes import commune_for_address
from identity.forms import EmailChangeForm, PersonalInformationForm, too_many_attempts
from identity.phone import phone_for_display
from identity.reauth import RECENT_MFA_SECONDS, session_auth_age
from identity.request_user import request_user
from identity.selectors import email_change_pending
from identity.services import (
    EmailChangeResult,
    email_change_cancel,
    email_change_check,
    email_change_confirm,
    email_change_request,
    profile_update,
)

RATE_LIMIT_ACTION = "email_change"


@login_required
@never_cache
@require_GET
def personal_information(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    context = {
        "resident": user,
        "phone_display": phone_for_display(user.phone_number),
        "metropolitan_commune": commune_for_address(user.locality, user.postal_code),
        "pending_change": email_change_pending(user),
    }
    return render(request, "identity/personal_information.html", context)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def personal_information_edit(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    if request.method == "POST":
        form = PersonalInformationForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            changed = profile_update(
                user=user,
                given_name=data["given_name"],
                family_name=data["family_name"],
                phone_number=data["phone_number"],
                address=data["address"],
                ip=client_ip(request),
            )
            if changed:
                messages.success(request, _("Vos informations ont été enregistrées."))
            else:
                messages.info(request, _("Rien n'a changé."))
            return redirect("identity:personal-information")
    else:
        form = PersonalInformationForm(initial=PersonalInformationForm.initial_for(user))
    return render(request, "identity/personal_information_edit.html", {"form": form})


def _recent_sign_in(request: HttpRequest) -> bool:
    age = session_auth_age(request)
    return age is not None and age <= RECENT_MFA_SECONDS


@login_required
@never_cache
@sensitive_post_parameters("current_password")
@require_http_methods(["GET", "POST"])
def email_change(request: HttpRequest) -> HttpResponse:
    """Ask for a new sign-in address: the current password (or, for an account without one,
    a sign-in less than 10 minutes old), then a link to the new address."""
    user = request_user(request)
    needs_recent = not user.has_usable_password()
    recent = _recent_sign_in(request) if needs_recent else True
    form = EmailChangeForm(user, request.POST if request.method == "POST" else None)
    if request.method == "POST":
        block = ratelimit.form_ip_block(request, RATE_LIMIT_ACTION)
        form.is_valid()
        if block is not None:
            form.add_error(None, too_many_attempts(block))
        if not recent:
            form.add_error(
                None,
                _(
                    "Par sécurité, ce changement demande une connexion de moins de 10 minutes : "
                    "déconnectez-vous, reconnectez-vous, puis revenez sur cette page."
                ),
            )
        if form.is_valid():
            new_email = form.cleaned_data["new_email"]
            if ratelimit.form_email_allowed(RATE_LIMIT_ACTION, new_email):
                email_change_request(user=user, new_email=new_email, ip=client_ip(request))
                messages.success(
                    request,
                    _(
                        "Nous avons envoyé un lien à %(email)s. Votre adresse changera quand vous "
                        "l'ouvrirez ; d'ici là, continuez à vous connecter avec l'adresse actuelle."
                    )
                    % {"email": new_email},
                )
                return redirect("identity:personal-information")
            form.add_error(
                "new_email",
                _("Trop de messages envoyés à cette adresse. Réessayez plus tard."),
            )
    return render(
        request,
        "identity/email_change.html",
        {"form": form, "needs_recent": needs_recent, "recent": recent},
    )


@login_required
@never_cache
@require_POST
def email_change_cancel_view(request: HttpRequest) -> HttpResponse:
    if email_change_cancel(user=request_user(request), ip=client_ip(request)):
        messages.success(
            request, _("Le changement d'adresse a été annulé : le lien envoyé ne fonctionne plus.")
        )
    return redirect("identity:personal-information")


@never_cache
@require_http_methods(["GET", "POST"])
def email_change_link(request: HttpRequest, token: str) -> HttpResponse:
    """The link sent to the new address. GET shows what will happen (mail scanners open
    links); the button (POST) does it. Works signed out."""
    if request.method == "POST":
        result = email_change_confirm(token=token, ip=client_ip(request))
        if result == EmailChangeResult.CHANGED:
            return render(request, "identity/email_change_done.html")
    else:
        result = email_change_check(token=token)
        if result == EmailChangeResult.VALID:
            return render(request, "identity/email_change_confirm.html")
    status = {
        EmailChangeResult.USED: 410,
        EmailChangeResult.CANCELLED: 410,
        EmailChangeResult.EXPIRED: 410,
        EmailChangeResult.TAKEN: 409,
    }.get(result, 404)
    return render(request, "identity/email_change_failed.html", {"reason": str(result)}, status=status)
