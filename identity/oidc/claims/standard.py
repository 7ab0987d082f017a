"""The standard claims of a resident (OpenID Connect Core 1.0 §5.1, §5.4): the first provider.

Scopes `openid`, `profile`, `email`, `address` and `phone`, read from the resident's own
row (`identity.models.User`): userinfo reads them in its single statement. Registered by
identity.apps.IdentityConfig.ready().
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from identity.oidc.claims.registry import ClaimProvider, DataCategory, ScopeSpec


def address_claim(user: Any) -> dict[str, str] | None:
    """The `address` claim (§5.1.1), or None when the resident gave no address."""
    parts = {
        "street_address": user.street_address,
        "locality": user.locality,
        "postal_code": user.postal_code,
        "region": user.region,
        "country": user.country,
    }
    parts = {key: value for key, value in parts.items() if value}
    if not parts:
        return None
    lines = [
        parts.get("street_address", ""),
        " ".join(value for value in (parts.get("postal_code", ""), parts.get("locality", "")) if value),
        parts.get("region", ""),
        parts.get("country", ""),
    ]
    parts["formatted"] = "\n".join(line for line in lines if line)
    return parts


def standard_claims(user: Any) -> dict[str, Any]:
    """Every standard claim of this resident, empty ones omitted (the registry keeps the granted)."""
    claims: dict[str, Any] = {
        "email": user.email,
        "email_verified": bool(user.email_verified),
        "locale": user.preferred_language,
        "updated_at": int(user.updated_at.timestamp()),
    }
    if user.given_name:
        claims["given_name"] = user.given_name
    if user.family_name:
        claims["family_name"] = user.family_name
    if user.full_name:
        claims["name"] = user.full_name
    if user.phone_number:
        claims["phone_number"] = user.phone_number
        claims["phone_number_verified"] = bool(user.phone_number_verified)
    address = address_claim(user)
    if address is not None:
        claims["address"] = address
    return claims


def _read(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    return standard_claims(user)


STANDARD_PROVIDER = ClaimProvider(
    name="standard",
    scopes=(
        ScopeSpec(
            name="openid",
            claims=("sub",),
            what=_("Un identifiant de connexion"),
            why=_("pour vous reconnaître quand vous revenez sur le service"),
            claim_labels={"sub": _("identifiant propre à ce service")},
            data_category=DataCategory(
                fr="Identifiant de compte (pseudonyme)", en="Account identifier (pseudonymous)"
            ),
        ),
        ScopeSpec(
            name="profile",
            claims=("name", "given_name", "family_name", "locale", "updated_at"),
            what=_("Vos nom et prénom"),
            why=_("pour s'adresser à vous"),
            claim_labels={
                "name": _("nom complet"),
                "given_name": _("prénom"),
                "family_name": _("nom"),
                "locale": _("langue préférée"),
                "updated_at": _("date de mise à jour du profil"),
            },
            data_category=DataCategory(fr="Nom et prénom", en="Given and family name"),
        ),
        ScopeSpec(
            name="email",
            claims=("email", "email_verified"),
            what=_("Votre adresse e-mail"),
            why=_("pour vous écrire au sujet de ce service"),
            claim_labels={"email": _("adresse e-mail"), "email_verified": _("adresse vérifiée ou non")},
            data_category=DataCategory(fr="Adresse e-mail", en="Email address"),
        ),
        ScopeSpec(
            name="address",
            claims=("address",),
            what=_("Votre adresse postale"),
            why=_("pour vous envoyer un courrier ou vérifier votre commune"),
            claim_labels={"address": _("adresse postale")},
            data_category=DataCategory(fr="Adresse postale", en="Postal address"),
        ),
        ScopeSpec(
            name="phone",
            claims=("phone_number", "phone_number_verified"),
            what=_("Votre numéro de téléphone"),
            why=_("pour vous joindre au sujet de ce service"),
            claim_labels={
                "phone_number": _("numéro de téléphone"),
                "phone_number_verified": _("numéro vérifié ou non"),
            },
            data_category=DataCategory(fr="Numéro de téléphone", en="Phone number"),
        ),
    ),
    read=_read,
    # What standard_claims reads (full_name is a property over given and family name).
    user_fields=(
        "email",
        "email_verified",
        "given_name",
        "family_name",
        "preferred_language",
        "phone_number",
        "phone_number_verified",
        "street_address",
        "locality",
        "postal_code",
        "region",
        "country",
        "updated_at",
    ),
)
