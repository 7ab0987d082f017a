"""identity's sections of Mon compte (identity.account_sections): what the summary page says
about the resident's personal information, sign-in security and open sessions."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from identity.account_sections import AccountSection, register
from identity.franceconnect.selectors import link_for_user
from identity.mfa.selectors import factors_of
from identity.models import User
from identity.sessions import sessions_active


def personal_summary(user: User) -> list[str]:
    held = [_("votre adresse e-mail")]
    if user.given_name or user.family_name:
        held.append(_("votre nom"))
    if user.phone_number:
        held.append(_("votre numéro de téléphone (non vérifié)"))
    if user.street_address or user.locality:
        held.append(_("votre adresse postale"))
    lines = [_("Nous conservons : %(items)s.") % {"items": ", ".join(held)}]
    if not user.email_verified:
        lines.append(_("Votre adresse e-mail n'est pas encore confirmée."))
    return lines


def security_summary(user: User) -> list[str]:
    factors = len(factors_of(user))
    lines = [
        ngettext(
            "Vérification en deux étapes : activée (%(count)d moyen).",
            "Vérification en deux étapes : activée (%(count)d moyens).",
            factors,
        )
        % {"count": factors}
        if factors
        else _("Vérification en deux étapes : pas encore activée.")
    ]
    if link_for_user(user) is not None:
        lines.append(_("Votre compte est lié à FranceConnect."))
    return lines


def sessions_summary(user: User) -> list[str]:
    count = len(sessions_active(user=user))
    return [
        ngettext(
            "%(count)d session ouverte sur vos appareils.",
            "%(count)d sessions ouvertes sur vos appareils.",
            count,
        )
        % {"count": count}
    ]


def register_sections() -> None:
    register(AccountSection("summary", gettext_lazy("Résumé"), "identity:account", 0, lambda user: []))
    register(
        AccountSection(
            "personal",
            gettext_lazy("Informations personnelles"),
            "identity:personal-information",
            10,
            personal_summary,
            gettext_lazy(
                "Voir et modifier mes informations personnelles "
                "(nom, adresse e-mail, téléphone, adresse postale)"
            ),
        )
    )
    register(
        AccountSection(
            "security",
            gettext_lazy("Sécurité de connexion"),
            "identity:mfa:factors",
            60,
            security_summary,
            gettext_lazy("Gérer la vérification en deux étapes et les clés d'accès"),
        )
    )
    register(
        AccountSection(
            "sessions",
            gettext_lazy("Sessions ouvertes"),
            "identity:sessions",
            70,
            sessions_summary,
            gettext_lazy("Voir mes sessions ouvertes et me déconnecter partout"),
        )
    )
