"""Plain-language descriptions of what a client receives (consent screen)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from identity.oidc.constants import SCOPE_CLAIMS

SCOPE_TEXT = {
    "openid": (
        _("Un identifiant de connexion"),
        _("pour vous reconnaître quand vous revenez sur le service"),
    ),
    "profile": (_("Vos nom et prénom"), _("pour s'adresser à vous")),
    "email": (_("Votre adresse e-mail"), _("pour vous écrire au sujet de ce service")),
}


def describe_scopes(scopes: list[str]) -> list[dict[str, object]]:
    described = []
    for scope in scopes:
        if scope in SCOPE_TEXT:
            what, why = SCOPE_TEXT[scope]
            described.append({"scope": scope, "what": what, "why": why, "claims": SCOPE_CLAIMS[scope]})
    return described
