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
from connectors.forms import LinkForm, link_form
from connectors.models import PartnerConnector, PartnerLink
from connectors.protocol import (
    ConnectorConfigError,
    ConnectorError,
    CredentialsRefused,
    InvalidReference,
    PartnerProtocolError,
    RefusalReason,
)
from connectors.ticketing import KIND as TICKETING_KIND
from connectors.transport import KIND as TRANSPORT_KIND
from connectors.transport import CardReplaced
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


def _transport_error_message(exc: Exception) -> str:
    if isinstance(exc, CardReplaced):
        return _(
            "Cette carte Libertan a été remplacée par la carte dont le numéro se termine par "
            "%(masked)s. Liez plutôt votre nouvelle carte."
        ) % {"masked": exc.masked_replacement.replace("•", "").strip()}
    if isinstance(exc, CredentialsRefused) and exc.reason == RefusalReason.NO_CONTRACT:
        return _(
            "Aucun abonnement n'est enregistré sur cette carte Libertan. Si vous venez de "
            "souscrire, réessayez dans quelques jours ; sinon, adressez-vous à une agence Naolib."
        )
    if isinstance(exc, CredentialsRefused):
        return _(
            "Nous n'avons pas pu vérifier cette carte avec ces informations. Vérifiez le numéro "
            "de la carte, votre nom de famille et votre date de naissance, tels que Naolib les connaît."
        )
    if isinstance(exc, InvalidReference):
        return _("Un numéro de carte Libertan compte de 8 à 20 chiffres : vérifiez-le au dos de votre carte.")
    if isinstance(exc, PartnerProtocolError):
        return _(
            "Le service Naolib a répondu de façon inattendue. Rien n'a été enregistré. "
            "Réessayez plus tard : l'incident est signalé à nos équipes."
        )
    if isinstance(exc, ConnectorConfigError):
        return _(
            "Ce service n'est pas disponible pour le moment. Rien n'a été enregistré. Réessayez plus tard."
        )
    return _(
        "Le service Naolib ne répond pas pour le moment. Rien n'a été enregistré : "
        "réessayez dans quelques minutes."
    )


def _ticketing_error_message(exc: Exception) -> str:
    if isinstance(exc, CredentialsRefused):
        return _(
            "Nous n'avons pas pu vérifier cette Carte Blanche avec cette date de naissance. Vérifiez "
            "le numéro imprimé sur la carte et la date de naissance de son titulaire."
        )
    if isinstance(exc, InvalidReference):
        return _("Un numéro de Carte Blanche compte de 8 à 20 chiffres : vérifiez-le sur votre carte.")
    if isinstance(exc, PartnerProtocolError):
        return _(
            "La billetterie a répondu de façon inattendue. Rien n'a été enregistré. "
            "Réessayez plus tard : l'incident est signalé à nos équipes."
        )
    if isinstance(exc, ConnectorConfigError):
        return _(
            "Ce service n'est pas disponible pour le moment. Rien n'a été enregistré. Réessayez plus tard."
        )
    return _(
        "La billetterie ne répond pas pour le moment. Rien n'a été enregistré : "
        "réessayez dans quelques minutes."
    )


_ERROR_MESSAGES = {TRANSPORT_KIND: _transport_error_message, TICKETING_KIND: _ticketing_error_message}


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


def _transport_status_message(link: PartnerLink) -> tuple[int, str]:
    until = link.expires_on.strftime("%d/%m/%Y") if link.expires_on else ""
    label = str(link.attributes.get("contract_label") or link.attributes.get("contract_type") or "")
    if link.status == PartnerLink.Status.EXPIRED and link.expires_on:
        return messages.WARNING, _(
            "Votre carte Libertan est liée, mais son abonnement « %(label)s » a expiré le %(date)s. "
            "Renouvelez-le auprès de Naolib."
        ) % {"label": label, "date": until}
    if link.status == PartnerLink.Status.EXPIRED:
        return messages.WARNING, _("Votre carte Libertan est liée, mais elle ne porte plus d'abonnement.")
    if link.status == PartnerLink.Status.UNLINKED:
        return messages.WARNING, _(
            "Naolib ne connaît plus cette carte (elle a peut-être été remplacée). Retirez-la, puis "
            "liez votre nouvelle carte."
        )
    return messages.SUCCESS, _(
        "Votre carte Libertan est liée : abonnement « %(label)s » valable jusqu'au %(date)s."
    ) % {"label": label, "date": until}


