"""Reads of the profiles app. Every read asks the consent gate first: data kept under a
purpose that is not granted now (expired, withdrawn, flagged by a material notice change
and not yet swept) is never returned.

- `declared_view(*, user, language) -> DeclaredView`: each declared field with its value,
  its purpose and whether that purpose is granted (no value when it is not).
- `interests_view(*, subject, language, now=None) -> list[InterestView]`: inferred interests
  above the fading threshold, strongest first, each with why it was inferred (sites, views,
  dates), corrected themes left out; [] unless `personalisation-browsing` is granted.
- `corrections_view(*, subject, language) -> list[ThemeView]`: the themes marked "not interested".
- `personalisation(*, subject, language, declared=True, inferred=True) -> dict`: what a portal
  may use for this resident or browser, each item with the purpose that allows it.
- `claims_read(user, scopes) -> dict`: the claims of the scopes `territory`, `interests`,
  `accessibility` (registered with the claims registry by profiles.apps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from consent.gate import consent_granted_many_for_subject, consent_is_granted_for_subject
from consent.purpose_data import DataSubject
from profiles import decay, taxonomy
from profiles.models import DeclaredProfile, InferenceSettings, Interest, InterestCorrection
from profiles.services import half_life, subject_of

LIST_FIELDS = ("themes", "accessibility", "notification_themes")


def _english(language: str) -> bool:
    return (language or "fr").startswith("en")


@dataclass(frozen=True)
class ThemeView:
    code: str
    label: str


def theme_view(code: str, language: str) -> ThemeView:
    theme = taxonomy.theme_by_code(code)
    return ThemeView(code=code, label=theme.label(language) if theme else code)


@dataclass
class DeclaredView:
    """The declared profile as the resident and the API see it."""

    granted: dict[str, bool]  # purpose code -> granted now
    values: dict[str, Any]  # field -> value ("" / [] when not declared or not granted)
    updated_at: datetime | None = None

    def purpose_of(self, name: str) -> str:
        return taxonomy.FIELD_PURPOSES[name]

    def field_granted(self, name: str) -> bool:
        return self.granted[taxonomy.FIELD_PURPOSES[name]]


def purpose_granted(subject: DataSubject, purpose_code: str) -> bool:
    """The consent gate now for one purpose and one subject (an account or a browser)."""
    return consent_is_granted_for_subject(subject=subject, purpose_code=purpose_code)


def browsing_granted(subject: DataSubject) -> bool:
    return purpose_granted(subject, taxonomy.BROWSING_PURPOSE)


def granted_purposes(subject: DataSubject) -> dict[str, bool]:
    codes = sorted({*taxonomy.FIELD_PURPOSES.values(), taxonomy.BROWSING_PURPOSE})
    return consent_granted_many_for_subject(subject=subject, purpose_codes=codes)  # one statement


def declared_values(profile: DeclaredProfile | None, granted: dict[str, bool]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, purpose in taxonomy.FIELD_PURPOSES.items():
        empty: Any = [] if name in LIST_FIELDS else ""
        value = getattr(profile, name) if profile is not None and granted.get(purpose) else empty
        if name in ("themes", "notification_themes") and value:
            value = taxonomy.current_theme_codes(value)
        values[name] = value
    return values


def declared_view(*, user: Any) -> DeclaredView:
    subject = subject_of(user)
    granted = granted_purposes(subject)
    profile = DeclaredProfile.objects.filter(user_id=user.pk).first()
    return DeclaredView(
        granted=granted,
        values=declared_values(profile, granted),
        updated_at=profile.updated_at if profile is not None and any(granted.values()) else None,
    )


@dataclass(frozen=True)
class SourceView:
    site: str
    views: int
    first: datetime
    last: datetime


@dataclass
class InterestView:
    theme: ThemeView
    weight: float  # decayed number of views now
    views: int
    first_seen_at: datetime
    last_seen_at: datetime
    sources: list[SourceView] = field(default_factory=list)

    @property
    def strength(self) -> str:
        """A plain-language bucket for pages: strong, medium, weak."""
        if self.weight >= 5:
            return "strong"
        if self.weight >= 1.5:
            return "medium"
        return "weak"


def _sources(raw: dict[str, Any]) -> list[SourceView]:
    rows = [
        SourceView(
            site=site,
            views=int(source["views"]),
            first=datetime.fromisoformat(source["first"]),
            last=datetime.fromisoformat(source["last"]),
        )
        for site, source in raw.items()
    ]
    return sorted(rows, key=lambda row: (-row.views, row.site))


def interests_view(
    *, subject: DataSubject, language: str = "fr", now: datetime | None = None
) -> list[InterestView]:
    if not consent_is_granted_for_subject(subject=subject, purpose_code=taxonomy.BROWSING_PURPOSE):
        return []
    now = now or timezone.now()
    life = half_life()
    refused = set(_filter(InterestCorrection, subject).values_list("theme", flat=True))
    views = []
    for row in _filter(Interest, subject):
        if row.theme in refused or not taxonomy.is_theme(row.theme):
            continue
        weight = decay.weight_at(row.score, row.score_at, now, life)
        if weight < decay.FADED:
            continue
        views.append(
            InterestView(
                theme=theme_view(row.theme, language),
                weight=weight,
                views=row.views,
                first_seen_at=row.first_seen_at,
                last_seen_at=row.last_seen_at,
                sources=_sources(row.sources),
            )
        )
    return sorted(views, key=lambda view: (-view.weight, view.theme.code))


def corrections_view(*, subject: DataSubject, language: str = "fr") -> list[ThemeView]:
    if not consent_is_granted_for_subject(subject=subject, purpose_code=taxonomy.BROWSING_PURPOSE):
        return []
    codes = _filter(InterestCorrection, subject).order_by("theme").values_list("theme", flat=True)
    return [theme_view(code, language) for code in codes]


def _filter(model: Any, subject: DataSubject) -> Any:
    if subject.user_id is not None:
        return model.objects.filter(user_id=subject.user_id)
    return model.objects.filter(user__isnull=True, browser_hash=subject.browser_hash)


def half_life_days() -> int:
    return half_life().days


def inference_settings() -> InferenceSettings | None:
    return InferenceSettings.objects.filter(pk=1).first()


# --- What a portal may use ---------------------------------------------------------------------


def _item(kind: str, value: Any, purpose: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "value": value, "reason": {"purpose": purpose}, **extra}


def _declared_items(values: dict[str, Any], language: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    purpose = taxonomy.DECLARED_PURPOSE
    commune = taxonomy.commune(values["commune"]) if values["commune"] else None
    if commune is not None:
        items.append(_item("commune", {"insee_code": commune.insee_code, "name": commune.name}, purpose))
    quartier = (
        taxonomy.quartier_by_code(values["commune"], values["quartier"]) if values["quartier"] else None
    )
    if quartier is not None:
        items.append(_item("quartier", {"code": quartier.code, "name": quartier.name}, purpose))
    for code in values["themes"]:
        items.append(
            _item(
                "theme", {"code": code, "label": theme_view(code, language).label}, purpose, source="declared"
            )
        )
    if values["language"]:
        items.append(_item("language", values["language"], purpose))
    for code in values["accessibility"]:
        items.append(_item("accessibility", code, purpose))
    return items


def personalisation(
    *, subject: DataSubject, language: str = "fr", declared: bool = True, inferred: bool = True
) -> dict[str, Any]:
    """What may be used now for this resident (declared and inferred) or browser (inferred)."""
    granted = granted_purposes(subject)
    items: list[dict[str, Any]] = []
    if declared and subject.user_id is not None and granted[taxonomy.DECLARED_PURPOSE]:
        profile = DeclaredProfile.objects.filter(user_id=subject.user_id).first()
        items.extend(_declared_items(declared_values(profile, granted), language))
    if inferred and granted[taxonomy.BROWSING_PURPOSE]:
        for view in interests_view(subject=subject, language=language):
            items.append(
                _item(
                    "theme",
                    {"code": view.theme.code, "label": view.theme.label},
                    taxonomy.BROWSING_PURPOSE,
                    source="inferred",
                    weight=round(view.weight, 3),
                )
            )
    return {
        "purposes": {code: granted[code] for code in (taxonomy.DECLARED_PURPOSE, taxonomy.BROWSING_PURPOSE)},
        "items": items,
    }


# What each scope a partner holds lets it use (the claims' scopes: profiles.claims).
SCOPE_OF_KIND = {
    "commune": "territory",
    "quartier": "territory",
    "theme": "interests",
    "accessibility": "accessibility",
}


def partner_personalisation(
    *,
    subject: DataSubject,
    release: Mapping[str, bool],
    sharing_purpose: str | None,
    language: str = "fr",
) -> dict[str, Any]:
    """`personalisation` for a partner holding a resident's access token: only the items of
    the token's scopes whose release the ledger allows now (`release`: scope -> the partner's
    sharing consent AND the provider's purpose, identity.oidc.sharing), each item's reason
    naming the purpose the data is kept under, the scope and the sharing purpose. The portal
    language has no scope: it is not given."""
    answer = personalisation(subject=subject, language=language)
    items = []
    for item in answer["items"]:
        scope = SCOPE_OF_KIND.get(item["kind"])
        if scope is None or not release.get(scope):
            continue
        item["reason"] = {
            **item["reason"],
            "scope": scope,
            "sharing": True,
            "sharing_purpose": sharing_purpose,
        }
        items.append(item)
    return {**answer, "items": items}


def browser_personalisation(*, subject: DataSubject, language: str = "fr") -> dict[str, Any]:
    """What a partner page may use for a browser: inferred interests only."""
    answer = personalisation(subject=subject, language=language, declared=False)
    answer["purposes"] = {taxonomy.BROWSING_PURPOSE: answer["purposes"][taxonomy.BROWSING_PURPOSE]}
    return answer


# --- Claims ------------------------------------------------------------------------------------

TERRITORY_SCOPE = "territory"
INTERESTS_SCOPE = "interests"
ACCESSIBILITY_SCOPE = "accessibility"


def claims_read(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    """Claims of the profiles scopes, each only while its underlying purpose is granted
    (the sharing consent for the partner is checked by the caller: identity.oidc.sharing)."""
    subject = subject_of(user)
    granted = granted_purposes(subject)
    claims: dict[str, Any] = {}
    wants_declared = scopes & {TERRITORY_SCOPE, INTERESTS_SCOPE, ACCESSIBILITY_SCOPE}
    values: dict[str, Any] = {}
    if wants_declared and granted[taxonomy.DECLARED_PURPOSE]:
        values = declared_values(DeclaredProfile.objects.filter(user_id=user.pk).first(), granted)
    if TERRITORY_SCOPE in scopes and values.get("commune"):
        commune = taxonomy.commune(values["commune"])
        if commune is not None:
            claims["commune"] = {"insee_code": commune.insee_code, "name": commune.name}
            quartier = taxonomy.quartier_by_code(commune.insee_code, values.get("quartier", ""))
            if quartier is not None:
                claims["commune"]["quartier"] = {"code": quartier.code, "name": quartier.name}
    if ACCESSIBILITY_SCOPE in scopes and values.get("accessibility"):
        claims["accessibility"] = list(values["accessibility"])
    if INTERESTS_SCOPE in scopes:
        interests = [{"theme": code, "kind": "declared"} for code in values.get("themes", [])]
        if granted[taxonomy.BROWSING_PURPOSE]:
            declared = {item["theme"] for item in interests}
            interests.extend(
                {"theme": view.theme.code, "kind": "inferred"}
                for view in interests_view(subject=subject)
                if view.theme.code not in declared
            )
        if interests:
            claims["interests"] = interests
    return claims
