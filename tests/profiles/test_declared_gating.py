"""The declared profile is stored and used only while its purpose is granted (issue 12).

Every direction: never granted, granted, withdrawn (erased at once, recorded in the ledger
event's details), granted again (starts empty), expired and renewal-required (not used, then
swept by profiles_maintain), field by field across two purposes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.models import ConsentState, LedgerEvent
from consent.selectors import event_details, purpose_by_code
from consent.services import notice_publish
from profiles.models import DeclaredProfile
from profiles.selectors import declared_view
from profiles.services import ProfileInputError, PurposeNotGranted, declared_update, profiles_maintain
from tests.profiles.conftest import BROWSING, DECLARED, NEWS, decide

pytestmark = pytest.mark.django_db

FULL = {
    "commune": "44109",
    "quartier": "ile-de-nantes",
    "themes": ["culture", "mobility"],
    "language": "en",
    "accessibility": ["larger-text", "reduced-motion"],
}


def test_never_granted_nothing_is_stored(resident: Any, signing_keys: Any) -> None:
    with pytest.raises(PurposeNotGranted) as caught:
        declared_update(user=resident, changes={"commune": "44109"})
    assert caught.value.purposes == [DECLARED]
    assert caught.value.fields == ["commune"]
    assert not DeclaredProfile.objects.exists()


def test_granted_stores_and_reads_back(consenting: Any) -> None:
    declared_update(user=consenting, changes=FULL)
    view = declared_view(user=consenting)
    for name, value in FULL.items():
        assert view.values[name] == value
    assert view.granted[DECLARED] is True


def test_one_purpose_granted_not_the_other(resident: Any, signing_keys: Any) -> None:
    decide(resident, DECLARED, True)
    declared_update(user=resident, changes={"commune": "44143"})
    with pytest.raises(PurposeNotGranted) as caught:
        declared_update(user=resident, changes={"notification_frequency": "weekly", "commune": "44109"})
    assert caught.value.purposes == [NEWS]
    # Nothing of the refused update was written, not even the allowed field.
    assert DeclaredProfile.objects.get(user=resident).commune == "44143"


def test_withdrawal_erases_at_once_and_the_ledger_says_so(consenting: Any) -> None:
    declared_update(user=consenting, changes={**FULL, "notification_frequency": "monthly"})
    event = decide(consenting, DECLARED, False)
    profile = DeclaredProfile.objects.get(user=consenting)
    assert profile.commune == "" and profile.themes == [] and profile.accessibility == []
    assert profile.notification_frequency == "monthly"  # another purpose's field stays
    details = event_details(LedgerEvent.objects.get(pk=event.pk))
    assert details == {
        "erased": {
            "profiles.declared:personalisation-declared": {"fields": sorted(FULL, key=list(FULL).index)}
        }
    }


def test_withdrawing_the_last_purpose_deletes_the_row(consenting: Any) -> None:
    declared_update(user=consenting, changes={"commune": "44109"})
    decide(consenting, DECLARED, False)
    assert not DeclaredProfile.objects.filter(user=consenting).exists()


def test_granting_again_starts_empty(consenting: Any) -> None:
    declared_update(user=consenting, changes=FULL)
    decide(consenting, DECLARED, False)
    decide(consenting, DECLARED, True)
    assert declared_view(user=consenting).values["commune"] == ""


def test_expired_consent_is_not_used_then_swept(consenting: Any) -> None:
    declared_update(user=consenting, changes=FULL)
    ConsentState.objects.filter(subject__user=consenting, purpose__code=DECLARED).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert declared_view(user=consenting).values["commune"] == ""
    assert DeclaredProfile.objects.get(user=consenting).commune == "44109"  # still stored...
    counts = profiles_maintain()
    assert counts["declared_not_granted"] == 1
    assert not DeclaredProfile.objects.filter(user=consenting).exists()  # ...until the sweep


def test_material_notice_change_stops_use_and_renewal_starts_empty(consenting: Any) -> None:
    declared_update(user=consenting, changes=FULL)
    notice_publish(
        purpose=purpose_by_code(DECLARED), text_fr="Nouveau texte", text_en="New text", material=True
    )
    assert declared_view(user=consenting).values["themes"] == []
    with pytest.raises(PurposeNotGranted):
        declared_update(user=consenting, changes={"themes": ["sport"]})
    event = decide(consenting, DECLARED, True)
    assert event.event_type == "renewed"
    assert declared_view(user=consenting).values["commune"] == ""
    assert not DeclaredProfile.objects.filter(user=consenting).exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"commune": "75056"}, "commune"),
        ({"commune": 44109}, "commune"),
        ({"quartier": "ile-de-nantes"}, "quartier"),  # no commune with quartiers
        ({"commune": "44143", "quartier": "ile-de-nantes"}, "quartier"),
        ({"themes": ["culture", "astrology"]}, "themes"),
        ({"themes": "culture"}, "themes"),
        ({"language": "de"}, "language"),
        ({"accessibility": ["braille-display"]}, "accessibility"),
        ({"notification_frequency": "hourly"}, "notification_frequency"),
        ({"shoe_size": "42"}, "shoe_size"),
    ],
)
def test_bad_values_are_refused_with_their_field(consenting: Any, changes: dict, field: str) -> None:
    with pytest.raises(ProfileInputError) as caught:
        declared_update(user=consenting, changes=changes)
    assert field in caught.value.errors
    assert not DeclaredProfile.objects.filter(user=consenting).exists()


def test_changing_commune_drops_a_quartier_of_the_old_one(consenting: Any) -> None:
    declared_update(user=consenting, changes={"commune": "44109", "quartier": "nantes-nord"})
    declared_update(user=consenting, changes={"commune": "44162"})
    assert DeclaredProfile.objects.get(user=consenting).quartier == ""


def test_browsing_purpose_governs_no_declared_field(consenting: Any) -> None:
    declared_update(user=consenting, changes=FULL)
    decide(consenting, BROWSING, False)
    assert declared_view(user=consenting).values["commune"] == "44109"
