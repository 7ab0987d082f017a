"""The profiles app's data-rights provider (registered in ProfilesConfig.ready()).

Export section "profiles" (JSON values only):

- `declared`: each declared field with its value, the purpose it is kept under and whether
  that purpose is granted now (a value is only ever kept while it is), `taxonomy_version`
  and `updated_at`; null when nothing is declared;
- `interests`: each inferred interest with its provenance (GDPR Art. 15(1)(g): the source
  of data not collected from the resident; (h): the logic of profiling): theme, weight now
  and at what half-life, number of views, first and last seen, and per site the number of
  views and their first and last dates; interests kept for the browsers the resident
  attached to the account are the account's (they joined it at attachment);
- `corrections`: the themes the resident marked "not interested", with the date;
- `inference`: how interests are computed (the half-life, the fading threshold).

Erasure (before consent's crypto-shredding): the declared profile, the interests and the
corrections of the account and of every browser attached to it are deleted. Nothing kept.
For a DPO who set the half-life, the setting stays and no longer names them (the audit row
of the change keeps the account id).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from consent.rights import ErasureReport
from consent.selectors import browser_hashes_for_user
from profiles import decay, taxonomy
from profiles.models import DeclaredProfile, InferenceSettings, Interest, InterestCorrection
from profiles.selectors import granted_purposes
from profiles.services import half_life, subject_of

NAME = "profiles"
ORDER = 45  # after the outbox (40), before consent's crypto-shredding (50)
MODELS = (
    "profiles.DeclaredProfile",
    "profiles.Interest",
    "profiles.InterestCorrection",
    "profiles.InferenceSettings",  # updated_by: the DPO who last set the half-life
)


def _owned(user: Any) -> Q:
    hashes = browser_hashes_for_user(user=user)
    return Q(user_id=user.pk) | Q(user__isnull=True, browser_hash__in=hashes)


def export(user: Any) -> dict[str, Any]:
    granted = granted_purposes(subject_of(user))
    profile = DeclaredProfile.objects.filter(user_id=user.pk).first()
    declared = None
    if profile is not None:
        declared = {
            "fields": [
                {
                    "name": name,
                    "value": getattr(profile, name),
                    "purpose": purpose,
                    "purpose_granted": granted[purpose],
                }
                for name, purpose in taxonomy.FIELD_PURPOSES.items()
            ],
            "taxonomy_version": profile.taxonomy_version,
            "updated_at": profile.updated_at.isoformat(),
        }
    now = timezone.now()
    life = half_life()
    interests = [
        {
            "theme": row.theme,
            "weight_now": round(decay.weight_at(row.score, row.score_at, now, life), 6),
            "views": row.views,
            "first_seen_at": row.first_seen_at.isoformat(),
            "last_seen_at": row.last_seen_at.isoformat(),
            "sources": [
                {"site": site, "views": source["views"], "first": source["first"], "last": source["last"]}
                for site, source in sorted(row.sources.items())
            ],
            "purpose": taxonomy.BROWSING_PURPOSE,
        }
        for row in Interest.objects.filter(_owned(user)).order_by("theme")
    ]
    corrections = [
        {"theme": row.theme, "verdict": row.verdict, "at": row.created_at.isoformat()}
        for row in InterestCorrection.objects.filter(_owned(user)).order_by("theme")
    ]
    return {
        "declared": declared,
        "interests": interests,
        "corrections": corrections,
        "inference": {
            "half_life_days": life.days,
            "faded_below_weight": decay.FADED,
            "half_life_set_by_you": InferenceSettings.objects.filter(updated_by_id=user.pk).exists(),
        },
    }


def erase(user: Any) -> ErasureReport:
    owned = _owned(user)
    interests = Interest.objects.filter(owned).delete()[0]
    corrections = InterestCorrection.objects.filter(owned).delete()[0]
    declared = DeclaredProfile.objects.filter(user_id=user.pk).delete()[0]
    # A DPO's account: the setting stays, no longer naming who set it (the audit row does).
    InferenceSettings.objects.filter(updated_by_id=user.pk).update(updated_by=None)
    return ErasureReport(
        provider=NAME,
        erased=["declared profile", "inferred interests and their sources", "corrections"],
        kept=[],
        details={"declared": declared, "interests": interests, "corrections": corrections},
    )
