"""Mon compte, "Services connectés": the partners that received the resident's data, and
"Retirer l'accès" (identity.oidc.sharing.sharing_withdraw).

GET /compte/services/ lists them (identity.oidc.selectors.connected_services); POST
/compte/services/<client_id>/retirer/ (CSRF) withdraws one partner's access in one step,
as one step gave it on the consent screen. A client the resident never allowed, or an
unknown one, is a 404.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from oauth2_provider.models import get_application_model

from common.ratelimit import client_ip
from consent.services import LedgerTampered, ledger_tampered_audit
from identity.oidc.selectors import connected_services
from identity.oidc.sharing import NotConnected, sharing_withdraw
from identity.request_user import request_user

log = logging.getLogger(__name__)


@login_required
@never_cache
@require_GET
def services_page(request: HttpRequest) -> HttpResponse:
    """The resident's connected services, those in force first."""
    context = {"policy_url": settings.CONSENT_POLICY_URL, "controller": settings.CONSENT_CONTROLLER}
    try:
        services = connected_services(user=request_user(request))
    except LedgerTampered as exc:
        log.warning("connected services not shown: ledger rows altered at positions %s", exc.positions)
        return render(request, "oidc/account_services.html", {**context, "unavailable": True}, status=503)
    return render(request, "oidc/account_services.html", {**context, "services": services})


@login_required
@never_cache
@require_POST
def service_withdraw(request: HttpRequest, client_id: str) -> HttpResponse:
    """ "Retirer l'accès" (POST + CSRF): the partner's consent withdrawn, its tokens revoked."""
    if "\x00" in client_id:  # PostgreSQL refuses it in text; no client has one
        raise Http404
    client = get_application_model().objects.filter(client_id=client_id).first()
    if client is None:
        raise Http404
    try:
        result = sharing_withdraw(user=request_user(request), client=client, ip=client_ip(request))
    except NotConnected as exc:
        raise Http404 from exc
    except LedgerTampered as exc:
        # Nothing was written and no token revoked (one transaction): say so plainly.
        ledger_tampered_audit(exc=exc, operation="sharing_withdraw")
        return render(
            request,
            "oidc/account_services.html",
            {
                "policy_url": settings.CONSENT_POLICY_URL,
                "controller": settings.CONSENT_CONTROLLER,
                "unavailable": True,
                "withdrawal_failed": client.name,
            },
            status=503,
        )
    if result.events or any(result.tokens.values()):
        messages.success(
            request,
            _(
                "Vous avez retiré l'accès de %(name)s. Ce service ne reçoit plus vos informations "
                "et vous demandera votre accord si vous l'utilisez de nouveau."
            )
            % {"name": client.name},
        )
    else:
        messages.info(request, _("L'accès de %(name)s était déjà retiré.") % {"name": client.name})
    return redirect("oidc:account-services")
