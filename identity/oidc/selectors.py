"""Reads of identity.oidc for the resident's pages: the partners that received their data.

- `connected_services(*, user) -> list[ConnectedService]` ("Mon compte", Services
  connectés): every partner client the resident allowed to receive claims (the consent
  ledger's sharing purposes, identity/oidc/sharing.py) and every internal service the
  resident was told about (identity/oidc/internal_notice.py), with the claims in plain
  words (claims registry), since when, when it last obtained tokens, and the consents
  behind it. Raises `LedgerTampered` when a ledger row of the resident is altered.

"Last used" is what is recorded: the last time the partner obtained tokens for the
resident (an authorization code redeemed or a refresh: tokens' and sessions' records).
A userinfo call with a token already held writes nothing (it is one read), so it is not
counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Max
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model

from consent.selectors import PartnerConsent, partner_consents_for_user
from identity.models import SessionClient, User
from identity.oidc.models import InternalServiceNotice
from identity.oidc.sharing import describe_scopes


@dataclass
class ConnectedService:
    """One partner as the resident's "Services connectés" page shows it."""

    client: Any
    internal: bool
    scopes: list[dict[str, object]]
    since: datetime | None
    last_used: datetime | None
    # The partner's sharing purposes the resident decided on, oldest first (none if internal).
    consents: list[PartnerConsent] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Internal, or a consent is currently in force."""
        return self.internal or any(consent.granted for consent in self.consents)

    @property
    def withdrawable(self) -> bool:
        """A consent stands (in force or lapsed): "Retirer l'accès" records its withdrawal."""
        return not self.internal and any(consent.grant_standing for consent in self.consents)

    @property
    def withdrawn_at(self) -> datetime | None:
        """When the resident last withdrew, if no consent stands any more."""
        if self.internal or self.withdrawable:
            return None
        withdrawals = [c.decided_at for c in self.consents if c.status == "withdrawn"]
        return max(withdrawals) if withdrawals else None


def _scopes_of(key: str) -> list[str]:
    """The scopes of a sharing purpose's key (sorted scopes, space-separated: sharing.py)."""
    return sorted(set(key.split()), key=lambda scope: (scope != "openid", scope))


def _last_token_times(user: User) -> dict[Any, datetime]:
    """Client pk -> when it last obtained tokens for the resident (code redeemed, refresh)."""
    latest: dict[Any, datetime] = {}

    def merge(rows: Any) -> None:
        for client_pk, when in rows:
            if (
                client_pk is not None
                and when is not None
                and (client_pk not in latest or when > latest[client_pk])
            ):
                latest[client_pk] = when

    for model in (get_access_token_model(), get_refresh_token_model()):
        merge(
            model.objects.filter(user=user)
            .values("application_id")
            .annotate(last=Max("created"))
            .values_list("application_id", "last")
        )
    merge(
        SessionClient.objects.filter(session__user=user)
        .values("client_id")
        .annotate(last=Max("last_issued_at"))
        .values_list("client_id", "last")
    )
    return latest


def connected_services(*, user: User) -> list[ConnectedService]:
    """The partners that received the resident's data: those in force first, then by name."""
    by_client: dict[Any, list[PartnerConsent]] = {}
    for consent in partner_consents_for_user(user=user):
        by_client.setdefault(consent.client_pk, []).append(consent)
    notices = {
        notice.client_id: notice
        for notice in InternalServiceNotice.objects.filter(user=user, client__is_internal=True)
    }
    clients = get_application_model().objects.in_bulk(list({*by_client, *notices}))
    last_used = _last_token_times(user)
    services = []
    for client_pk, client in clients.items():
        if client.is_internal:
            notice = notices.get(client_pk)
            if notice is None:
                continue
            services.append(
                ConnectedService(
                    client=client,
                    internal=True,
                    scopes=describe_scopes(_scopes_of(notice.scopes)),
                    since=notice.first_shown_at,
                    last_used=last_used.get(client_pk),
                )
            )
            continue
        consents = [consent for consent in by_client.get(client_pk, []) if consent.first_given_at]
        if not consents:
            continue  # asked and refused, never allowed: it received nothing
        shown = [c for c in consents if c.granted] or consents
        scopes = _scopes_of(" ".join(consent.client_key for consent in shown))
        services.append(
            ConnectedService(
                client=client,
                internal=False,
                scopes=describe_scopes(scopes),
                since=min(c.first_given_at for c in consents if c.first_given_at),
                last_used=last_used.get(client_pk),
                consents=consents,
            )
        )
    services.sort(key=lambda service: (not service.active, service.client.name.casefold()))
    return services


def services_summary(user: User) -> list[str]:
    """For Mon compte's summary page: which partners receive the resident's data now."""
    receiving = [service for service in connected_services(user=user) if service.active]
    if not receiving:
        return [_("Aucun service partenaire ne reçoit vos informations.")]
    names = ", ".join(str(service.client.name) for service in receiving)
    return [
        ngettext(
            "%(count)d service reçoit vos informations : %(names)s.",
            "%(count)d services reçoivent vos informations : %(names)s.",
            len(receiving),
        )
        % {"count": len(receiving), "names": names}
    ]
