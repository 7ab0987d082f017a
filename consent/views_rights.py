"""Mon compte › Copie de mes données (GDPR Art. 15 and 20). Thin: consent.rights_requests writes.

- `/compte/export/`: the state of the resident's latest export and the button to ask for
  one. Viewing needs a sign-in; asking (POST) needs a recent one (identity.reauth.
  recent_sign_in: within 10 minutes, with the second factor when the account has one).
- `/compte/export/telecharger/<secret>/`: the link of the "ready" email. GET shows the
  page with the download button (a link checker opening the email does not spend it);
  POST hands the archive out, once. Both need the resident signed in AS the account the
  export belongs to AND the link's secret: a forwarded or intercepted email alone is not
  enough, nor is a session left open on a shared computer (docs/dpo.md, "Exports").
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import dateformat, timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from common.ratelimit import client_ip
from consent import rights_requests
from consent.rights_requests import DownloadStatus
from consent.selectors import export_latest
from identity import reauth
from identity.models import User
from identity.request_user import request_user


def export_summary(user: User) -> list[str]:
    """Mon compte's summary line for this section (identity.account_sections)."""
    latest = export_latest(user)
    if latest is None:
        return [_("Vous n'avez pas encore demandé de copie de vos données.")]
    when = dateformat.format(timezone.localtime(latest.requested_at), "j F Y")
    status = rights_requests.download_status(latest)
    if latest.state in rights_requests.OPEN_STATES:
        text = _("Votre copie demandée le %(date)s est en préparation.")
    elif status == DownloadStatus.OK:
        text = _(
            "Votre copie demandée le %(date)s est prête : "
            "le lien est dans l'e-mail que nous vous avons envoyé."
        )
    elif status == DownloadStatus.USED:
        text = _("Vous avez téléchargé votre copie demandée le %(date)s.")
    elif latest.state == "failed":
        text = _(
            "La préparation de votre copie demandée le %(date)s a échoué : vous pouvez en demander une autre."
        )
    else:
        text = _("Le lien de votre copie demandée le %(date)s a expiré.")
    return [text % {"date": when}]


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def export_page(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    if request.method == "POST":
        if not reauth.recent_sign_in(request):
            return reauth.recent_sign_in_redirect(request)
        outcome = rights_requests.export_request(user=user, ip=client_ip(request))
        if outcome.throttled:
            messages.error(
                request,
                _(
                    "Vous avez déjà demandé %(count)s copies de vos données ces dernières 24 heures. "
                    "Réessayez demain."
                )
                % {"count": settings.RIGHTS_EXPORT_MAX_PER_DAY},
            )
        elif outcome.created:
            messages.success(
                request,
                _(
                    "Votre demande est enregistrée. Nous préparons votre copie et vous envoyons "
                    "un e-mail dès qu'elle est prête."
                ),
            )
        else:
            messages.info(
                request,
                _(
                    "Une copie de vos données est déjà en préparation : "
                    "attendez qu'elle soit prête avant d'en demander une autre."
                ),
            )
        return redirect("consent:export")
    latest = export_latest(user)
    return render(
        request,
        "consent/export.html",
        {
            "export": latest,
            "download": rights_requests.download_status(latest) if latest else None,
            "partners": rights_requests.export_partner_states(latest) if latest else [],
            "days": settings.RIGHTS_EXPORT_DOWNLOAD_DAYS,
            "max_per_day": settings.RIGHTS_EXPORT_MAX_PER_DAY,
            "resident": user,
        },
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def export_download(request: HttpRequest, token: str) -> HttpResponse:
    user = request_user(request)
    export = rights_requests.export_for_token(user=user, token=token)
    if export is None:
        replaced = rights_requests.export_replaced(user=user, token=token)
        if replaced is None:
            raise Http404
        return render(
            request,
            "consent/export_download.html",
            {"export": replaced, "download": DownloadStatus.REPLACED, "token": ""},
            status=410,
        )
    status = rights_requests.download_status(export)
    if request.method == "POST":
        outcome = rights_requests.export_download(user=user, token=token, ip=client_ip(request))
        if outcome.status == DownloadStatus.OK:
            response = HttpResponse(outcome.data, content_type="application/zip")
            response["Content-Disposition"] = f'attachment; filename="{outcome.filename}"'
            response["Cache-Control"] = "no-store"
            return response
        export.refresh_from_db()
        status = outcome.status
    return render(
        request,
        "consent/export_download.html",
        {"export": export, "download": status, "token": token},
        status=200 if status in (DownloadStatus.OK, DownloadStatus.NOT_READY) else 410,
    )
