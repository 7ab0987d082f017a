"""Mon compte › Suppression du compte (GDPR Art. 17): the page, the cancel link, the status page.

The writes are consent.erasure's; these pages only ask. Confirming the request needs a fresh
sign-in (identity.reauth.recent_sign_in: within 10 minutes, with the second factor when the
account has one). Cancelling needs none: keeping one's account must be as easy as possible.
The cancel link of the email shows one button (a GET never cancels: mail scanners open
links); the status link needs no sign-in, since the account is gone at the end.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from common.ratelimit import client_ip
from consent import erasure
from consent.models import RightsRequestState
from identity import reauth
from identity.request_user import request_user, request_user_or_none


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def erasure_page(request: HttpRequest) -> HttpResponse:
    """GET: what will be deleted, what is kept and for how long, or the pending request with
    its cancel button. POST: the request (after a fresh sign-in)."""
    user = request_user(request)
    pending = erasure.erasure_pending(user=user)
    if request.method == "POST" and pending is None:
        if not reauth.recent_sign_in(request):
            return reauth.recent_sign_in_redirect(request)
        if request.POST.get("confirm") != "yes":
            messages.error(
                request, _("La demande de suppression n'a pas été confirmée : rien n'a été enregistré.")
            )
            return redirect("consent:erasure")
        try:
            erasure.erasure_request(user=user, ip=client_ip(request))
        except erasure.ErasureError:
            messages.info(request, _("Une demande de suppression de votre compte est déjà en attente."))
        else:
            messages.success(
                request, _("Votre demande de suppression est enregistrée. Nous vous avons envoyé un e-mail.")
            )
        return redirect("consent:erasure")
    if request.method == "POST":
        return redirect("consent:erasure")
    return render(
        request,
        "consent/erasure.html",
        {
            "pending": pending,
            "recent": reauth.recent_sign_in(request),
            "grace_days": settings.ERASURE_GRACE_DAYS,
        },
    )


@never_cache
@login_required
@require_POST
def erasure_cancel(request: HttpRequest) -> HttpResponse:
    """The signed-in resident keeps the account: one click."""
    user = request_user(request)
    pending = erasure.erasure_pending(user=user)
    if pending is not None and erasure.erasure_cancel(
        request=pending, acting_user=user, ip=client_ip(request), via="account"
    ):
        messages.success(request, _("La suppression de votre compte est annulée. Votre compte est conservé."))
    return redirect("consent:erasure")


@never_cache
@require_http_methods(["GET", "POST"])
def erasure_cancel_link(request: HttpRequest, token: str) -> HttpResponse:
    """The email's cancel link (single use): one button."""
    pending = erasure.erasure_by_cancel_token(token)
    usable = pending is not None and pending.state == RightsRequestState.WAITING
    if request.method == "POST" and pending is not None and usable:
        done = erasure.erasure_cancel(
            request=pending, acting_user=request_user_or_none(request), ip=client_ip(request), via="email"
        )
        return render(request, "consent/erasure_cancelled.html", {"done": done}, status=200 if done else 410)
    if not usable:
        return render(request, "consent/erasure_cancelled.html", {"done": False}, status=410)
    return render(request, "consent/erasure_cancel_confirm.html", {"request_row": pending})


@never_cache
def erasure_status(request: HttpRequest, token: str) -> HttpResponse:
    """Where the erasure stands: each step and each partner's answer (no personal data)."""
    row = erasure.erasure_by_status_token(token)
    if row is None:
        return render(request, "consent/erasure_status.html", {"request_row": None}, status=404)
    return render(
        request,
        "consent/erasure_status.html",
        {
            "request_row": row,
            "steps": erasure.erasure_steps(row),
            "partners": erasure.erasure_partners(row),
            "deadline": row.deadline,
        },
    )
