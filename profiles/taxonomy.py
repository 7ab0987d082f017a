"""What a resident may declare, and under which purpose each field is kept.

- Themes: the portal's taxonomy, versioned, French and English labels
  (`profiles/data/themes.json`). A later version may retire a code and name its
  replacement; stored choices are carried over when read (`current_theme_codes`).
- Communes: the 24 communes of the metropolis (identity.communes, INSEE codes) and the
  quartiers of those that have them (`profiles/data/quartiers.json`: Nantes).
- Accessibility preferences, notification frequencies, portal languages: closed lists.
- `FIELD_PURPOSES`: each declared field belongs to one ledger purpose; it is stored and used
  only while that purpose is granted, and erased when it ends (profiles.services).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.utils.translation import gettext_lazy as _

from identity.communes import Commune, commune_by_code, communes

DATA_DIR = Path(__file__).resolve().parent / "data"

DECLARED_PURPOSE = "personalisation-declared"
BROWSING_PURPOSE = "personalisation-browsing"
NEWS_PURPOSE = "service-news-email"

# Declared field -> the purpose it is kept under.
FIELD_PURPOSES: dict[str, str] = {
    "commune": DECLARED_PURPOSE,
    "quartier": DECLARED_PURPOSE,
    "themes": DECLARED_PURPOSE,
    "language": DECLARED_PURPOSE,
    "accessibility": DECLARED_PURPOSE,
    "notification_frequency": NEWS_PURPOSE,
    "notification_themes": NEWS_PURPOSE,
}
DECLARED_FIELDS = tuple(FIELD_PURPOSES)


def fields_of(purpose_code: str) -> tuple[str, ...]:
    return tuple(name for name, code in FIELD_PURPOSES.items() if code == purpose_code)


# --- Themes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Theme:
    code: str
    fr: str
    en: str

    def label(self, language: str) -> str:
        return self.en if (language or "fr").startswith("en") else self.fr


@dataclass(frozen=True)
class Taxonomy:
    version: int
    published: str
    themes: tuple[Theme, ...]
    retired: dict[str, str | None]


@cache
def taxonomy() -> Taxonomy:
    with (DATA_DIR / "themes.json").open(encoding="utf-8") as handle:
        raw = json.load(handle)
    return Taxonomy(
        version=int(raw["version"]),
        published=str(raw["published"]),
        themes=tuple(Theme(code=t["code"], fr=t["fr"], en=t["en"]) for t in raw["themes"]),
        retired=dict(raw.get("retired") or {}),
    )


def themes() -> tuple[Theme, ...]:
    return taxonomy().themes


@cache
def _themes_by_code() -> dict[str, Theme]:
    return {theme.code: theme for theme in themes()}


def theme_by_code(code: str) -> Theme | None:
    return _themes_by_code().get(code)


def is_theme(code: object) -> bool:
    return isinstance(code, str) and code in _themes_by_code()


def current_theme_codes(codes: Iterable[str]) -> list[str]:
    """Stored codes under the current taxonomy: retired ones replaced (or dropped), unknown
    ones dropped, duplicates removed, the taxonomy's order kept."""
    retired = taxonomy().retired
    wanted: set[str] = set()
    for code in codes:
        while code in retired:
            replacement = retired[code]
            if replacement is None:
                break
            code = replacement
        if is_theme(code):
            wanted.add(code)
    return [theme.code for theme in themes() if theme.code in wanted]


# --- Communes and quartiers --------------------------------------------------------------------


@dataclass(frozen=True)
class Quartier:
    code: str
    name: str


@cache
def _quartiers() -> dict[str, tuple[Quartier, ...]]:
    with (DATA_DIR / "quartiers.json").open(encoding="utf-8") as handle:
        raw = json.load(handle)
    return {
        insee: tuple(Quartier(code=q["code"], name=q["name"]) for q in rows)
        for insee, rows in raw.items()
        if insee.isdigit()
    }


def quartiers_of(insee_code: str) -> tuple[Quartier, ...]:
    return _quartiers().get(insee_code, ())


def quartier_by_code(insee_code: str, code: str) -> Quartier | None:
    return next((q for q in quartiers_of(insee_code) if q.code == code), None)


def all_communes() -> tuple[Commune, ...]:
    return communes()


def commune(insee_code: str) -> Commune | None:
    return commune_by_code(insee_code)


# --- Closed lists ------------------------------------------------------------------------------

ACCESSIBILITY = {
    "larger-text": _("Texte plus grand"),
    "easy-read": _("Français facile à lire et à comprendre (FALC)"),
    "sign-language": _("Vidéos en langue des signes française (LSF)"),
    "screen-reader": _("Pages adaptées aux lecteurs d'écran"),
    "reduced-motion": _("Moins d'animations"),
}
NOTIFICATION_FREQUENCIES = {
    "weekly": _("Une fois par semaine"),
    "monthly": _("Une fois par mois"),
}
PORTAL_LANGUAGES = {"fr": "Français", "en": "English"}


def accessibility_codes(codes: Iterable[str]) -> list[str]:
    """Known codes in the list's order."""
    wanted = set(codes)
    return [code for code in ACCESSIBILITY if code in wanted]
