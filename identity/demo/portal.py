"""What the demo portal page (/demo/portail/) shows from the personalisation endpoint's answer.

The page plays the territorial portal (nantes.fr): it receives items from
GET /profiles/api/v1/personalisation (docs/partners.md, "Personalisation") and turns them into
"Les actualités de votre commune" and "Vos thèmes", each with why it is shown. The news are
made up for the demo and say so. Plain data: no model, no call to the provider (views.py
does the HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

# Made-up news, clearly labelled as such on the page: (French, English).
COMMUNE_NEWS: dict[str, list[tuple[str, str]]] = {
    "44109": [
        ("Les Machines de l'île ouvrent une nouvelle galerie", "Les Machines de l'île open a new gallery"),
        ("Travaux sur la ligne 1 du tramway cet été", "Works on tram line 1 this summer"),
    ],
    "44143": [
        (
            "Le marché de Rezé s'installe place François-Mitterrand",
            "Rezé's market moves to place François-Mitterrand",
        ),
    ],
    "44162": [
        (
            "Saint-Herblain : inscriptions ouvertes à l'école de musique",
            "Saint-Herblain: music school enrolment open",
        ),
    ],
}
GENERIC_NEWS = (
    "Conseil municipal de {name} : l'ordre du jour est en ligne",
    "{name} town council: the agenda is online",
)
QUARTIER_NEWS = ("Réunion du conseil de quartier {name}", "{name} neighbourhood council meeting")
THEME_NEWS = ("À la une sur le thème « {label} »", "In the news: {label}")


@dataclass
class NewsItem:
    title: str
    reason: str
    demo: bool = True


@dataclass
class PortalView:
    commune: str = ""
    commune_news: list[NewsItem] = field(default_factory=list)
    themes: list[NewsItem] = field(default_factory=list)
    accessibility: list[str] = field(default_factory=list)
    accessibility_reason: str = ""

    @property
    def empty(self) -> bool:
        return not (self.commune_news or self.themes or self.accessibility)


def _pick(pair: tuple[str, str], english: bool) -> str:
    return pair[1] if english else pair[0]


def _sharing_reason(reason: dict[str, Any]) -> str:
    purpose = reason.get("purpose", "")
    return _("finalité « %(purpose)s » accordée, et partage avec ce service accepté") % {"purpose": purpose}


def _commune_items(item: dict[str, Any], english: bool) -> list[NewsItem]:
    value = item.get("value") or {}
    name = str(value.get("name", ""))
    reason = _("Parce que vous avez indiqué habiter %(name)s (%(why)s).") % {
        "name": name,
        "why": _sharing_reason(item.get("reason") or {}),
    }
    news = COMMUNE_NEWS.get(str(value.get("insee_code", ""))) or [GENERIC_NEWS]
    return [NewsItem(title=_pick(pair, english).format(name=name), reason=reason) for pair in news]


def _quartier_item(item: dict[str, Any], english: bool) -> NewsItem:
    name = str((item.get("value") or {}).get("name", ""))
    reason = _("Parce que vous avez indiqué votre quartier, %(name)s (%(why)s).") % {
        "name": name,
        "why": _sharing_reason(item.get("reason") or {}),
    }
    return NewsItem(title=_pick(QUARTIER_NEWS, english).format(name=name), reason=reason)


def _theme_item(item: dict[str, Any], english: bool) -> NewsItem:
    label = str((item.get("value") or {}).get("label", ""))
    why = _sharing_reason(item.get("reason") or {})
    if item.get("source") == "inferred":
        reason = _(
            "Parce que vous avez consulté des pages sur ce thème : centre d'intérêt déduit de "
            "votre navigation (%(why)s)."
        ) % {"why": why}
    else:
        reason = _("Parce que vous suivez ce thème : vous l'avez indiqué (%(why)s).") % {"why": why}
    return NewsItem(title=_pick(THEME_NEWS, english).format(label=label), reason=reason)


def portal_view(answer: dict[str, Any], *, english: bool) -> PortalView:
    """The page's content from the endpoint's answer (items of kinds it does not know are left out)."""
    view = PortalView()
    for item in answer.get("items") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("kind")
        if kind == "commune":
            view.commune = str((item.get("value") or {}).get("name", ""))
            view.commune_news[:0] = _commune_items(item, english)
        elif kind == "quartier":
            view.commune_news.append(_quartier_item(item, english))
        elif kind == "theme":
            view.themes.append(_theme_item(item, english))
        elif kind == "accessibility":
            view.accessibility.append(str(item.get("value", "")))
            view.accessibility_reason = _("Parce que vous avez indiqué ces préférences (%(why)s).") % {
                "why": _sharing_reason(item.get("reason") or {})
            }
    return view
