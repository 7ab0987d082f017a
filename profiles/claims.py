"""The scopes profiles offers partners: `territory`, `accessibility`, `interests`.

Registered with the claims registry (identity.oidc.claims) from ProfilesConfig.ready(): the
app config's wiring is the one place profiles reaches the composition root (pyproject's
import contracts allow `profiles.claims -> identity.oidc.claims` only). A claim is released
when the resident allowed the partner on the consent screen (the sharing purpose) AND the
purpose the data is kept under is granted: `territory` and `accessibility` name
`personalisation-declared` as their provider's purpose (checked by identity.oidc.sharing);
`interests` mixes declared themes and inferred ones, so its reader checks each purpose itself
(profiles.selectors.claims_read).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from identity.oidc.claims import ClaimProvider, DataCategory, ScopeSpec, register
from profiles import taxonomy
from profiles.selectors import ACCESSIBILITY_SCOPE, INTERESTS_SCOPE, TERRITORY_SCOPE, claims_read

DECLARED_PROVIDER = ClaimProvider(
    name="profiles.declared",
    scopes=(
        ScopeSpec(
            name=TERRITORY_SCOPE,
            claims=("commune",),
            what=_("Votre commune de résidence (et votre quartier si vous l'avez indiqué)"),
            why=_("pour vous montrer les informations et les services de votre commune"),
            claim_labels={"commune": _("commune de résidence")},
            data_category=DataCategory(fr="Commune de résidence", en="Commune of residence"),
        ),
        ScopeSpec(
            name=ACCESSIBILITY_SCOPE,
            claims=("accessibility",),
            what=_("Vos préférences d'accessibilité"),
            why=_("pour adapter l'affichage des pages à vos besoins"),
            claim_labels={"accessibility": _("préférences d'accessibilité")},
            data_category=DataCategory(fr="Préférences d'accessibilité", en="Accessibility preferences"),
        ),
    ),
    read=claims_read,
    purpose_code=taxonomy.DECLARED_PURPOSE,
)

INTERESTS_PROVIDER = ClaimProvider(
    name="profiles.interests",
    scopes=(
        ScopeSpec(
            name=INTERESTS_SCOPE,
            claims=("interests",),
            what=_("Les thèmes qui vous intéressent, déclarés par vous ou déduits de votre navigation"),
            why=_("pour vous proposer d'abord les contenus sur ces thèmes"),
            claim_labels={"interests": _("centres d'intérêt")},
            data_category=DataCategory(fr="Centres d'intérêt", en="Interests", kind="inferred"),
        ),
    ),
    read=claims_read,
)


def register_claim_providers() -> None:
    register(DECLARED_PROVIDER)
    register(INTERESTS_PROVIDER)
