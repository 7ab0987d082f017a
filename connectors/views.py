"""Mon compte › Cartes et abonnements (`/compte/cartes/`): the resident's links to partner
accounts (a library card), one form per enabled connector to link, refresh and remove.

The writes are connectors.links'; the page only asks and turns each outcome into a
message. Nothing here waits without a bound: the connectors' timeouts bound the partner's
answer (connectors.library). Every failure re-renders the page with the form and a clear
message (never a 500); nothing is stored then.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from common.ratelimit import client_ip
from connectors import links, selectors
from connectors.forms import LibraryLinkForm
from connectors.models import PartnerConnector, PartnerLink
from connectors.protocol import (
    ConnectorConfigError,
    ConnectorError,
    CredentialsRefused,
    InvalidReference,
    PartnerProtocolError,
    RefusalReason,
)
from identity.models import User
from identity.request_user import request_user


def _refusal_message(reason: RefusalReason) -> str:
    return {
        RefusalReason.WRONG_SECRET: _(
            "Le code PIN ne correspond pas à cette carte. Vérifiez-le et réessayez : après plusieurs "
            "erreurs, la bibliothèque peut bloquer la carte."
        ),
        RefusalReason.UNKNOWN_ACCOUNT: _(
            "Ce numéro de carte n'est pas connu du réseau des bibliothèques. Vérifiez le numéro "
            "inscrit sur votre carte."
        ),
        RefusalReason.BLOCKED: _(
            "Cette carte est bloquée par la bibliothèque, qui n'a pas pu vérifier votre code. "
            "Adressez-vous à votre bibliothèque pour la débloquer, puis réessayez."
        ),
        RefusalReason.EXPIRED: _(
            "Cette carte a expiré, et la bibliothèque n'a pas pu vérifier votre code. Renouvelez "
            "votre abonnement auprès de votre bibliothèque, puis réessayez."
        ),
    }[reason]


def _error_message(exc: Exception) -> str:
    if isinstance(exc, CredentialsRefused):
        return _refusal_message(exc.reason)
    if isinstance(exc, InvalidReference):
        return _(
            "Ce numéro de carte ne peut pas être le vôtre : vérifiez qu'il ne contient que les "
            "caractères de votre carte."
        )
    if isinstance(exc, PartnerProtocolError):
        return _(
            "Le système des bibliothèques a répondu de façon inattendue. Rien n'a été enregistré. "
            "Réessayez plus tard : l'incident est signalé à nos équipes."
        )
    if isinstance(exc, ConnectorConfigError):
        return _(
            "Ce service n'est pas disponible pour le moment. Rien n'a été enregistré. Réessayez plus tard."
        )
    return _(
        "Le système des bibliothèques ne répond pas pour le moment. Rien n'a été enregistré : "
        "réessayez dans quelques minutes."
    )


def _link_error_message(code: str) -> str:
    return {
        "already_linked": _(
            "Cette carte est déjà liée à un autre compte. Si c'est bien votre carte, retirez-la de "
            "l'autre compte, ou contactez votre bibliothèque."
        ),
        "already_has_link": _(
            "Une carte est déjà liée à votre compte pour ce service. Retirez-la d'abord pour en "
            "lier une autre."
        ),
        "disabled": _("Ce service n'est plus proposé. Rien n'a été enregistré."),
    }.get(code, _("Cette carte n'est plus liée à votre compte."))


def _too_many_attempts(minutes: int) -> str:
    return ngettext(
        "Trop de tentatives. Par sécurité, attendez %(minutes)d minute avant de réessayer.",
        "Trop de tentatives. Par sécurité, attendez %(minutes)d minutes avant de réessayer.",
        minutes,
    ) % {"minutes": minutes}


def _status_message(link: PartnerLink) -> tuple[int, str]:
    if link.status == PartnerLink.Status.BLOCKED:
        return messages.WARNING, _(
            "Votre carte est liée, mais la bibliothèque l'indique bloquée (par exemple pour des "
            "retards ou des frais impayés). Adressez-vous à votre bibliothèque."
        )
    if link.status == PartnerLink.Status.EXPIRED:
        return messages.WARNING, _(
            "Votre carte est liée, mais elle a expiré. Renouvelez votre abonnement auprès de "
            "votre bibliothèque."
        )
    if link.status == PartnerLink.Status.UNLINKED:
        return messages.WARNING, _(
            "La bibliothèque ne connaît plus cette carte. Retirez-la, puis liez votre nouvelle carte."
        )
    return messages.SUCCESS, _("Votre carte est liée et valide.")


def _render(
    request: HttpRequest, user: User, forms: dict[Any, LibraryLinkForm] | None = None, status: int = 200
) -> HttpResponse:
    forms = forms or {}
    entries = []
    for entry in selectors.resident_entries(user):
        form = None
        if entry.link is None and entry.connector.enabled:
            form = forms.get(entry.connector.pk) or LibraryLinkForm(prefix=f"c{entry.connector.pk.hex[:8]}")
        entries.append({"connector": entry.connector, "link": entry.link, "form": form})
    return render(request, "connectors/cards.html", {"entries": entries}, status=status)


@never_cache
@login_required
@require_GET
def cards_page(request: HttpRequest) -> HttpResponse:
    return _render(request, request_user(request))


@never_cache
@login_required
@require_POST
def card_link(request: HttpRequest, connector_id: UUID) -> HttpResponse:
    user = request_user(request)
    partner_connector = get_object_or_404(
        PartnerConnector.objects.select_related("client"), pk=connector_id, enabled=True
    )
    form = LibraryLinkForm(request.POST, prefix=f"c{partner_connector.pk.hex[:8]}")
    if not form.is_valid():
        return _render(request, user, {partner_connector.pk: form}, status=400)
    try:
        link = links.link_create(
            user=user,
            partner_connector=partner_connector,
            reference=form.cleaned_data["card_number"],
            secret=form.cleaned_data["pin"],
            ip=client_ip(request),
        )
    except links.LinkThrottled as exc:
        form.add_error(None, _too_many_attempts(exc.block.minutes))
        return _render(request, user, {partner_connector.pk: form}, status=429)
    except links.LinkError as exc:
        form.add_error(None, _link_error_message(exc.code))
        return _render(request, user, {partner_connector.pk: form}, status=409)
    except ConnectorError as exc:
        form.add_error(None, _error_message(exc))
        unavailable = not isinstance(exc, CredentialsRefused | InvalidReference)
        return _render(request, user, {partner_connector.pk: form}, status=503 if unavailable else 400)
    level, text = _status_message(link)
    messages.add_message(request, level, text)
    return redirect("connectors:cards")


@never_cache
@login_required
@require_POST
def card_refresh(request: HttpRequest, link_id: UUID) -> HttpResponse:
    user = request_user(request)
    try:
        link = links.link_refresh(user=user, link_id=link_id, ip=client_ip(request))
    except links.LinkThrottled as exc:
        messages.error(request, _too_many_attempts(exc.block.minutes))
    except links.LinkError as exc:
        messages.error(request, _link_error_message(exc.code))
    except ConnectorError:
        messages.error(
            request,
            _(
                "Le statut de la carte n'a pas pu être actualisé : le système des bibliothèques ne "
                "répond pas ou a répondu de façon inattendue. Le dernier statut connu reste affiché ; "
                "réessayez plus tard."
            ),
        )
    else:
        level, text = _status_message(link)
        messages.add_message(request, level, _("Statut actualisé.") + " " + text)
    return redirect("connectors:cards")


@never_cache
@login_required
@require_POST
def card_remove(request: HttpRequest, link_id: UUID) -> HttpResponse:
    user = request_user(request)
    try:
        links.link_remove(user=user, link_id=link_id, ip=client_ip(request))
    except links.LinkError as exc:
        messages.error(request, _link_error_message(exc.code))
    else:
        messages.success(request, _("La carte n'est plus liée à votre compte."))
    return redirect("connectors:cards")


def cards_summary(user: User) -> list[str]:
    """Mon compte's summary lines (identity.account_sections)."""
    count = len(selectors.resident_links(user))
    if not count:
        return [_("Aucune carte liée. Vous pouvez lier votre carte de bibliothèque.")]
    return [
        ngettext("%(count)d carte liée à votre compte.", "%(count)d cartes liées à votre compte.", count)
        % {"count": count}
    ]