def _ticketing_status_message(link: PartnerLink) -> tuple[int, str]:
    if link.status == PartnerLink.Status.UNLINKED:
        return messages.WARNING, _(
            "La billetterie ne connaît plus cette Carte Blanche. Retirez-la, puis liez votre nouvelle carte."
        )
    if link.status == PartnerLink.Status.EXPIRED:
        return messages.WARNING, _(
            "Votre Carte Blanche est liée, mais elle ne vous donne pas droit aux tarifs réduits "
            "en ce moment. Renseignez-vous auprès de la Ville pour la renouveler, puis actualisez "
            "l'état."
        )
    until = link.expires_on.strftime("%d/%m/%Y") if link.expires_on else ""
    label = str(link.attributes.get("scheme_label") or link.attributes.get("scheme") or "")
    return messages.SUCCESS, _(
        "Votre Carte Blanche est liée : droit aux tarifs réduits « %(label)s » jusqu'au %(date)s."
    ) % {"label": label, "date": until}


def _status_message(link: PartnerLink) -> tuple[int, str]:
    if link.connector.kind == TRANSPORT_KIND:
        return _transport_status_message(link)
    if link.connector.kind == TICKETING_KIND:
        return _ticketing_status_message(link)
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


def _prefix(partner_connector: PartnerConnector) -> str:
    return f"c{partner_connector.pk.hex[:8]}"


def _render(
    request: HttpRequest, user: User, forms: dict[Any, LinkForm] | None = None, status: int = 200
) -> HttpResponse:
    forms = forms or {}
    entries = []
    for entry in selectors.resident_entries(user):
        form = None
        if entry.link is None and entry.connector.enabled:
            form = forms.get(entry.connector.pk) or link_form(
                entry.connector.kind, prefix=_prefix(entry.connector), user=user
            )
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
    form = link_form(partner_connector.kind, prefix=_prefix(partner_connector), data=request.POST)
    if not form.is_valid():
        return _render(request, user, {partner_connector.pk: form}, status=400)
    reference, secret = form.credentials()
    try:
        link = links.link_create(
            user=user,
            partner_connector=partner_connector,
            reference=reference,
            secret=secret,
            ip=client_ip(request),
        )
    except links.LinkThrottled as exc:
        form.add_error(None, _too_many_attempts(exc.block.minutes))
        return _render(request, user, {partner_connector.pk: form}, status=429)
    except links.LinkError as exc:
        form.add_error(None, _link_error_message(exc.code))
        return _render(request, user, {partner_connector.pk: form}, status=409)
    except ConnectorError as exc:
        form.add_error(None, _ERROR_MESSAGES.get(partner_connector.kind, _error_message)(exc))
        unavailable = not isinstance(exc, CredentialsRefused | InvalidReference)
        return _render(request, user, {partner_connector.pk: form}, status=503 if unavailable else 400)
    level, text = _status_message(link)
    messages.add_message(request, level, text)
    return redirect("connectors:cards")


def _refresh_failed(user: User, link_id: UUID) -> str:
    if PartnerLink.objects.filter(pk=link_id, user=user, connector__kind=TICKETING_KIND).exists():
        return _(
            "L'état de votre Carte Blanche n'a pas pu être actualisé : la billetterie ne répond pas "
            "ou a répondu de façon inattendue. Le dernier état connu reste affiché ; réessayez plus tard."
        )
    if PartnerLink.objects.filter(pk=link_id, user=user, connector__kind=TRANSPORT_KIND).exists():
        return _(
            "L'état de l'abonnement n'a pas pu être actualisé : le service Naolib ne répond pas ou a "
            "répondu de façon inattendue. Le dernier état connu reste affiché ; réessayez plus tard."
        )
    return _(
        "Le statut de la carte n'a pas pu être actualisé : le système des bibliothèques ne "
        "répond pas ou a répondu de façon inattendue. Le dernier statut connu reste affiché ; "
        "réessayez plus tard."
    )


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
        messages.error(request, _refresh_failed(user, link_id))
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


def _linkable_text(labels: list[Any]) -> str:
    """ "votre carte de bibliothèque ou votre carte Libertan" """
    named = [_("votre %(card)s") % {"card": label} for label in labels]
    if len(named) == 1:
        return named[0]
    return _("%(first)s ou %(last)s") % {"first": ", ".join(named[:-1]), "last": named[-1]}


def cards_summary(user: User) -> list[str]:
    """Mon compte's summary lines (identity.account_sections): the count of the resident's
    links, or what they can link (the kinds of the enabled connectors)."""
    count = len(selectors.resident_links(user))
    if not count:
        labels = selectors.linkable_labels()
        if not labels:
            return [_("Aucune carte liée. Aucun service ne propose de lier une carte pour le moment.")]
        return [_("Aucune carte liée. Vous pouvez lier %(cards)s.") % {"cards": _linkable_text(labels)}]
    return [
        ngettext("%(count)d carte liée à votre compte.", "%(count)d cartes liées à votre compte.", count)
        % {"count": count}
    ]
