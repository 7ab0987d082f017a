"""The public privacy policy (/confidentialite/), generated from the purpose catalogue, and
each purpose's notices in full with what changed between versions
(/confidentialite/notices/<code>/).

What the page says about each purpose comes from the catalogue and its current notices
(`consent.selectors.privacy_policy_purposes`); who the controller and the DPO are comes
from the `CONSENT_CONTROLLER_*` settings; the cookies listed are the ones this site sets,
read from the settings that name them. Receipts, the cookie widget and notices link here
through `CONSENT_POLICY_URL`, whose default is this page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from consent import selectors
from consent.notice_diff import notice_diff
from consent.services import UnknownPurpose
from identity.ratelimit import DEVICE_COOKIE_MAX_AGE, device_cookie_name

# GDPR Art. 6(1) bases, as the catalogue stores them, in plain words.
_LEGAL_BASES = {
    "Art. 6(1)(a)": lambda: _("votre consentement (RGPD, article 6.1.a)"),
    "Art. 6(1)(b)": lambda: _("l'exécution d'un contrat (RGPD, article 6.1.b)"),
    "Art. 6(1)(c)": lambda: _("une obligation légale (RGPD, article 6.1.c)"),
    "Art. 6(1)(e)": lambda: _("notre mission de service public (RGPD, article 6.1.e)"),
}

_DAY = 60 * 60 * 24


@dataclass(frozen=True)
class SiteCookie:
    name: str
    purpose: str
    lifetime: str


def legal_basis_label(gdpr_article: str) -> str:
    label = _LEGAL_BASES.get(gdpr_article.strip())
    return label() if label else gdpr_article


def _duration(seconds: int) -> str:
    if seconds % _DAY == 0:
        days = seconds // _DAY
        return ngettext("%(days)s jour", "%(days)s jours", days) % {"days": days}
    hours = seconds // 3600
    return ngettext("%(hours)s heure", "%(hours)s heures", hours) % {"hours": hours}


def site_cookies() -> list[SiteCookie]:
    """The cookies this site sets: all strictly necessary, none needs consent."""
    return [
        SiteCookie(
            settings.SESSION_COOKIE_NAME,
            _("Vous garder connecté pendant votre visite."),
            _duration(settings.SESSION_COOKIE_AGE),
        ),
        SiteCookie(
            settings.CSRF_COOKIE_NAME,
            _("Protéger les formulaires contre l'envoi par un autre site."),
            _duration(settings.CSRF_COOKIE_AGE),
        ),
        SiteCookie(
            settings.LANGUAGE_COOKIE_NAME,
            _("Retenir la langue que vous avez choisie."),
            _(
                "jusqu'à la fermeture du navigateur, ou 365 jours si un service partenaire a indiqué "
                "votre langue"
            ),
        ),
        SiteCookie(
            device_cookie_name(),
            _(
                "Reconnaître un navigateur où vous vous êtes déjà connecté, pour ne pas le bloquer "
                "quand quelqu'un essaie de deviner votre mot de passe."
            ),
            _duration(DEVICE_COOKIE_MAX_AGE),
        ),
        SiteCookie(
            CookieStorage.cookie_name,
            _("Afficher un message après une action (par exemple « Déconnexion effectuée »)."),
            _("jusqu'à l'affichage du message"),
        ),
    ]


@require_GET
def privacy_policy(request: HttpRequest) -> HttpResponse:
    language = "en" if (get_language() or "fr").startswith("en") else "fr"
    purposes = [
        (purpose, legal_basis_label(purpose.gdpr_article))
        for purpose in selectors.privacy_policy_purposes(language=language)
    ]
    context = {
        "controller": settings.CONSENT_CONTROLLER,
        "own_purposes": [entry for entry in purposes if entry[0].partner_name is None],
        "partner_purposes": [entry for entry in purposes if entry[0].partner_name is not None],
        "cookies": site_cookies(),
        "session_hours": settings.SESSION_COOKIE_AGE // 3600,
        "verification_days": settings.EMAIL_VERIFICATION_TIMEOUT // _DAY,
    }
    return render(request, "consent/privacy_policy.html", context)


@require_GET
def notice_history(request: HttpRequest, code: str) -> HttpResponse:
    """Every version of the notices that applied to a purpose, newest first, each in full in the
    reader's language with what changed since the version before it."""
    try:
        purpose = selectors.purpose_by_code(code)
    except UnknownPurpose as exc:
        raise Http404 from exc
    english = (get_language() or "fr").startswith("en")
    versions: list[dict[str, Any]] = []
    previous = ""
    for notice in selectors.notice_versions(purpose=purpose):
        text = notice.text_en if english else notice.text_fr
        versions.append(
            {
                "notice": notice,
                "text": text,
                "first": not versions,
                "diff": notice_diff(previous, text) if versions else [],
            }
        )
        previous = text
    versions.reverse()
    context = {
        "purpose": purpose,
        "title": purpose.title("en" if english else "fr"),
        "versions": versions,
    }
    return render(request, "consent/notice_history.html", context)
