"""Reads of the connectors app: the resident's links, the partners' connectors, the claim."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from connectors import registry
from connectors.library import KIND as LIBRARY_KIND
from connectors.models import PartnerConnector, PartnerLink
from connectors.sealing import Unsealable, open_reference
from connectors.ticketing import KIND as TICKETING_KIND
from connectors.transport import KIND as TRANSPORT_KIND
from identity.models import User

LIBRARY_CARD_SCOPE = "library_card"
LIBRARY_CARD_CLAIM = "library_card"
TRANSPORT_SCOPE = "transport_subscription"
TRANSPORT_CLAIM = "transport_subscription"
ELIGIBILITY_SCOPE = "eligibility"
ELIGIBILITY_CLAIM = "eligibility"


@dataclass(frozen=True)
class ConnectorEntry:
    """One enabled partner connector on the resident's page, with the resident's link to it."""

    connector: PartnerConnector
    link: PartnerLink | None


def enabled_connectors() -> list[PartnerConnector]:
    """The connectors a resident may link an account at: enabled, of a kind that links
    accounts (the email connector does not: connectors.protocol.Connector.links_accounts)."""
    rows = PartnerConnector.objects.filter(enabled=True).select_related("client").order_by("label")
    return [row for row in rows if _links_accounts(row.kind)]


def _links_accounts(kind: str) -> bool:
    cls = registry.connector_class(kind)
    return cls is None or cls.links_accounts


def linkable_labels() -> list[Any]:
    """What residents can link now: the label of each kind of an enabled connector that links
    something (connectors.registry.resident_labels), once per kind, by kind."""
    labels = registry.resident_labels()
    enabled = set(PartnerConnector.objects.filter(enabled=True).values_list("kind", flat=True))
    return [label for kind, label in labels.items() if kind in enabled]


def resident_entries(user: User) -> list[ConnectorEntry]:
    """Every enabled connector (to link) and every link of the resident (a disabled
    connector's links are still shown: the resident may remove them)."""
    links = {
        link.connector_id: link
        for link in PartnerLink.objects.filter(user=user).select_related("connector__client")
    }
    entries = [ConnectorEntry(connector, links.pop(connector.pk, None)) for connector in enabled_connectors()]
    entries += [ConnectorEntry(link.connector, link) for link in links.values()]
    return entries


def resident_links(user: User) -> list[PartnerLink]:
    return list(
        PartnerLink.objects.filter(user=user).select_related("connector__client").order_by("created_at")
    )


def links_partners(user: User) -> list[str]:
    """client_ids of the partners the resident linked an account at (the erasure tells each)."""
    return sorted(
        {
            str(client_id)
            for client_id in PartnerLink.objects.filter(user=user).values_list(
                "connector__client__client_id", flat=True
            )
        }
    )


def _library_claim(link: PartnerLink | None, *, with_number: bool) -> dict[str, Any]:
    if link is None:
        return {"linked": False}
    claim: dict[str, Any] = {"linked": True, "valid": link.status == PartnerLink.Status.VALID}
    if link.expires_on is not None:
        claim["expires_on"] = link.expires_on.isoformat()
    if with_number:
        with contextlib.suppress(Unsealable):
            claim["card_number"] = open_reference(link.pk, link.reference_sealed)
    return claim


def library_card_claims(user: User, scopes: frozenset[str], client: Any = None) -> dict[str, Any]:
    """The `library_card` claim: the resident's link at the client's own library connector
    when the client has one, else their link at any enabled library connector (a valid one
    first). The card number only when the client's own connector says it needs it
    (`release_card_number` in its settings)."""
    if LIBRARY_CARD_SCOPE not in scopes:
        return {}
    links = list(
        PartnerLink.objects.filter(
            user=user, connector__kind=LIBRARY_KIND, connector__enabled=True
        ).select_related("connector")
    )
    own = [link for link in links if client is not None and link.connector.client_id == client.pk]
    if client is not None and own:
        chosen: PartnerLink | None = own[0]
    else:
        chosen = next((link for link in links if link.status == PartnerLink.Status.VALID), None) or (
            links[0] if links else None
        )
    with_number = bool(
        client is not None
        and chosen is not None
        and chosen.connector.client_id == client.pk
        and chosen.connector.config.get("release_card_number")
    )
    return {LIBRARY_CARD_CLAIM: _library_claim(chosen, with_number=with_number)}


def _transport_claim(link: PartnerLink | None) -> dict[str, Any]:
    if link is None:
        return {"linked": False}
    claim: dict[str, Any] = {"linked": True, "valid": link.status == PartnerLink.Status.VALID}
    contract_type = link.attributes.get("contract_type")
    if link.status in {PartnerLink.Status.VALID, PartnerLink.Status.EXPIRED} and contract_type:
        claim["type"] = str(contract_type)
    if link.expires_on is not None:
        claim["valid_until"] = link.expires_on.isoformat()
    return claim


def transport_subscription_claims(user: User, scopes: frozenset[str], client: Any = None) -> dict[str, Any]:
    """The `transport_subscription` claim: whether the resident's linked Libertan card holds a
    valid subscription, its type and until when; never the card number. The client's own
    transport connector's link when it has one, else a valid link first."""
    if TRANSPORT_SCOPE not in scopes:
        return {}
    links = list(
        PartnerLink.objects.filter(
            user=user, connector__kind=TRANSPORT_KIND, connector__enabled=True
        ).select_related("connector")
    )
    own = [link for link in links if client is not None and link.connector.client_id == client.pk]
    chosen = (
        own[0]
        if own
        else next((link for link in links if link.status == PartnerLink.Status.VALID), None)
        or (links[0] if links else None)
    )
    return {TRANSPORT_CLAIM: _transport_claim(chosen)}


def eligibility_claims(user: User, scopes: frozenset[str], client: Any = None) -> dict[str, Any]:
    """The `eligibility` claim: the resident's current reduced-price eligibilities, as the
    ticketing platforms where they linked a card said at the last check: a list of {scheme,
    valid_until}, one per scheme (the latest end), nothing when none is current (an end
    passed since the last check counts as none). Never the card number, never income data
    (the contract carries none)."""
    if ELIGIBILITY_SCOPE not in scopes:
        return {}
    today = date.today()
    found: dict[str, date] = {}
    links = PartnerLink.objects.filter(
        user=user,
        connector__kind=TICKETING_KIND,
        connector__enabled=True,
        status=PartnerLink.Status.VALID,
        expires_on__gte=today,
    )
    for link in links:
        scheme = str(link.attributes.get("scheme") or "")
        if scheme and link.expires_on is not None and link.expires_on > found.get(scheme, date.min):
            found[scheme] = link.expires_on
    if not found:
        return {}
    return {
        ELIGIBILITY_CLAIM: [
            {"scheme": scheme, "valid_until": until.isoformat()} for scheme, until in sorted(found.items())
        ]
    }
