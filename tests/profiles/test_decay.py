"""Inferred interests: decay and explanation computed exactly, corrections that stick,
retention honoured with time moved, ingestion gated by the consent, a browser's interests
joining the account only with the browser's proof (issue 12).

The decay is checked against its definition with hypothesis: a view at t weighs
2^(-(T - t) / h) at T, and an interest weighs the sum over its views, whatever the order the
views arrive in (late deliveries).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.test import Client as BrowserClient
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.models import ConsentState, LedgerEvent
from consent.purpose_data import DataSubject
from consent.selectors import event_details, purpose_by_code
from consent.services import (
    BrowserProofError,
    browser_id_hash,
    browser_subject_register,
    consent_expire_lapsed,
    consent_record,
    notice_publish,
    subject_link_browser,
)
from profiles import decay
from profiles.models import DeclaredProfile, InferenceSettings, Interest, InterestCorrection
from profiles.selectors import corrections_view, interests_view
from profiles.services import (
    ProfileInputError,
    PurposeNotGranted,
    declared_update,
    inference_settings_update,
    interest_correct,
    interest_correction_remove,
    page_view_record,
    profiles_maintain,
)
from tests.consent_api.conftest import PARTNER_ORIGIN, post_choices
from tests.profiles.conftest import BROWSING, NEWS, decide

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = 86_400.0


def definition(view_times: list[datetime], at: datetime, half_life: timedelta) -> float:
    """The weight by its definition: the sum over the views of 2^(-(at - t) / h)."""
    return math.fsum(2 ** (-((at - t) / half_life)) for t in view_times)


def fold(view_times: list[datetime], half_life: timedelta) -> tuple[float, datetime]:
    """The views in their arrival order, as page_view_record folds them: the first creates the
    interest (1 at its time), each next one goes through decay.add_view."""
    score, score_at = 1.0, view_times[0]
    for t in view_times[1:]:
        score, score_at = decay.add_view(score, score_at, t, half_life)
    return score, score_at


half_lives = st.integers(min_value=1, max_value=365).map(lambda days: timedelta(days=days))
# Views within 60 days before BASE (arrival order = list order: any order, late ones included).
offsets = st.floats(min_value=0, max_value=60 * DAY, allow_nan=False, allow_infinity=False)
view_lists = st.lists(offsets, min_size=1, max_size=40).map(
    lambda seconds: [BASE - timedelta(seconds=s) for s in seconds]
)
after = st.floats(min_value=0, max_value=400 * DAY, allow_nan=False, allow_infinity=False)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@given(views=view_lists, life=half_lives, later=after)
def test_add_view_gives_the_definitions_weight_in_any_arrival_order(
    views: list[datetime], life: timedelta, later: float
) -> None:
    score, score_at = fold(views, life)
    assert score_at == max(views)  # the reference time only moves forward
    at = BASE + timedelta(seconds=later)
    assert close(decay.weight_at(score, score_at, at, life), definition(views, at, life))


@given(views=view_lists, life=half_lives)
def test_the_arrival_order_does_not_matter(views: list[datetime], life: timedelta) -> None:
    forward = fold(sorted(views), life)
    backward = fold(sorted(views, reverse=True), life)
    as_sent = fold(views, life)
    assert forward[1] == backward[1] == as_sent[1]
    assert close(forward[0], backward[0]) and close(forward[0], as_sent[0])


@given(first=view_lists, second=view_lists, life=half_lives, later=after)
def test_merge_is_the_sum_of_both_histories_and_commutes(
    first: list[datetime], second: list[datetime], life: timedelta, later: float
) -> None:
    a, b = fold(first, life), fold(second, life)
    merged = decay.merge(a, b, life)
    assert merged[1] == max(a[1], b[1])
    assert close(merged[0], decay.merge(b, a, life)[0])
    at = BASE + timedelta(seconds=later)
    weight = decay.weight_at(merged[0], merged[1], at, life)
    assert close(weight, definition(first + second, at, life))
    # Merging is the same as having received every view in one history.
    together = fold(first + second, life)
    assert close(weight, decay.weight_at(together[0], together[1], at, life))


@given(views=view_lists, life=half_lives, t1=after, t2=after)
def test_a_weight_never_grows_with_time(views: list[datetime], life: timedelta, t1: float, t2: float) -> None:
    score, score_at = fold(views, life)
    early, late = sorted((t1, t2))
    w_early = decay.weight_at(score, score_at, BASE + timedelta(seconds=early), life)
    w_late = decay.weight_at(score, score_at, BASE + timedelta(seconds=late), life)
    assert w_late <= w_early * (1 + 1e-12)


@given(life=half_lives, halves=st.integers(min_value=0, max_value=10))
def test_one_view_halves_every_half_life(life: timedelta, halves: int) -> None:
    assert close(decay.weight_at(1.0, BASE, BASE + halves * life, life), 2.0**-halves)


# --- the real service: interests and their explanation ----------------------------------------

SITES = ("www.nantes.fr", "metropole.nantes.fr", "www.reze.fr", "www.saint-herblain.fr")
THEMES = ("culture", "sport", "mobility", "environment")
# Offsets from UTC a partner may send its viewed_at in (the same instant, written differently).
ZONES = [dt_timezone(timedelta(hours=h)) for h in (0, 1, 2, -5, 14)]

page_views = st.lists(
    st.tuples(
        st.sampled_from(SITES),
        st.lists(st.sampled_from(THEMES), min_size=1, max_size=3, unique=True),
        st.integers(min_value=0, max_value=6 * 86_400 * 1000),  # milliseconds before BASE
        st.sampled_from(ZONES),
    ),
    min_size=1,
    max_size=15,
)


def _expected(views: list[tuple[str, list[str], datetime]]) -> dict[str, dict[str, Any]]:
    """What an interest must say, computed here from the views sent."""
    expected: dict[str, dict[str, Any]] = {}
    for site, themes, at in views:
        for theme in themes:
            entry = expected.setdefault(theme, {"times": [], "sites": {}})
            entry["times"].append(at)
            entry["sites"].setdefault(site, []).append(at)
    return expected


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=page_views)
def test_page_views_give_interests_explained_by_exactly_what_was_sent(consenting: Any, sent: list) -> None:
    subject = DataSubject(user_id=consenting.pk)
    Interest.objects.filter(user=consenting).delete()  # each example starts afresh
    life = timedelta(days=InferenceSettings._meta.get_field("half_life_days").default)
    views = []
    for site, themes, millis, zone in sent:
        at = (BASE - timedelta(milliseconds=millis)).astimezone(zone)
        counted = page_view_record(subject=subject, site=site, themes=themes, viewed_at=at, now=BASE)
        assert sorted(counted) == sorted(themes)
        views.append((site, themes, at))
    expected = _expected(views)
    shown = {view.theme.code: view for view in interests_view(subject=subject, now=BASE)}
    assert set(shown) == set(expected)
    for theme, entry in expected.items():
        view = shown[theme]
        assert view.views == len(entry["times"])
        assert view.first_seen_at == min(entry["times"]) and view.last_seen_at == max(entry["times"])
        assert close(view.weight, definition(entry["times"], BASE, life))
        assert {source.site: (source.views, source.first, source.last) for source in view.sources} == {
            site: (len(times), min(times), max(times)) for site, times in entry["sites"].items()
        }
    # Strongest first.
    weights = [view.weight for view in interests_view(subject=subject, now=BASE)]
    assert weights == sorted(weights, reverse=True)


@pytest.mark.django_db
def test_the_half_life_set_by_the_dpo_is_the_one_used(consenting: Any, admin_user: Any) -> None:
    inference_settings_update(half_life_days=7, acting_user=admin_user)
    subject = DataSubject(user_id=consenting.pk)
    page_view_record(subject=subject, site="www.nantes.fr", themes=["sport"], viewed_at=BASE, now=BASE)
    [view] = interests_view(subject=subject, now=BASE + timedelta(days=14))
    assert close(view.weight, 0.25)


# --- corrections stick ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_not_interested_is_never_counted_again(consenting: Any) -> None:
    subject = DataSubject(user_id=consenting.pk)
    page_view_record(
        subject=subject, site="www.nantes.fr", themes=["sport", "culture"], viewed_at=BASE, now=BASE
    )
    interest_correct(subject=subject, theme="sport")
    assert not Interest.objects.filter(user=consenting, theme="sport").exists()
    for hours in range(1, 4):
        counted = page_view_record(
            subject=subject,
            site="www.reze.fr",
            themes=["sport", "culture"],
            viewed_at=BASE + timedelta(hours=hours),
            now=BASE + timedelta(hours=hours),
        )
        assert counted == ["culture"]
    assert not Interest.objects.filter(user=consenting, theme="sport").exists()
    assert [view.theme.code for view in interests_view(subject=subject, now=BASE)] == ["culture"]
    assert [theme.code for theme in corrections_view(subject=subject)] == ["sport"]
    # Undoing the correction lets new views count again (old ones are gone for good).
    interest_correction_remove(subject=subject, theme="sport")
    page_view_record(subject=subject, site="www.nantes.fr", themes=["sport"], viewed_at=BASE, now=BASE)
    assert Interest.objects.get(user=consenting, theme="sport").views == 1


# --- browsers: joining the account only with the browser's proof ---------------------------------


def _browser(*, grant_browsing: bool = True) -> tuple[str, str]:
    browser_id = str(uuid.uuid4())
    secret = browser_subject_register(browser_id=browser_id)
    assert secret is not None
    if grant_browsing:
        consent_record(
            purpose_code=BROWSING,
            event_type="given",
            collection_method="cookie_widget",
            browser_id=browser_id,
        )
    return browser_id, secret


def _browse_as_browser(
    browser_id: str, themes: list[str], at: datetime = BASE, site: str = "www.nantes.fr"
) -> None:
    page_view_record(
        subject=DataSubject(browser_hash=browser_id_hash(browser_id)),
        site=site,
        themes=themes,
        viewed_at=at,
        now=at,
    )


@pytest.mark.django_db
def test_a_browsers_interests_and_corrections_join_the_account_with_its_secret(consenting: Any) -> None:
    account = DataSubject(user_id=consenting.pk)
    page_view_record(subject=account, site="www.nantes.fr", themes=["sport"], viewed_at=BASE, now=BASE)
    interest_correct(subject=account, theme="environment")
    browser_id, secret = _browser()
    browser = DataSubject(browser_hash=browser_id_hash(browser_id))
    later = BASE + timedelta(hours=1)
    _browse_as_browser(browser_id, ["sport", "culture", "environment"], at=later, site="www.reze.fr")
    _browse_as_browser(browser_id, ["mobility"], at=later)
    interest_correct(subject=browser, theme="mobility")

    with pytest.raises(BrowserProofError):
        subject_link_browser(browser_id=browser_id, browser_secret="not-the-secret", user=consenting)
    assert Interest.objects.filter(user=None, browser_hash=browser.browser_hash).count() == 3

    subject_link_browser(browser_id=browser_id, browser_secret=secret, user=consenting)
    assert not Interest.objects.filter(browser_hash=browser.browser_hash).exists()
    assert not InterestCorrection.objects.filter(browser_hash=browser.browser_hash).exists()
    views = {view.theme.code: view for view in interests_view(subject=account, now=later)}
    # sport merged (one view each side), culture joined, environment and mobility corrected.
    assert set(views) == {"sport", "culture"}
    assert views["sport"].views == 2
    assert close(views["sport"].weight, definition([BASE, later], later, timedelta(days=30)))
    assert {source.site for source in views["sport"].sources} == {"www.nantes.fr", "www.reze.fr"}
    assert [theme.code for theme in corrections_view(subject=account)] == ["environment", "mobility"]
    # The browser's correction sticks on the account.
    page_view_record(subject=account, site="www.nantes.fr", themes=["mobility"], viewed_at=later, now=later)
    assert "mobility" not in {view.theme.code for view in interests_view(subject=account, now=later)}


@pytest.mark.django_db
@pytest.mark.parametrize("grant_first", [True, False])
def test_a_browsers_interests_are_erased_when_the_account_does_not_grant_browsing(
    resident: Any, signing_keys: Any, grant_first: bool
) -> None:
    browser_id, secret = _browser()
    _browse_as_browser(browser_id, ["sport"])
    interest_correct(subject=DataSubject(browser_hash=browser_id_hash(browser_id)), theme="culture")
    # The account's decision, more recent than the browser's grant: refused, or granted then
    # withdrawn. It governs the browser's data once attached.
    if grant_first:
        decide(resident, BROWSING, True)
        decide(resident, BROWSING, False)
    else:
        consent_record(
            user=resident, purpose_code=BROWSING, event_type="refused", collection_method="web_form"
        )
    subject_link_browser(browser_id=browser_id, browser_secret=secret, user=resident)
    assert not Interest.objects.exists()
    assert not InterestCorrection.objects.exists()


@pytest.mark.django_db
def test_a_browsers_grant_more_recent_than_the_accounts_silence_brings_its_interests(
    resident: Any, signing_keys: Any
) -> None:
    browser_id, secret = _browser()
    _browse_as_browser(browser_id, ["sport"])
    subject_link_browser(browser_id=browser_id, browser_secret=secret, user=resident)
    # The browser's grant was copied to the account (consent), then its interests followed.
    assert [
        view.theme.code for view in interests_view(subject=DataSubject(user_id=resident.pk), now=BASE)
    ] == ["sport"]


# --- ingestion gated by the consent ---------------------------------------------------------------


def _end_browsing(user: Any, how: str) -> None:
    if how == "withdrawn":
        decide(user, BROWSING, False)
    elif how == "expired":
        ConsentState.objects.filter(subject__user=user, purpose__code=BROWSING).update(
            valid_until=timezone.now() - timedelta(seconds=1)
        )
    else:
        notice_publish(
            purpose=purpose_by_code(BROWSING), text_fr="Nouveau texte", text_en="New text", material=True
        )


@pytest.mark.django_db
def test_never_granted_stores_nothing(resident: Any, signing_keys: Any) -> None:
    with pytest.raises(PurposeNotGranted) as caught:
        page_view_record(
            subject=DataSubject(user_id=resident.pk),
            site="www.nantes.fr",
            themes=["sport"],
            viewed_at=BASE,
            now=BASE,
        )
    assert caught.value.purposes == [BROWSING]
    browser_id, _secret = _browser(grant_browsing=False)
    with pytest.raises(PurposeNotGranted):
        _browse_as_browser(browser_id, ["sport"])
    assert not Interest.objects.exists() and not InterestCorrection.objects.exists()


@pytest.mark.django_db
def test_not_granted_is_refused_before_the_input_is_even_read(resident: Any, signing_keys: Any) -> None:
    # Nothing about a refused view is kept or answered, not even whether it was valid.
    with pytest.raises(PurposeNotGranted):
        page_view_record(subject=DataSubject(user_id=resident.pk), site="", themes="x", viewed_at=None)


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["withdrawn", "expired", "material"])
def test_ended_consent_refuses_new_views_and_keeps_no_row(consenting: Any, how: str) -> None:
    subject = DataSubject(user_id=consenting.pk)
    page_view_record(subject=subject, site="www.nantes.fr", themes=["sport"], viewed_at=BASE, now=BASE)
    _end_browsing(consenting, how)
    with pytest.raises(PurposeNotGranted):
        page_view_record(subject=subject, site="www.nantes.fr", themes=["culture"], viewed_at=BASE, now=BASE)
    assert interests_view(subject=subject, now=BASE) == []
    assert not Interest.objects.filter(user=consenting, theme="culture").exists()
    if how == "withdrawn":
        # Erased at once, and the ledger's withdrawal says so.
        assert not Interest.objects.filter(user=consenting).exists()
        event = LedgerEvent.objects.filter(subject__user=consenting, event_type="withdrawn").latest("seq")
        assert event_details(event) == {"erased": {"profiles.interests": {"interests": 1}}}
    else:
        # Not used meanwhile, erased for good by the sweep.
        assert Interest.objects.filter(user=consenting).exists()
        assert profiles_maintain()["interest_not_granted"] == 1
        assert not Interest.objects.filter(user=consenting).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["withdrawn", "expired", "material"])
def test_a_browsers_ended_consent_refuses_new_views(signing_keys: Any, how: str) -> None:
    browser_id, _secret = _browser()
    _browse_as_browser(browser_id, ["sport"])
    if how == "withdrawn":
        consent_record(
            purpose_code=BROWSING,
            event_type="withdrawn",
            collection_method="cookie_widget",
            browser_id=browser_id,
        )
        assert not Interest.objects.exists()
    elif how == "expired":
        ConsentState.objects.filter(subject__browser_id_hash=browser_id_hash(browser_id)).update(
            valid_until=timezone.now() - timedelta(seconds=1)
        )
    else:
        notice_publish(
            purpose=purpose_by_code(BROWSING), text_fr="Nouveau texte", text_en="New text", material=True
        )
    with pytest.raises(PurposeNotGranted):
        _browse_as_browser(browser_id, ["culture"])
    assert not Interest.objects.filter(theme="culture").exists()
    profiles_maintain()
    assert not Interest.objects.exists()


@pytest.mark.django_db
def test_bad_input_is_refused_with_its_field_and_nothing_stored(consenting: Any) -> None:
    subject = DataSubject(user_id=consenting.pk)
    cases = [
        ({"site": "not a host", "themes": ["sport"], "viewed_at": BASE}, "site"),
        ({"site": "www.nantes.fr", "themes": ["astrology"], "viewed_at": BASE}, "themes"),
        ({"site": "www.nantes.fr", "themes": [], "viewed_at": BASE}, "themes"),
        ({"site": "www.nantes.fr", "themes": ["sport"], "viewed_at": BASE.replace(tzinfo=None)}, "viewed_at"),
        ({"site": "www.nantes.fr", "themes": ["sport"], "viewed_at": BASE + timedelta(hours=1)}, "viewed_at"),
        ({"site": "www.nantes.fr", "themes": ["sport"], "viewed_at": BASE - timedelta(days=8)}, "viewed_at"),
    ]
    for arguments, field in cases:
        with pytest.raises(ProfileInputError) as caught:
            page_view_record(subject=subject, now=BASE, **arguments)
        assert field in caught.value.errors
    assert not Interest.objects.exists()


# --- retention, with time moved -------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_and_fading_are_honoured_by_the_sweep(consenting: Any, admin_user: Any) -> None:
    retention = timedelta(days=purpose_by_code(BROWSING).retention_days)
    # A long half-life, so that only the retention (not fading) removes the oldest interest.
    inference_settings_update(half_life_days=365, acting_user=admin_user)
    subject = DataSubject(user_id=consenting.pk)
    start = BASE
    page_view_record(
        subject=subject, site="www.nantes.fr", themes=["sport", "culture"], viewed_at=start, now=start
    )
    recent = start + retention - timedelta(days=5)
    page_view_record(subject=subject, site="www.reze.fr", themes=["culture"], viewed_at=recent, now=recent)

    # Nothing is due the day before the retention ends.
    counts = profiles_maintain(now=start + retention - timedelta(days=1))
    assert counts["interests_faded_or_expired"] == 0 and counts["interests_sources_trimmed"] == 0

    counts = profiles_maintain(now=start + retention + timedelta(days=1))
    # sport was last seen before the retention: gone. culture stays, without its old source.
    assert counts["interests_faded_or_expired"] == 1
    assert counts["interests_sources_trimmed"] == 1
    culture = Interest.objects.get(user=consenting)
    assert culture.theme == "culture" and set(culture.sources) == {"www.reze.fr"}

    # A faded interest (below the threshold) goes too, retention or not.
    inference_settings_update(half_life_days=1, acting_user=admin_user)
    counts = profiles_maintain(now=recent + timedelta(days=6))  # 2^-6 < 1/32
    assert counts["interests_faded_or_expired"] == 1
    assert not Interest.objects.exists()


@pytest.mark.django_db
def test_declared_fields_of_an_expired_consent_are_swept_purpose_by_purpose(consenting: Any) -> None:
    declared_update(user=consenting, changes={"commune": "44109", "notification_frequency": "weekly"})
    ConsentState.objects.filter(subject__user=consenting, purpose__code=NEWS).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert profiles_maintain()["declared_not_granted"] == 1
    profile = DeclaredProfile.objects.get(user=consenting)
    assert profile.notification_frequency == "" and profile.commune == "44109"
    assert profiles_maintain()["declared_not_granted"] == 0


@pytest.mark.django_db
def test_the_recorded_expiry_erases_the_interests_and_says_so_in_the_ledger(consenting: Any) -> None:
    subject = DataSubject(user_id=consenting.pk)
    page_view_record(subject=subject, site="www.nantes.fr", themes=["sport"], viewed_at=BASE, now=BASE)
    interest_correct(subject=subject, theme="culture")
    ConsentState.objects.filter(subject__user=consenting, purpose__code=BROWSING).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert consent_expire_lapsed() == 1
    assert not Interest.objects.exists() and not InterestCorrection.objects.exists()
    event = LedgerEvent.objects.get(subject__user=consenting, event_type="expired")
    assert event_details(event) == {"erased": {"profiles.interests": {"interests": 1, "corrections": 1}}}


@pytest.mark.django_db
def test_the_cookie_widgets_attach_flow_brings_the_browsers_interests(
    resident: Any, signing_keys: Any, make_client: Any
) -> None:
    """Over HTTP: choices made in the widget on a partner page, interests inferred for that
    browser, then the signed-in resident attaches it (POST /consent/api/v1/cookie/link)."""
    partner = make_client(name="Portail nantes.fr").client
    partner.allowed_origins = PARTNER_ORIGIN
    partner.save(update_fields=["allowed_origins"])
    body = post_choices(BrowserClient(), {"client_id": partner.client_id, "choices": {BROWSING: True}}).json()
    _browse_as_browser(body["browser_id"], ["sport"])

    http = BrowserClient(enforce_csrf_checks=True)
    http.force_login(resident)
    http.get("/compte/")
    csrf = http.cookies["csrf"].value
    link = "/consent/api/v1/cookie/link"
    wrong = {"browser_id": body["browser_id"], "browser_secret": "x" * 43}
    assert http.post(link, wrong, content_type="application/json", HTTP_X_CSRFTOKEN=csrf).status_code == 400
    assert not Interest.objects.filter(user=resident).exists()  # the id alone proves nothing

    proof = {"browser_id": body["browser_id"], "browser_secret": body["browser_secret"]}
    assert http.post(link, proof, content_type="application/json", HTTP_X_CSRFTOKEN=csrf).status_code == 200
    assert [
        view.theme.code for view in interests_view(subject=DataSubject(user_id=resident.pk), now=BASE)
    ] == ["sport"]
    assert not Interest.objects.filter(user=None).exists()
