"""The scopes connectors offer partners: `library_card`, `transport_subscription`, `eligibility`
(docs/partners.md).

Registered with the claims registry (identity.oidc.claims) from ConnectorsConfig.ready(): the
app config's wiring is the one place connectors reaches the composition root (pyproject's
import contracts allow `connectors.claims -> identity.oidc.claims` only). Released like every
claim: under a scope the token was granted, while the resident's answer on the consent
screen (the sharing purpose) grants it. `library_card` = {linked, valid, expires_on when the
library sends it}; the card number (`card_number`) only to the partner whose own library
connector says it needs it (`release_card_number`).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from connectors.selectors import (
    ELIGIBILITY_CLAIM,
    ELIGIBILITY_SCOPE,
    LIBRARY_CARD_CLAIM,
    LIBRARY_CARD_SCOPE,
    TRANSPORT_CLAIM,
    TRANSPORT_SCOPE,
    eligibility_claims,
    library_card_claims,
    transport_subscription_claims,
)
from identity.oidc.claims import ClaimProvider, DataCategory, ScopeSpec, register


def _read(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    return library_card_claims(user, scopes)


LIBRARY_PROVIDER = ClaimProvider(
    name="connectors.library",
    scopes=(
        ScopeSpec(
            name=LIBRARY_CARD_SCOPE,
            claims=(LIBRARY_CARD_CLAIM,),
            what=_("Si vous avez lié une carte de bibliothèque, si elle est valide et jusqu'à quand"),
            why=_("pour vous ouvrir les services des bibliothèques sans vous redemander votre carte"),
            claim_labels={LIBRARY_CARD_CLAIM: _("carte de bibliothèque liée et valide")},
            data_category=DataCategory(
                fr="Carte de bibliothèque (liée, valide, date d'expiration)",
                en="Library card (linked, valid, expiry date)",
            ),
        ),
    ),
    read=_read,
    client_read=library_card_claims,
)


def _read_transport(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    return transport_subscription_claims(user, scopes)


TRANSPORT_PROVIDER = ClaimProvider(
    name="connectors.transport",
    scopes=(
        ScopeSpec(
            name=TRANSPORT_SCOPE,
            claims=(TRANSPORT_CLAIM,),
            what=_(
                "Si votre carte Libertan liée porte un abonnement Naolib valide, son type et jusqu'à quand"
            ),
            why=_("pour vous proposer les tarifs et services réservés aux abonnés, sans justificatif"),
            claim_labels={TRANSPORT_CLAIM: _("abonnement Naolib : valide, type, date de fin")},
            data_category=DataCategory(
                fr="Abonnement de transport (valide, type, date de fin)",
                en="Transport subscription (valid, type, end date)",
            ),
        ),
    ),
    read=_read_transport,
    client_read=transport_subscription_claims,
)


def _read_eligibility(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    return eligibility_claims(user, scopes)


ELIGIBILITY_PROVIDER = ClaimProvider(
    name="connectors.ticketing",
    scopes=(
        ScopeSpec(
            name=ELIGIBILITY_SCOPE,
            claims=(ELIGIBILITY_CLAIM,),
            what=_(
                "Si votre Carte Blanche liée vous donne droit aux tarifs réduits, et jusqu'à quand "
                "(jamais vos revenus ni le numéro de la carte)"
            ),
            why=_("pour vous appliquer les tarifs réduits sans vous demander de justificatif"),
            claim_labels={ELIGIBILITY_CLAIM: _("droit aux tarifs réduits : dispositif, date de fin")},
            data_category=DataCategory(
                fr="Droit aux tarifs réduits (dispositif, date de fin)",
                en="Reduced-price eligibility (scheme, end date)",
            ),
        ),
    ),
    read=_read_eligibility,
    client_read=eligibility_claims,
)


def register_claim_providers() -> None:
    register(LIBRARY_PROVIDER)
    register(TRANSPORT_PROVIDER)
    register(ELIGIBILITY_PROVIDER)
